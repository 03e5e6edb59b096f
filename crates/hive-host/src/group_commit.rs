//! Group commit of the outbox: the API's publishes and sends share
//! transactions.
//!
//! Each [`Store::push`](crate::store::Store::push) queues its row and waits.
//! The first push to find no writer running becomes one: a blocking task
//! that takes every queued row, inserts them in one transaction, commits
//! once, answers each waiter, and repeats until the queue is empty. While
//! one commit runs (an fsync in [`Durability::Fsync`] mode), the POSTs that
//! arrive meanwhile queue up and go into the next transaction together, so
//! the rate is bounded by commits per second times rows per commit, not by
//! one commit per message. No task runs while nobody pushes.
//!
//! A waiter is answered only after the commit that holds its row returned:
//! then its row is in the WAL (and, with `fsync`, on disk).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use crate::store::{now_ms, OutKind, Pushed, StoreError};
use hive_proto::sync::lock;

/// Most rows in one transaction: bounds the time one commit holds the
/// connection (the dispatcher and the readers wait for it).
const MAX_GROUP: usize = 1024;

/// `hive up --durability`: when an accepted message is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// SQLite WAL with `synchronous = NORMAL`: the API answers once the row
    /// is in the WAL file (the kernel's page cache). Survives a crash or
    /// kill of the host; a power loss or kernel crash can lose the last
    /// commits (see docs/01_ARCHITECTURE.md).
    #[default]
    Normal,
    /// SQLite WAL with `synchronous = FULL`: every commit fsyncs the WAL
    /// before it returns, so the API answers only once the row is on disk.
    Fsync,
}

impl Durability {
    /// The value of SQLite's `PRAGMA synchronous` for this mode.
    pub fn synchronous(self) -> &'static str {
        match self {
            Durability::Normal => "NORMAL",
            Durability::Fsync => "FULL",
        }
    }
}

/// One row on its way into the outbox.
struct Row {
    /// The room the API reserved for it; the committed row takes it over.
    room: Option<crate::store::Reservation>,
    id: String,
    /// The id is the client's idempotency key (remembered for a day).
    keyed: bool,
    kind: OutKind,
    target: String,
    data: Vec<u8>,
    ttl_ms: i64,
    answer: oneshot::Sender<Result<Pushed, StoreError>>,
}

#[derive(Default)]
struct Queue {
    rows: Vec<Row>,
    /// A writer task is running and will take what is queued.
    writing: bool,
}

/// The outbox's group-commit writer. Cheap to clone.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    conn: Arc<Mutex<Connection>>,
    unacked: Arc<AtomicI64>,
    /// Unacknowledged rows plus reserved rooms (`Store::reserve`).
    held: Arc<AtomicI64>,
    queue: Arc<Mutex<Queue>>,
    /// Rows queued and transactions committed, for the tests.
    queued: Arc<std::sync::atomic::AtomicU64>,
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl GroupCommit {
    pub(crate) fn new(
        conn: Arc<Mutex<Connection>>,
        unacked: Arc<AtomicI64>,
        held: Arc<AtomicI64>,
    ) -> Self {
        GroupCommit {
            conn,
            unacked,
            held,
            queue: Arc::default(),
            queued: Arc::default(),
            commits: Arc::default(),
        }
    }

    /// Rows queued and transactions committed so far.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.queued.load(Ordering::Acquire),
            self.commits.load(Ordering::Acquire),
        )
    }

    /// Queue one row and wait until the transaction holding it committed.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn push(
        &self,
        room: Option<crate::store::Reservation>,
        id: String,
        keyed: bool,
        kind: OutKind,
        target: String,
        data: Vec<u8>,
        ttl_ms: i64,
    ) -> Result<Pushed, StoreError> {
        let (answer, answered) = oneshot::channel();
        let row = Row {
            room,
            id,
            keyed,
            kind,
            target,
            data,
            ttl_ms,
            answer,
        };
        let start_writer = {
            let mut q = lock(&self.queue);
            q.rows.push(row);
            self.queued.fetch_add(1, Ordering::AcqRel);
            !std::mem::replace(&mut q.writing, true)
        };
        if start_writer {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.write_all());
        }
        answered
            .await
            .map_err(|_| StoreError::Join("the outbox writer stopped".into()))?
    }

    /// The writer: commit groups until the queue is empty.
    fn write_all(&self) {
        // Should a commit panic, the next push starts a new writer (the
        // panicking group's waiters see their answer dropped).
        let _idle = Idle(&self.queue);
        loop {
            let group: Vec<Row> = {
                let mut q = lock(&self.queue);
                if q.rows.is_empty() {
                    q.writing = false;
                    return;
                }
                let n = q.rows.len().min(MAX_GROUP);
                q.rows.drain(..n).collect()
            };
            self.commit(group);
        }
    }

    /// Insert a group in one transaction; answer every row once it
    /// committed. Should the group fail as a whole, each row is tried in
    /// its own transaction, so one bad row cannot fail the others.
    fn commit(&self, group: Vec<Row>) {
        let mut conn = lock(&self.conn);
        let _span = tracing::trace_span!("outbox_commit", rows = group.len()).entered();
        let result = insert(&mut conn, &group);
        self.commits.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(results) => {
                self.count_inserted(&results);
                for (mut row, pushed) in group.into_iter().zip(results) {
                    self.settle_room(&mut row, pushed.inserted);
                    let _ = row.answer.send(Ok(pushed));
                }
            }
            Err(e) if group.len() == 1 => {
                let row = group.into_iter().next();
                if let Some(mut row) = row {
                    self.settle_room(&mut row, false);
                    let _ = row.answer.send(Err(StoreError::Sql(e)));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = group.len(), "outbox group commit failed; one row at a time");
                for mut row in group {
                    let result = insert(&mut conn, std::slice::from_ref(&row));
                    let answer = result.map(|mut r| r.remove(0)).map_err(StoreError::Sql);
                    if let Ok(pushed) = &answer {
                        self.count_inserted(std::slice::from_ref(pushed));
                    }
                    let inserted = answer.as_ref().is_ok_and(|p| p.inserted);
                    self.settle_room(&mut row, inserted);
                    let _ = row.answer.send(answer);
                }
            }
        }
    }

    fn count_inserted(&self, results: &[Pushed]) {
        let n = results.iter().filter(|p| p.inserted).count();
        self.unacked.fetch_add(n as i64, Ordering::AcqRel);
    }

    /// A committed row takes its room's unit in `held` (one without a room
    /// adds its own); a row found there already, or not written, gives its
    /// room back.
    /// Called before the row's answer is sent, so that whoever the answer
    /// wakes sees the count settled.
    fn settle_room(&self, row: &mut Row, inserted: bool) {
        let room = row.room.take();
        if !inserted {
            drop(room);
            return;
        }
        match room {
            Some(room) => room.keep(),
            None => {
                self.held.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

/// Marks the queue writer-less if the writer unwinds.
struct Idle<'a>(&'a Mutex<Queue>);

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(self.0).writing = false;
        }
    }
}

/// One transaction for `rows`; per row whether it was new and whether it
/// still waits for the daemon. Returns once the commit returned.
fn insert(conn: &mut Connection, rows: &[Row]) -> Result<Vec<Pushed>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut out = Vec::with_capacity(rows.len());
    {
        let mut ins = tx.prepare_cached(
            "INSERT OR IGNORE INTO outbox (id, kind, target, data, created_ms, expires_ms, next_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
        )?;
        let mut known = tx.prepare_cached("SELECT acked_ms IS NULL FROM outbox WHERE id = ?1")?;
        let mut remember =
            tx.prepare_cached("INSERT OR IGNORE INTO idempotency (key, at_ms) VALUES (?1, ?2)")?;
        let now = now_ms();
        for r in rows {
            // A key seen within the window is never queued again, even
            // when its row was acknowledged and swept long ago.
            let fresh_key = !r.keyed || remember.execute(params![r.id, now])? == 1;
            let inserted = fresh_key
                && ins.execute(params![
                    r.id,
                    r.kind,
                    r.target,
                    r.data,
                    now,
                    now.saturating_add(r.ttl_ms)
                ])? == 1;
            // A retried idempotency key: still pending unless acknowledged
            // (a row gone already was acknowledged and swept).
            let pending = inserted
                || known
                    .query_row(params![r.id], |c| c.get::<_, bool>(0))
                    .unwrap_or(false);
            out.push(Pushed {
                id: r.id.clone(),
                inserted,
                pending,
            });
        }
    }
    tx.commit()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::store::{Durability, OutKind, Store};

    /// Many pushes at once: every one answered, each committed when
    /// answered (another connection sees it), retried keys stored once,
    /// also when the retry lands in the same group as the original.
    async fn concurrent_pushes(durability: Durability) {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("hive.db");
        let store = Store::open_with(&path, durability).unwrap();
        let mut tasks = Vec::new();
        for i in 0..300u32 {
            let store = store.clone();
            let path = path.clone();
            // Keys k0..k49 each pushed three times: 150 + 50 rows.
            let key = (i >= 200).then(|| format!("k{}", i % 50));
            let key = key.or_else(|| (i < 50).then(|| format!("k{i}")));
            tasks.push(tokio::spawn(async move {
                let pushed = store
                    .push(
                        OutKind::Publish,
                        "t".into(),
                        i.to_be_bytes().to_vec(),
                        60_000,
                        key,
                    )
                    .await
                    .unwrap();
                let other = rusqlite::Connection::open(&path).unwrap();
                let n: i64 = other
                    .query_row(
                        "SELECT COUNT(*) FROM outbox WHERE id = ?1",
                        [&pushed.id],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(n, 1, "answered before its commit");
                pushed
            }));
        }
        let mut inserted = 0;
        for t in tasks {
            let p = t.await.unwrap();
            assert!(p.pending);
            inserted += usize::from(p.inserted);
        }
        assert_eq!(inserted, 200);
        assert_eq!(store.depth().await.unwrap(), 200);
        drop(store);
        let again = Store::open_with(&path, durability).unwrap();
        assert_eq!(again.depth().await.unwrap(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_pushes_in_the_default_mode() {
        concurrent_pushes(Durability::Normal).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_pushes_with_fsync() {
        concurrent_pushes(Durability::Fsync).await;
    }

    /// Rows that queue while a commit holds the connection go into one
    /// transaction together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pushes_queued_behind_a_commit_share_the_next_transaction() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open_with(&dir.path().join("hive.db"), Durability::Fsync).unwrap();
        let conn = store.conn_for_tests();
        // Stands for a long commit: the writer takes the first rows, then
        // waits for the connection while the others queue.
        let held = hive_proto::sync::lock(&conn);
        let tasks: Vec<_> = (0..50u8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .push(OutKind::Publish, "t".into(), vec![i], 60_000, None)
                        .await
                        .unwrap()
                })
            })
            .collect();
        while store.writer_for_tests().counts().0 < 50 {
            std::thread::yield_now();
        }
        drop(held);
        for t in tasks {
            assert!(t.await.unwrap().inserted);
        }
        // The rows the writer took first, then all the rest at once.
        let (queued, commits) = store.writer_for_tests().counts();
        assert_eq!(queued, 50);
        assert!(commits <= 2, "{commits} transactions for 50 rows");
        assert_eq!(store.depth().await.unwrap(), 50);
    }

    #[test]
    fn the_modes_set_sqlite_synchronous() {
        let dir = tempfile::TempDir::new().unwrap();
        for (mode, want) in [(Durability::Normal, 1), (Durability::Fsync, 2)] {
            let path = dir.path().join(format!("{mode:?}.db"));
            let store = Store::open_with(&path, mode).unwrap();
            let conn = store.conn_for_tests();
            let conn = hive_proto::sync::lock(&conn);
            let got: i64 = conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            assert_eq!(got, want, "{mode:?}");
        }
    }

    /// A retried key is not queued again after its message went out and its
    /// row was swept (audit row 24: it was, 5 s after the acknowledgement),
    /// and is forgotten only after the window.
    #[tokio::test]
    async fn a_key_is_remembered_after_its_row_was_swept() {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(&dir.path().join("k.db")).unwrap();
        let push = |store: &Store| {
            let store = store.clone();
            async move {
                store
                    .push(
                        OutKind::Publish,
                        "t".into(),
                        b"m".to_vec(),
                        60_000,
                        Some("k".into()),
                    )
                    .await
                    .unwrap()
            }
        };
        assert!(push(&store).await.inserted);
        let row = store.due(10).await.unwrap().remove(0);
        store.ack(row.seq).await.unwrap();
        let backdate = |sql: &'static str| {
            let conn = store.conn_for_tests();
            let conn = hive_proto::sync::lock(&conn);
            conn.execute(sql, []).unwrap();
        };
        backdate("UPDATE outbox SET acked_ms = 1");
        store.sweep().await.unwrap();
        assert_eq!(
            store.pending(10).await.unwrap().len(),
            0,
            "the acknowledged row is swept"
        );
        let again = push(&store).await;
        assert!(
            !again.inserted && !again.pending,
            "{:?}",
            (again.inserted, again.pending)
        );
        assert!(store.due(10).await.unwrap().is_empty(), "not queued again");
        backdate("UPDATE idempotency SET at_ms = 1");
        store.sweep().await.unwrap();
        assert!(
            push(&store).await.inserted,
            "a key older than the window is new again"
        );
    }
}
