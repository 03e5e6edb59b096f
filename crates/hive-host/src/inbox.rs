//! The inbox: batched writes of the messages a daemon pushed, stored in one
//! transaction together with how far into that daemon's history the host
//! has got, so that after any crash the host resumes exactly where its
//! store ends (see `inbound.rs`); reads by cursor; and retention.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rusqlite::params;
use tokio_util::sync::CancellationToken;

use crate::peer_guard::{Evicted, InboxBudget};
use crate::store::{now_ms, InKind, InRow, Store, StoreError};

/// One received message on its way into the inbox.
#[derive(Debug, Clone)]
pub struct NewIn {
    /// `Message` or `Direct`.
    pub kind: InKind,
    pub id: String,
    pub topic: Option<String>,
    pub peer: String,
    pub data: Vec<u8>,
}

/// What storing a batch did.
#[derive(Debug)]
pub struct Stored {
    pub cursors: Vec<Option<u64>>,
    pub evicted: Evicted,
    /// Payload bytes in the inbox after it.
    pub bytes: u64,
}

/// A row the inbox does not hold yet (same kind, sender and id). Not
/// `INSERT OR IGNORE`: with AUTOINCREMENT an ignored duplicate uses up a
/// cursor, and a jump in cursors is what tells a resuming client that rows
/// were pruned (docs/01_ARCHITECTURE.md, "Inbox and cursors").
const INSERT_NEW: &str = "INSERT INTO inbox (kind, id, topic, peer, data, received_ms)
     SELECT ?1, ?2, ?3, ?4, ?5, ?6
     WHERE NOT EXISTS (SELECT 1 FROM inbox WHERE kind = ?1 AND peer = ?4 AND id = ?2)";

impl Store {
    /// Where the host stands in a daemon's history: `(journal, seq)`, the
    /// journal most recently written (none yet: `None`).
    pub async fn daemon_position(&self) -> Result<Option<(String, u64)>, StoreError> {
        self.call(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT journal, seq FROM daemon_position ORDER BY rowid DESC LIMIT 1",
            )?;
            let mut rows = stmt.query([])?;
            match rows.next()? {
                Some(r) => Ok(Some((r.get(0)?, r.get::<_, i64>(1)? as u64))),
                None => Ok(None),
            }
        })
        .await
    }

    /// Store a batch in one transaction, hold the inbox to `budget`
    /// (`peer_guard`: the oldest evicted) and move the position in
    /// `journal` to `seq`. Per row its inbox cursor, `None` for a duplicate
    /// (same kind, sender and id as a stored row); what was evicted; the
    /// payload bytes now stored.
    pub async fn insert_inbound_batch(
        &self,
        rows: Vec<NewIn>,
        journal: String,
        seq: u64,
        budget: InboxBudget,
    ) -> Result<Stored, StoreError> {
        let last = self.cursor_counter();
        self.call(move |c| {
            let tx = c.transaction()?;
            let mut cursors = Vec::with_capacity(rows.len());
            {
                let mut stmt = tx.prepare_cached(INSERT_NEW)?;
                let now = now_ms();
                for r in &rows {
                    let changed =
                        stmt.execute(params![r.kind, r.id, r.topic, r.peer, r.data, now])?;
                    cursors.push((changed == 1).then(|| tx.last_insert_rowid() as u64));
                }
            }
            let peers: BTreeSet<String> = rows.iter().map(|r| r.peer.clone()).collect();
            let evicted = crate::peer_guard::enforce(&tx, &peers, budget)?;
            let bytes = crate::peer_guard::stored_bytes(&tx)?;
            // One journal only: the position in an older one means nothing
            // to this daemon.
            tx.execute(
                "DELETE FROM daemon_position WHERE journal <> ?1",
                [&journal],
            )?;
            tx.execute(
                "INSERT INTO daemon_position (journal, seq) VALUES (?1, ?2)
                 ON CONFLICT(journal) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                params![journal, seq as i64],
            )?;
            tx.commit()?;
            if let Some(max) = cursors.iter().flatten().max() {
                last.fetch_max(*max, Ordering::AcqRel);
            }
            Ok(Stored {
                cursors,
                evicted,
                bytes,
            })
        })
        .await
    }
}

impl Store {
    /// Store an inbound event; `None` when it was already stored (a
    /// duplicate by kind, sender and id).
    pub async fn insert_inbound(
        &self,
        kind: InKind,
        id: String,
        topic: Option<String>,
        peer: String,
        data: Vec<u8>,
    ) -> Result<Option<u64>, StoreError> {
        let last = self.cursor_counter();
        self.call(move |c| {
            let changed = c.execute(INSERT_NEW, params![kind, id, topic, peer, data, now_ms()])?;
            if changed == 0 {
                return Ok(None);
            }
            let cursor = c.last_insert_rowid() as u64;
            last.fetch_max(cursor, Ordering::AcqRel);
            Ok(Some(cursor))
        })
        .await
    }

    /// Inbound events after `cursor`, oldest first; only `kind` and `topic`
    /// when given.
    pub async fn inbound_after(
        &self,
        cursor: u64,
        kind: Option<InKind>,
        topic: Option<String>,
        limit: usize,
    ) -> Result<Vec<InRow>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT cursor, kind, id, topic, peer, data, received_ms FROM inbox
                 WHERE cursor > ?1 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR topic = ?3)
                 ORDER BY cursor LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![cursor as i64, kind, topic, limit as i64], |r| {
                Ok(InRow {
                    cursor: r.get::<_, i64>(0)? as u64,
                    kind: r.get(1)?,
                    id: r.get(2)?,
                    topic: r.get(3)?,
                    peer: r.get(4)?,
                    data: r.get(5)?,
                    received_ms: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Apply the retention policy to the inbox: drop rows older than
    /// `max_age_ms` and all but the newest `max_rows`.
    pub async fn prune(&self, max_age_ms: i64, max_rows: u64) -> Result<usize, StoreError> {
        self.call(move |c| {
            let by_age = c.execute(
                "DELETE FROM inbox WHERE received_ms < ?1",
                params![now_ms() - max_age_ms],
            )?;
            // The newest `max_rows` by position, not `MAX(cursor) - N`:
            // eviction leaves holes in the cursors.
            let by_count = c.execute(
                "DELETE FROM inbox WHERE cursor <= (
                     SELECT cursor FROM inbox ORDER BY cursor DESC LIMIT 1 OFFSET ?1)",
                params![max_rows as i64],
            )?;
            Ok(by_age + by_count)
        })
        .await
    }
}

/// Apply the inbox retention policy once a minute, until the node stops.
pub async fn retain(store: Store, max_age: Duration, max_rows: u64, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        match store.prune(max_age.as_millis() as i64, max_rows).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "pruned old received messages"),
            Err(e) => tracing::warn!(error = %e, "inbox pruning failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, topic: &str) -> NewIn {
        NewIn {
            kind: InKind::Message,
            id: id.into(),
            topic: Some(topic.into()),
            peer: "P".into(),
            data: id.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn a_batch_is_stored_once_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hive.db")).unwrap();
        assert_eq!(store.daemon_position().await.unwrap(), None);
        let cursors = store
            .insert_inbound_batch(
                vec![row("a", "t"), row("b", "t"), row("a", "t")],
                "J".into(),
                3,
                InboxBudget::default(),
            )
            .await
            .unwrap()
            .cursors;
        assert!(cursors[0].is_some() && cursors[1].is_some());
        assert_eq!(cursors[2], None, "a duplicate in the batch is dropped");
        assert_eq!(
            store.daemon_position().await.unwrap(),
            Some(("J".into(), 3))
        );
        assert_eq!(store.last_cursor(), cursors[1].unwrap());
        // Positions never move back; another journal replaces the old one.
        store
            .insert_inbound_batch(vec![], "J".into(), 2, InboxBudget::default())
            .await
            .unwrap();
        assert_eq!(
            store.daemon_position().await.unwrap(),
            Some(("J".into(), 3))
        );
        store
            .insert_inbound_batch(vec![row("c", "u")], "K".into(), 1, InboxBudget::default())
            .await
            .unwrap();
        assert_eq!(
            store.daemon_position().await.unwrap(),
            Some(("K".into(), 1))
        );
        let dir2 = dir.path().join("hive.db");
        drop(store);
        let store = Store::open(&dir2).unwrap();
        assert_eq!(
            store.daemon_position().await.unwrap(),
            Some(("K".into(), 1))
        );
        assert_eq!(
            store.inbound_after(0, None, None, 10).await.unwrap().len(),
            3
        );
    }

    /// Retention by age and by count (audit row 42), and what a client
    /// resuming with a cursor older than what is kept gets: the rows still
    /// kept after it, oldest first; the jump in cursors shows the pruned
    /// ones.
    #[tokio::test]
    async fn retention_prunes_by_age_and_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("hive.db")).unwrap();
        let rows = (0..6).map(|i| row(&format!("m{i}"), "t")).collect();
        let cursors = store
            .insert_inbound_batch(rows, "J".into(), 6, InboxBudget::default())
            .await
            .unwrap()
            .cursors;
        let first = cursors[0].unwrap();
        {
            let conn = store.conn_for_tests();
            let conn = hive_proto::sync::lock(&conn);
            // The two oldest arrived two hours ago.
            conn.execute(
                "UPDATE inbox SET received_ms = 0 WHERE id IN ('m0', 'm1')",
                [],
            )
            .unwrap();
        }
        let hour = 3_600_000;
        assert_eq!(store.prune(hour, 1_000).await.unwrap(), 2, "by age");
        assert_eq!(
            store.prune(hour, 3).await.unwrap(),
            1,
            "by count: the newest 3 stay"
        );
        let kept = store.inbound_after(first, None, None, 10).await.unwrap();
        let ids: Vec<&str> = kept.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["m3", "m4", "m5"]);
        assert!(kept[0].cursor > first + 1, "the jump shows what was pruned");
        assert_eq!(
            store.prune(hour, 3).await.unwrap(),
            0,
            "nothing more to drop"
        );
    }
}
