//! The host's durable state: an outbox of messages the API accepted and an
//! inbox of messages the daemon received, in one SQLite database
//! (`<data-dir>/hive.db`, mode 0600).
//!
//! Durability ([`Durability`], `hive up --durability`): WAL journal with
//! `synchronous = NORMAL` by default. A commit is in the WAL file (in the
//! kernel's page cache) before the API answers, so killing the host
//! process, even with SIGKILL, loses nothing it acknowledged; a power loss
//! or kernel crash can lose the commits since the WAL was last synced (at
//! checkpoints), which this default accepts for throughput. `fsync` sets
//! `synchronous = FULL`: every commit fsyncs the WAL before it returns, and
//! the API answers only after the commit holding its row returned. Either
//! way the outbox's rows are written by group commit (`group_commit.rs`).
//!
//! Outbox rows stay after the daemon acknowledges them, marked `acked_ms`,
//! for [`RESEND_WINDOW_MS`]: a daemon killed right after acknowledging may
//! not have put the message on the wire yet, so after a crash the recent
//! window is sent again. Receivers drop the duplicates by message id.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

pub use crate::group_commit::Durability;
use crate::group_commit::GroupCommit;
pub use crate::kinds::{InKind, OutKind};

/// How long acknowledged outbox rows are kept for re-sending after a crash.
pub const RESEND_WINDOW_MS: i64 = 5_000;
/// How long an `Idempotency-Key` is remembered: a retry within it is never
/// queued again, also after its message went out and its row was swept.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot create the database file: {0}")]
    Io(#[from] std::io::Error),
    #[error("database task failed: {0}")]
    Join(String),
}

/// A message accepted and not yet acknowledged, as `GET /api/outbox` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OutItem {
    pub seq: i64,
    pub id: String,
    pub kind: OutKind,
    /// Topic for a publish, peer id for a direct message.
    pub target: String,
    #[serde(skip)]
    pub data: Vec<u8>,
    pub size: usize,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub attempts: i64,
    pub next_ms: i64,
    pub last_error: Option<String>,
}

/// The outcome of [`Store::push`].
#[derive(Debug, Clone)]
pub struct Pushed {
    pub id: String,
    /// False when a row with this idempotency key existed already.
    pub inserted: bool,
    /// Whether the row still waits for the daemon's acknowledgement.
    pub pending: bool,
}

/// A stored inbound event.
#[derive(Debug, Clone)]
pub struct InRow {
    pub cursor: u64,
    pub kind: InKind,
    pub id: String,
    pub topic: Option<String>,
    /// The sender (or, for `expired`, the intended recipient or topic).
    pub peer: String,
    pub data: Vec<u8>,
    pub received_ms: i64,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Cheap to clone; every call runs on the blocking pool.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    last_cursor: Arc<AtomicU64>,
    /// Unacknowledged outbox rows, kept in memory: the API checks it on
    /// every publish, and counting rows there would cost a scan each time.
    unacked: Arc<std::sync::atomic::AtomicI64>,
    /// Unacknowledged rows plus the rooms the API reserved for rows not yet
    /// committed: what admission checks (see [`Store::reserve`]). One
    /// counter, so that a row's commit never shows it twice (as row and as
    /// room) or not at all: a committed row takes over its room's unit.
    held: Arc<std::sync::atomic::AtomicI64>,
    /// The outbox's writer: pushes share transactions.
    writer: GroupCommit,
}

/// Room for one outbox row, held from admission until its row is committed
/// (the row then keeps the unit) or its push failed or found the row there
/// already (the room is given back).
pub struct Reservation {
    held: Arc<std::sync::atomic::AtomicI64>,
    armed: bool,
}

impl Reservation {
    /// The row was committed: its unit in the count is the row's now.
    pub(crate) fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed {
            self.held.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Store {
    /// Open (or create) the store in the default durability mode.
    #[cfg(test)]
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Self::open_with(path, Durability::Normal)
    }

    pub fn open_with(path: &Path, durability: Durability) -> Result<Store, StoreError> {
        if !path.exists() {
            // Owner-only from the first byte.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            if durability == Durability::Fsync {
                // The new file's name must survive a power loss too.
                sync_parent(path)?;
            }
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", durability.synchronous())?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                target TEXT NOT NULL,
                data BLOB NOT NULL,
                created_ms INTEGER NOT NULL,
                expires_ms INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_ms INTEGER NOT NULL DEFAULT 0,
                last_error TEXT,
                acked_ms INTEGER
            );
            CREATE TABLE IF NOT EXISTS inbox (
                cursor INTEGER PRIMARY KEY AUTOINCREMENT,
                kind TEXT NOT NULL,
                id TEXT NOT NULL,
                topic TEXT,
                peer TEXT NOT NULL,
                data BLOB NOT NULL,
                received_ms INTEGER NOT NULL,
                UNIQUE(kind, peer, id)
            );
            CREATE INDEX IF NOT EXISTS inbox_topic ON inbox(topic, cursor);
            CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS idempotency_at ON idempotency(at_ms);
            CREATE TABLE IF NOT EXISTS daemon_position (journal TEXT PRIMARY KEY, seq INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS outbox_unacked ON outbox(seq) WHERE acked_ms IS NULL;
            CREATE INDEX IF NOT EXISTS outbox_waiting ON outbox(next_ms) WHERE acked_ms IS NULL;",
        )?;
        crate::peer_guard::init_schema(&conn)?;
        // The WAL and shared-memory files inherit nothing: tighten them too.
        for suffix in ["-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = std::path::PathBuf::from(p);
            if p.exists() {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        let last: i64 = conn.query_row("SELECT COALESCE(MAX(cursor), 0) FROM inbox", [], |r| {
            r.get(0)
        })?;
        let unacked: i64 = conn.query_row(
            "SELECT COUNT(*) FROM outbox WHERE acked_ms IS NULL",
            [],
            |r| r.get(0),
        )?;
        let conn = Arc::new(Mutex::new(conn));
        let held = Arc::new(std::sync::atomic::AtomicI64::new(unacked));
        let unacked = Arc::new(std::sync::atomic::AtomicI64::new(unacked));
        Ok(Store {
            writer: GroupCommit::new(conn.clone(), unacked.clone(), held.clone()),
            conn,
            last_cursor: Arc::new(AtomicU64::new(last as u64)),
            unacked,
            held,
        })
    }

    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = hive_proto::sync::lock(&conn);
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
        .map_err(StoreError::from)
    }

    /// The connection, for tests that look at the database directly.
    #[cfg(test)]
    pub(crate) fn conn_for_tests(&self) -> Arc<Mutex<Connection>> {
        self.conn.clone()
    }

    #[cfg(test)]
    pub(crate) fn writer_for_tests(&self) -> &GroupCommit {
        &self.writer
    }

    /// Topics the API subscribed, kept so that a restarted host subscribes
    /// its new daemon to them again. Read once, at start-up.
    pub fn wanted_topics(&self) -> Result<Vec<String>, StoreError> {
        let conn = hive_proto::sync::lock(&self.conn);
        let mut stmt = conn.prepare("SELECT topic FROM topics ORDER BY topic")?;
        let topics = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(topics)
    }

    /// Remember (or forget) a subscription across host restarts.
    pub async fn set_topic_wanted(&self, topic: String, wanted: bool) -> Result<(), StoreError> {
        self.call(move |c| {
            if wanted {
                c.execute("INSERT OR IGNORE INTO topics (topic) VALUES (?1)", [&topic])?;
            } else {
                c.execute("DELETE FROM topics WHERE topic = ?1", [&topic])?;
            }
            Ok(())
        })
        .await
    }

    /// The newest inbox cursor.
    pub fn last_cursor(&self) -> u64 {
        self.last_cursor.load(Ordering::Acquire)
    }

    /// The cursor counter, for the batched inbox writes (`inbox.rs`).
    pub(crate) fn cursor_counter(&self) -> Arc<AtomicU64> {
        self.last_cursor.clone()
    }

    /// Accept a message into the outbox; stored when this returns (in the
    /// WAL, and with `--durability fsync` on disk). Concurrent pushes share
    /// one transaction (`group_commit.rs`).
    ///
    /// `key` is the client's idempotency key: a retried request with the
    /// same key finds the row already there and is not queued twice.
    #[cfg(test)]
    pub async fn push(
        &self,
        kind: OutKind,
        target: String,
        data: Vec<u8>,
        ttl_ms: i64,
        key: Option<String>,
    ) -> Result<Pushed, StoreError> {
        self.push_in(None, kind, target, data, ttl_ms, key).await
    }

    /// [`Store::push`] into a room [`Store::reserve`] gave: a committed row
    /// takes the room over in the writer, whatever becomes of the request.
    pub async fn push_reserved(
        &self,
        room: Reservation,
        kind: OutKind,
        target: String,
        data: Vec<u8>,
        ttl_ms: i64,
        key: Option<String>,
    ) -> Result<Pushed, StoreError> {
        self.push_in(Some(room), kind, target, data, ttl_ms, key)
            .await
    }

    async fn push_in(
        &self,
        room: Option<Reservation>,
        kind: OutKind,
        target: String,
        data: Vec<u8>,
        ttl_ms: i64,
        key: Option<String>,
    ) -> Result<Pushed, StoreError> {
        let keyed = key.is_some();
        let id = key.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
        self.writer
            .push(room, id, keyed, kind, target, data, ttl_ms)
            .await
    }

    /// Unacknowledged rows due now, oldest first.
    ///
    /// A publish waiting for its retry holds back the later publishes of its
    /// topic: they are not due before it went out, so a message queued while
    /// nobody listened is not overtaken by those posted once someone does.
    pub async fn due(&self, limit: usize) -> Result<Vec<OutItem>, StoreError> {
        self.call(move |c| {
            let now = now_ms();
            // Per topic, the oldest publish still waiting for its retry (few
            // rows while messages flow: only those backing off).
            let mut waiting = c.prepare_cached(
                "SELECT target, MIN(seq) FROM outbox
                 WHERE acked_ms IS NULL AND next_ms > ?1 AND kind <> 'direct'
                 GROUP BY target",
            )?;
            let held: std::collections::HashMap<String, i64> = waiting
                .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut stmt = c.prepare_cached(
                "SELECT seq, id, kind, target, data, created_ms, expires_ms, attempts, next_ms, last_error
                 FROM outbox WHERE acked_ms IS NULL AND next_ms <= ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64], out_item)?;
            let mut due = Vec::new();
            for row in rows {
                let row = row?;
                let behind = row.kind != OutKind::Direct
                    && held.get(&row.target).is_some_and(|&first| first < row.seq);
                if !behind {
                    due.push(row);
                }
            }
            Ok(due)
        })
        .await
    }

    /// Unacknowledged rows, oldest first, for the API.
    pub async fn pending(&self, limit: usize) -> Result<Vec<OutItem>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, id, kind, target, data, created_ms, expires_ms, attempts, next_ms, last_error
                 FROM outbox WHERE acked_ms IS NULL ORDER BY seq LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], out_item)?;
            rows.collect()
        })
        .await
    }

    /// Unacknowledged rows.
    pub async fn depth(&self) -> Result<u64, StoreError> {
        Ok(self.unacked.load(Ordering::Acquire).max(0) as u64)
    }

    /// Whether any row waits for the daemon's acknowledgement (no query:
    /// the count is kept beside the table).
    pub fn waiting(&self) -> bool {
        self.unacked.load(Ordering::Acquire) > 0
    }

    /// Room for one more row in an outbox of at most `max`, counting the
    /// rows other requests were admitted for and are still writing (group
    /// commit writes many at once: checking `depth` alone let every request
    /// of a batch in). `None`: full. The room is taken first and then
    /// checked, so two requests never both get the last slot.
    pub fn reserve(&self, max: u64) -> Option<Reservation> {
        let held = self.held.fetch_add(1, Ordering::AcqRel) + 1;
        let reservation = Reservation {
            held: self.held.clone(),
            armed: true,
        };
        (held.max(0) as u64 <= max).then_some(reservation)
    }

    /// The daemon acknowledged this row.
    pub async fn ack(&self, seq: i64) -> Result<(), StoreError> {
        self.ack_many(vec![seq]).await
    }

    /// The daemon acknowledged these rows: one transaction for all.
    pub async fn ack_many(&self, seqs: Vec<i64>) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let unacked = self.unacked.clone();
        let held = self.held.clone();
        self.call(move |c| {
            let tx = c.transaction()?;
            let now = now_ms();
            let mut changed = 0;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE outbox SET acked_ms = ?2 WHERE seq = ?1 AND acked_ms IS NULL",
                )?;
                for seq in seqs {
                    changed += stmt.execute(params![seq, now])?;
                }
            }
            tx.commit()?;
            unacked.fetch_sub(changed as i64, Ordering::AcqRel);
            held.fetch_sub(changed as i64, Ordering::AcqRel);
            Ok(())
        })
        .await
    }

    /// Try again at `next_ms`.
    pub async fn retry(&self, seq: i64, next_ms: i64, error: String) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_ms = ?2, last_error = ?3 WHERE seq = ?1",
                params![seq, next_ms, error],
            )
            .map(drop)
        })
        .await
    }

    /// After a daemon crash: acknowledged rows of the last window go out
    /// again (receivers drop duplicates by id).
    pub async fn resend_recent(&self) -> Result<usize, StoreError> {
        self.resend_acked_since(now_ms() - RESEND_WINDOW_MS).await
    }

    /// After a host crash: every acknowledged row still kept goes out again.
    /// Rows are swept only once they are older than the window, so what is
    /// left was recent when the host died, however long ago that was.
    pub async fn resend_all_acked(&self) -> Result<usize, StoreError> {
        self.resend_acked_since(0).await
    }

    async fn resend_acked_since(&self, since_ms: i64) -> Result<usize, StoreError> {
        let unacked = self.unacked.clone();
        let held = self.held.clone();
        self.call(move |c| {
            let n = c.execute(
                "UPDATE outbox SET acked_ms = NULL, next_ms = 0 WHERE acked_ms IS NOT NULL AND acked_ms >= ?1",
                params![since_ms],
            )?;
            unacked.fetch_add(n as i64, Ordering::AcqRel);
            held.fetch_add(n as i64, Ordering::AcqRel);
            Ok(n)
        })
        .await
    }

    /// Remove rows acknowledged before the window, and take out the rows
    /// whose time to live ran out (returned, to be reported).
    pub async fn sweep(&self) -> Result<Vec<OutItem>, StoreError> {
        let unacked = self.unacked.clone();
        let held = self.held.clone();
        self.call(move |c| {
            let now = now_ms();
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM outbox WHERE acked_ms IS NOT NULL AND acked_ms < ?1",
                params![now - RESEND_WINDOW_MS],
            )?;
            tx.execute(
                "DELETE FROM idempotency WHERE at_ms < ?1",
                params![now - IDEMPOTENCY_WINDOW_MS],
            )?;
            let expired: Vec<OutItem> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT seq, id, kind, target, data, created_ms, expires_ms, attempts, next_ms, last_error
                     FROM outbox WHERE acked_ms IS NULL AND expires_ms <= ?1 ORDER BY seq",
                )?;
                let rows = stmt.query_map(params![now], out_item)?;
                rows.collect::<Result<_, _>>()?
            };
            let removed = tx.execute(
                "DELETE FROM outbox WHERE acked_ms IS NULL AND expires_ms <= ?1",
                params![now],
            )?;
            tx.commit()?;
            unacked.fetch_sub(removed as i64, Ordering::AcqRel);
            held.fetch_sub(removed as i64, Ordering::AcqRel);
            Ok(expired)
        })
        .await
    }

    /// Drop a row that can never be delivered (the daemon refused it for
    /// good); returned for reporting.
    pub async fn fail(&self, seq: i64) -> Result<(), StoreError> {
        let unacked = self.unacked.clone();
        let held = self.held.clone();
        self.call(move |c| {
            let removed = c.execute(
                "DELETE FROM outbox WHERE seq = ?1 AND acked_ms IS NULL",
                params![seq],
            )?;
            unacked.fetch_sub(removed as i64, Ordering::AcqRel);
            held.fetch_sub(removed as i64, Ordering::AcqRel);
            Ok(())
        })
        .await
    }
}

/// fsync the directory holding `path`, so that a file just created there
/// is found after a power loss.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn out_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutItem> {
    let data: Vec<u8> = r.get(4)?;
    Ok(OutItem {
        seq: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        target: r.get(3)?,
        size: data.len(),
        data,
        created_ms: r.get(5)?,
        expires_ms: r.get(6)?,
        attempts: r.get(7)?,
        next_ms: r.get(8)?,
        last_error: r.get(9)?,
    })
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
