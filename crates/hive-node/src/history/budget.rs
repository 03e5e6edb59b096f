//! The history's byte budget (`--history-max-bytes`): a peer that sends
//! large valid messages (on many topics, so that no per-topic count stops
//! it) must not fill the disk.
//!
//! Policy: **evict the oldest and count it**. Each batch is written and,
//! in the same transaction, the oldest entries of any kind and topic are
//! deleted until the rest fits the budget; so after every commit the kept
//! bytes are within it (not only at the periodic prune). Evicting raises
//! the history's first number: a client that was behind and asks for what
//! went sees it reported as `first` above its position (the host counts
//! them as `lost`), never a silent hole.
//!
//! The running total lives in `history_usage`, kept by triggers on the
//! history in the same transactions as the rows, so that neither a batch
//! nor the budget has to sum the table; it is counted once from the rows at
//! open (a database from before the budget, or one edited by hand).

use std::sync::atomic::{AtomicU64, Ordering};

use hive_proto::HistoryStatus;
use rusqlite::{Connection, Transaction};

/// What one entry counts against the budget: its payload and what is
/// stored with it (`R` is the row: `NEW`, `OLD` or the table).
fn row_bytes(r: &str) -> String {
    format!(
        "(length({r}.data) + COALESCE(length({r}.topic), 0) + length({r}.peer) \
         + length({r}.id) + COALESCE(length({r}.seqno), 0) \
         + COALESCE(length({r}.signature), 0) + COALESCE(length({r}.key), 0))"
    )
}

/// Create the running total and its triggers, and count it from the rows.
pub fn init_schema(conn: &Connection) -> Result<(), rusqlite::Error> {
    // Dropped and made again at each open, so that the triggers always
    // count exactly as the recount below.
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS history_usage (
             one INTEGER PRIMARY KEY CHECK (one = 1), bytes INTEGER NOT NULL);
         DROP TRIGGER IF EXISTS history_usage_add;
         DROP TRIGGER IF EXISTS history_usage_remove;
         CREATE TRIGGER history_usage_add AFTER INSERT ON history BEGIN
             UPDATE history_usage SET bytes = bytes + {new};
         END;
         CREATE TRIGGER history_usage_remove AFTER DELETE ON history BEGIN
             UPDATE history_usage SET bytes = bytes - {old};
         END;
         BEGIN;
         DELETE FROM history_usage;
         INSERT INTO history_usage (one, bytes)
             SELECT 1, COALESCE(SUM({all}), 0) FROM history;
         COMMIT;",
        new = row_bytes("NEW"),
        old = row_bytes("OLD"),
        all = row_bytes("history"),
    ))
}

/// Bytes the kept entries hold (the running total: one row, no scan).
pub fn stored_bytes(conn: &Connection) -> Result<u64, rusqlite::Error> {
    conn.query_row("SELECT bytes FROM history_usage", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n.max(0) as u64)
}

/// What one enforcement evicted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    pub rows: u64,
    pub bytes: u64,
}

/// Delete the oldest entries until at most `max_bytes` remain (0: no
/// budget). Returns what went and the bytes kept.
pub fn enforce(tx: &Transaction<'_>, max_bytes: u64) -> Result<(Evicted, u64), rusqlite::Error> {
    let used = stored_bytes(tx)?;
    let excess = used.saturating_sub(max_bytes);
    if max_bytes == 0 || excess == 0 {
        return Ok((Evicted::default(), used));
    }
    let mut e = Evicted::default();
    let mut upto = 0i64;
    {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT seq, {} FROM history ORDER BY seq",
            row_bytes("history")
        ))?;
        let mut rows = stmt.query([])?;
        while e.bytes < excess {
            let Some(row) = rows.next()? else { break };
            upto = row.get(0)?;
            e.bytes += row.get::<_, i64>(1)?.max(0) as u64;
            e.rows += 1;
        }
    }
    tx.execute("DELETE FROM history WHERE seq <= ?1", [upto])?;
    tracing::debug!(
        ?e,
        max_bytes,
        "history over its byte budget: oldest entries evicted"
    );
    Ok((e, stored_bytes(tx)?))
}

/// The budget's counters, for the daemon's `status`.
#[derive(Debug, Default)]
pub struct Stats {
    max_bytes: u64,
    bytes: AtomicU64,
    evicted: AtomicU64,
    evicted_bytes: AtomicU64,
}

impl Stats {
    pub fn new(max_bytes: u64, bytes: u64) -> Self {
        Stats {
            max_bytes,
            bytes: AtomicU64::new(bytes),
            ..Stats::default()
        }
    }

    /// After a write or a prune: what it evicted and the bytes now kept.
    pub fn record(&self, e: Evicted, bytes: u64) {
        self.evicted.fetch_add(e.rows, Ordering::Relaxed);
        self.evicted_bytes.fetch_add(e.bytes, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn status(&self) -> HistoryStatus {
        HistoryStatus {
            bytes: self.bytes.load(Ordering::Relaxed),
            max_bytes: self.max_bytes,
            evicted: self.evicted.load(Ordering::Relaxed),
            evicted_bytes: self.evicted_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::db::{self, Limits};
    use super::super::Entry;
    use super::*;

    fn message(topic: &str, id: u32, len: usize) -> Entry {
        Entry::Message {
            topic: topic.into(),
            from: "peer".into(),
            id: format!("{id:04}"),
            data: vec![7; len],
            seqno: None,
            signature: None,
            key: None,
            origin: crate::history::Origin::Gossip,
        }
    }

    /// The bytes one `message(topic, id, len)` counts.
    fn cost(topic: &str, len: usize) -> u64 {
        (len + topic.len() + "peer".len() + 4) as u64
    }

    fn kept(conn: &Connection) -> Vec<u64> {
        let mut stmt = conn
            .prepare("SELECT seq FROM history ORDER BY seq")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap();
        rows.map(|s| s.unwrap() as u64).collect()
    }

    /// Large messages on many topics (no per-topic count stops them): after
    /// every batch the kept bytes are within the budget, the oldest went
    /// first and only as many as needed, and the running total is the
    /// rows' true sum.
    #[test]
    fn the_budget_holds_after_every_batch_and_the_oldest_go_first() {
        let (mut conn, _reader, _journal, _head) = db::open(None).expect("in-memory history");
        let one = cost("t0", 1000);
        let max_bytes = 10 * one + one / 2;
        let mut evicted = Evicted::default();
        for batch in 0..5u32 {
            let entries: Vec<Entry> = (0..7)
                .map(|i| message(&format!("t{}", i % 3), batch * 7 + i, 1000))
                .collect();
            let w = db::write(&mut conn, &entries, max_bytes).unwrap();
            assert!(
                w.bytes <= max_bytes,
                "batch {batch}: {} bytes kept",
                w.bytes
            );
            assert_eq!(w.bytes, stored_bytes(&conn).unwrap());
            evicted.rows += w.evicted.rows;
            evicted.bytes += w.evicted.bytes;
        }
        // 35 written, 10 fit: the 25 oldest went, in order.
        assert_eq!(kept(&conn), (26..=35).collect::<Vec<_>>());
        // A client behind them learns they are gone (the host counts them
        // as lost): the history now starts at 26.
        let page = db::page(&conn, "j".into(), 0, 100).unwrap();
        assert_eq!((page.first, page.head, page.events.len()), (26, 35, 10));
        assert_eq!(
            evicted,
            Evicted {
                rows: 25,
                bytes: 25 * one
            }
        );
        // Counted again from the rows, the same.
        let tracked = stored_bytes(&conn).unwrap();
        init_schema(&conn).unwrap();
        assert_eq!(stored_bytes(&conn).unwrap(), tracked);
        assert_eq!(tracked, 10 * one);
        // The retention prune keeps the total true as well.
        let limits = Limits {
            max_age_ms: i64::MAX / 2,
            max_per_topic: 2,
            max_bytes,
        };
        db::prune(&conn, &limits).unwrap();
        assert_eq!(stored_bytes(&conn).unwrap(), 6 * one);
        init_schema(&conn).unwrap();
        assert_eq!(stored_bytes(&conn).unwrap(), 6 * one);
    }

    /// One entry larger than the whole budget is written (its number goes
    /// out), then evicted at once with the rest; 0 means no budget.
    #[test]
    fn an_entry_over_the_budget_is_evicted_and_zero_means_none() {
        let (mut conn, _reader, _journal, _head) = db::open(None).expect("in-memory history");
        let w = db::write(&mut conn, &[message("t", 1, 100)], 0).unwrap();
        assert_eq!((w.seqs, w.evicted), (vec![Some(1)], Evicted::default()));
        let w = db::write(&mut conn, &[message("t", 2, 5000)], 1000).unwrap();
        assert_eq!(w.seqs, [Some(2)]);
        assert_eq!(w.evicted.rows, 2);
        assert_eq!((w.bytes, kept(&conn)), (0, vec![]));
    }
}
