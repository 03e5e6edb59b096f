//! Peers cannot fill a node: the host's side of the limits on what remote
//! peers make it store.
//!
//! - The daemon refuses direct messages and history-sync requests past each
//!   peer's rate (token buckets, `hive_node::limits`); the host passes its
//!   `hive up` rate flags on to each daemon, reads the daemon's refusal
//!   counts from its status, and counts them in `/metrics` and τ.
//! - The host's inbox has a byte budget, per peer and in total. Policy:
//!   **evict the oldest and count it**. After each stored batch, a peer over
//!   its budget loses its own oldest messages until it fits, then, if the
//!   inbox as a whole is over its budget, the oldest messages of anyone go.
//!   A flooding peer therefore only pushes out its own messages (the
//!   per-peer budget is below the total), and the stored bytes never exceed
//!   the budget after a batch is committed. Evictions are counted.
//!
//! - The daemon's history has its own byte budget (`--history-max-bytes`,
//!   same policy, see `hive_node::history`); the host passes the flag on,
//!   and counts the daemon's evictions from its status like its refusals.
//!
//! Bytes are kept per peer in `inbox_usage`, maintained by triggers on the
//! inbox, so that neither retention nor the budget scans the inbox.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hive_proto::{HistoryStatus, Refusals};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rusqlite::{params, Connection, Transaction};
use serde::Serialize;

/// The inbox's byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InboxBudget {
    /// Most payload bytes stored for one peer.
    pub per_peer: u64,
    /// Most payload bytes stored in all.
    pub total: u64,
}

impl Default for InboxBudget {
    /// 256 MiB per peer, 1 GiB in all.
    fn default() -> Self {
        InboxBudget {
            per_peer: 256 << 20,
            total: 1 << 30,
        }
    }
}

/// The daemon's per-peer rates, as `hive up` was given them (`None`: the
/// daemon's default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonRates {
    pub direct_rate: Option<f64>,
    pub direct_burst: Option<f64>,
    pub direct_bytes_rate: Option<u64>,
    pub sync_rate: Option<f64>,
}

impl DaemonRates {
    /// The daemon flags these stand for.
    pub fn daemon_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(name.to_owned());
                args.push(v);
            }
        };
        flag("--direct-rate", self.direct_rate.map(|v| v.to_string()));
        flag("--direct-burst", self.direct_burst.map(|v| v.to_string()));
        flag(
            "--direct-bytes-rate",
            self.direct_bytes_rate.map(|v| v.to_string()),
        );
        flag("--sync-rate", self.sync_rate.map(|v| v.to_string()));
        args
    }
}

/// Everything a node's host bounds about its remote peers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerLimits {
    pub rates: DaemonRates,
    pub budget: InboxBudget,
    /// The daemon's history byte budget (`None`: the daemon's default).
    pub history_max_bytes: Option<u64>,
}

impl PeerLimits {
    /// The daemon flags for the daemon's side of these limits.
    pub fn daemon_args(&self) -> Vec<String> {
        let mut args = self.rates.daemon_args();
        if let Some(n) = self.history_max_bytes {
            args.extend(["--history-max-bytes".to_owned(), n.to_string()]);
        }
        args
    }
}

/// Refusals within this window make the `refusals` signal of τ.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// Counters of what was refused or evicted, for `/api/status`, `/metrics`
/// and τ.
#[derive(Debug, Default)]
pub struct GuardStats {
    pub budget: InboxBudget,
    /// Payload bytes in the inbox after the last batch.
    pub stored_bytes: AtomicU64,
    pub evicted_peer: AtomicU64,
    pub evicted_total: AtomicU64,
    pub evicted_bytes: AtomicU64,
    /// The daemon's counts, summed over its restarts.
    pub direct_refused: AtomicU64,
    pub sync_refused: AtomicU64,
    /// The running daemon's last reported counts (they restart at 0).
    last_seen: Mutex<Refusals>,
    /// The running daemon's last history status, and its evictions summed
    /// over its restarts (rows, bytes).
    history: Mutex<Option<HistoryStatus>>,
    history_evicted: AtomicU64,
    history_evicted_bytes: AtomicU64,
    /// `(when, all refusals and evictions so far)`, oldest first.
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

/// `/api/status`'s `peer_limits`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GuardStatus {
    pub budget: InboxBudget,
    /// Payload bytes stored in the inbox.
    pub stored_bytes: u64,
    /// Messages evicted because their peer was over its budget.
    pub evicted_peer_budget: u64,
    /// Messages evicted because the inbox was over its total budget.
    pub evicted_total_budget: u64,
    pub evicted_bytes: u64,
    /// Direct messages the daemon refused (senders over their rate).
    pub direct_rate_limited: u64,
    /// History-sync requests the daemon refused.
    pub sync_rate_limited: u64,
    /// The daemon's history against its byte budget, its evictions summed
    /// over daemon restarts (absent until a daemon reported it).
    pub daemon_history: Option<HistoryStatus>,
}

impl GuardStats {
    pub fn new(budget: InboxBudget) -> Self {
        GuardStats {
            budget,
            ..GuardStats::default()
        }
    }

    pub fn status(&self) -> GuardStatus {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GuardStatus {
            budget: self.budget,
            stored_bytes: get(&self.stored_bytes),
            evicted_peer_budget: get(&self.evicted_peer),
            evicted_total_budget: get(&self.evicted_total),
            evicted_bytes: get(&self.evicted_bytes),
            direct_rate_limited: get(&self.direct_refused),
            sync_rate_limited: get(&self.sync_refused),
            daemon_history: hive_proto::sync::lock(&self.history).map(|h| HistoryStatus {
                evicted: get(&self.history_evicted),
                evicted_bytes: get(&self.history_evicted_bytes),
                ..h
            }),
        }
    }

    fn all(&self) -> u64 {
        let s = self.status();
        s.evicted_peer_budget
            + s.evicted_total_budget
            + s.direct_rate_limited
            + s.sync_rate_limited
            + s.daemon_history.map_or(0, |h| h.evicted)
    }

    /// Take a daemon's history status; `fresh` as for
    /// [`GuardStats::observe_daemon`]. Returns the evictions since the last
    /// one (rows, bytes).
    pub fn observe_history(&self, now: HistoryStatus, fresh: bool) -> (u64, u64) {
        let mut last = hive_proto::sync::lock(&self.history);
        let before = match *last {
            Some(h) if !fresh => h,
            _ => HistoryStatus::default(),
        };
        let delta = |n: u64, b: u64| if n >= b { n - b } else { n };
        let d = (
            delta(now.evicted, before.evicted),
            delta(now.evicted_bytes, before.evicted_bytes),
        );
        *last = Some(now);
        self.history_evicted.fetch_add(d.0, Ordering::Relaxed);
        self.history_evicted_bytes.fetch_add(d.1, Ordering::Relaxed);
        d
    }

    /// Take a daemon's status counts; `fresh`: a new daemon (its counts
    /// start again at 0). Returns the increase.
    pub fn observe_daemon(&self, now: Refusals, fresh: bool) -> Refusals {
        let mut last = hive_proto::sync::lock(&self.last_seen);
        let before = if fresh { Refusals::default() } else { *last };
        // A count lower than before is a restarted daemon too.
        let delta = |n: u64, b: u64| if n >= b { n - b } else { n };
        let d = Refusals {
            direct_rate_limited: delta(now.direct_rate_limited, before.direct_rate_limited),
            sync_rate_limited: delta(now.sync_rate_limited, before.sync_rate_limited),
        };
        *last = now;
        self.direct_refused
            .fetch_add(d.direct_rate_limited, Ordering::Relaxed);
        self.sync_refused
            .fetch_add(d.sync_rate_limited, Ordering::Relaxed);
        d
    }

    pub fn count_evictions(&self, e: Evicted, stored_bytes: u64) {
        self.evicted_peer.fetch_add(e.peer_rows, Ordering::Relaxed);
        self.evicted_total
            .fetch_add(e.total_rows, Ordering::Relaxed);
        self.evicted_bytes.fetch_add(e.bytes, Ordering::Relaxed);
        self.stored_bytes.store(stored_bytes, Ordering::Relaxed);
    }

    /// Refusals and evictions within [`REFUSAL_WINDOW`], for τ.
    pub fn recent(&self) -> u64 {
        let now = Instant::now();
        let all = self.all();
        let mut samples = hive_proto::sync::lock(&self.samples);
        samples.push_back((now, all));
        while samples.len() > 1
            && samples
                .get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= REFUSAL_WINDOW)
        {
            samples.pop_front();
        }
        while samples.len() > 4096 {
            samples.pop_front();
        }
        let oldest = samples.front().map_or(all, |(_, n)| *n);
        all.saturating_sub(oldest)
    }
}

/// What one enforcement evicted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    pub peer_rows: u64,
    pub total_rows: u64,
    pub bytes: u64,
}

/// The byte accounting of the inbox; run by `Store::open` (an existing
/// inbox is counted once, then kept up to date by the triggers).
pub fn init_schema(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS inbox_peer ON inbox(peer, cursor);
         CREATE TABLE IF NOT EXISTS inbox_usage (
             peer TEXT PRIMARY KEY, bytes INTEGER NOT NULL, rows INTEGER NOT NULL);
         CREATE TRIGGER IF NOT EXISTS inbox_usage_add AFTER INSERT ON inbox BEGIN
             INSERT INTO inbox_usage (peer, bytes, rows) VALUES (NEW.peer, length(NEW.data), 1)
             ON CONFLICT(peer) DO UPDATE SET bytes = bytes + excluded.bytes, rows = rows + 1;
         END;
         CREATE TRIGGER IF NOT EXISTS inbox_usage_remove AFTER DELETE ON inbox BEGIN
             UPDATE inbox_usage SET bytes = bytes - length(OLD.data), rows = rows - 1
             WHERE peer = OLD.peer;
             DELETE FROM inbox_usage WHERE peer = OLD.peer AND rows <= 0;
         END;
         BEGIN;
         DELETE FROM inbox_usage;
         INSERT INTO inbox_usage (peer, bytes, rows)
             SELECT peer, SUM(length(data)), COUNT(*) FROM inbox GROUP BY peer;
         COMMIT;",
    )
}

/// Payload bytes in the inbox.
pub fn stored_bytes(conn: &Connection) -> Result<u64, rusqlite::Error> {
    conn.query_row("SELECT COALESCE(SUM(bytes), 0) FROM inbox_usage", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n.max(0) as u64)
}

/// Evict the oldest rows of `peer` (or of anyone, `None`) until at most
/// `budget` bytes remain of them. Returns `(rows, bytes)` evicted.
fn evict_over(
    tx: &Transaction<'_>,
    peer: Option<&str>,
    budget: u64,
) -> Result<(u64, u64), rusqlite::Error> {
    let used: i64 = tx.query_row(
        "SELECT COALESCE(SUM(bytes), 0) FROM inbox_usage WHERE ?1 IS NULL OR peer = ?1",
        [peer],
        |r| r.get(0),
    )?;
    let excess = (used.max(0) as u64).saturating_sub(budget);
    if excess == 0 {
        return Ok((0, 0));
    }
    let (mut rows, mut freed, mut upto) = (0u64, 0u64, 0i64);
    {
        let mut stmt = tx.prepare_cached(
            "SELECT cursor, length(data) FROM inbox WHERE ?1 IS NULL OR peer = ?1 ORDER BY cursor",
        )?;
        let mut it = stmt.query([peer])?;
        while freed < excess {
            let Some(r) = it.next()? else { break };
            upto = r.get(0)?;
            freed += r.get::<_, i64>(1)?.max(0) as u64;
            rows += 1;
        }
    }
    tx.execute(
        "DELETE FROM inbox WHERE (?1 IS NULL OR peer = ?1) AND cursor <= ?2",
        params![peer, upto],
    )?;
    Ok((rows, freed))
}

/// Hold the inbox to `budget` after rows of `peers` were stored.
pub fn enforce(
    tx: &Transaction<'_>,
    peers: &BTreeSet<String>,
    budget: InboxBudget,
) -> Result<Evicted, rusqlite::Error> {
    let mut e = Evicted::default();
    for peer in peers {
        let (rows, bytes) = evict_over(tx, Some(peer), budget.per_peer)?;
        e.peer_rows += rows;
        e.bytes += bytes;
    }
    let (rows, bytes) = evict_over(tx, None, budget.total)?;
    e.total_rows += rows;
    e.bytes += bytes;
    if e.peer_rows + e.total_rows > 0 {
        tracing::debug!(?e, "inbox over its byte budget: oldest messages evicted");
    }
    Ok(e)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The metric handles of refusals and evictions.
#[derive(Clone, Default)]
pub struct GuardMetrics {
    refusals: Family<ReasonLabel, Counter>,
    evicted_bytes: Counter,
    inbox_bytes: Gauge,
    history_bytes: Gauge,
    history_evicted_bytes: Counter,
}

impl GuardMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "peer_refusals",
            "What remote peers were refused or had evicted: direct_rate_limited and \
             sync_rate_limited (the daemon's per-peer rates), inbox_peer_budget and \
             inbox_total_budget (messages evicted from the inbox's byte budget), \
             history_budget (entries evicted from the daemon's history's byte budget)",
            self.refusals.clone(),
        );
        registry.register(
            "inbox_evicted_bytes",
            "Payload bytes evicted from the inbox to keep it within its byte budget",
            self.evicted_bytes.clone(),
        );
        registry.register(
            "inbox_bytes",
            "Payload bytes stored in the inbox",
            self.inbox_bytes.clone(),
        );
        registry.register(
            "daemon_history_bytes",
            "Bytes the daemon's history (history.db) keeps, against --history-max-bytes",
            self.history_bytes.clone(),
        );
        registry.register(
            "daemon_history_evicted_bytes",
            "Bytes evicted from the daemon's history to keep it within its byte budget",
            self.history_evicted_bytes.clone(),
        );
        // Every reason shows from the start, at 0.
        for reason in REASONS {
            let _ = self.refusals.get_or_create(&ReasonLabel { reason });
        }
    }

    fn add(&self, reason: &'static str, n: u64) {
        if n > 0 {
            self.refusals
                .get_or_create(&ReasonLabel { reason })
                .inc_by(n);
        }
    }

    pub fn daemon_refused(&self, d: Refusals) {
        self.add("direct_rate_limited", d.direct_rate_limited);
        self.add("sync_rate_limited", d.sync_rate_limited);
    }

    /// A daemon's history status and its evictions since the last one.
    pub fn daemon_history(&self, now: HistoryStatus, (rows, bytes): (u64, u64)) {
        self.add("history_budget", rows);
        self.history_evicted_bytes.inc_by(bytes);
        self.history_bytes
            .set(now.bytes.min(i64::MAX as u64) as i64);
    }

    pub fn evicted(&self, e: Evicted, stored_bytes: u64) {
        self.add("inbox_peer_budget", e.peer_rows);
        self.add("inbox_total_budget", e.total_rows);
        self.evicted_bytes.inc_by(e.bytes);
        self.inbox_bytes
            .set(stored_bytes.min(i64::MAX as u64) as i64);
    }
}

const REASONS: [&str; 5] = [
    "direct_rate_limited",
    "sync_rate_limited",
    "inbox_peer_budget",
    "inbox_total_budget",
    "history_budget",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(c: &Connection, peer: &str, id: u32, len: usize) {
        c.execute(
            "INSERT INTO inbox (kind, id, topic, peer, data, received_ms)
             VALUES ('direct', ?1, NULL, ?2, ?3, 0)",
            params![id.to_string(), peer, vec![0u8; len]],
        )
        .unwrap();
    }

    #[test]
    fn a_peer_over_its_budget_loses_its_own_oldest_then_the_total_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("h.db")).unwrap();
        drop(store);
        let mut c = Connection::open(dir.path().join("h.db")).unwrap();
        init_schema(&c).unwrap();
        insert(&c, "honest", 0, 300);
        for id in 0..10 {
            insert(&c, "flood", id, 100);
        }
        let budget = InboxBudget {
            per_peer: 450,
            total: 700,
        };
        let tx = c.transaction().unwrap();
        let peers = BTreeSet::from(["flood".to_owned()]);
        let e = enforce(&tx, &peers, budget).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            e,
            Evicted {
                peer_rows: 6,
                total_rows: 0,
                bytes: 600
            }
        );
        assert_eq!(stored_bytes(&c).unwrap(), 700);
        let honest: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM inbox WHERE peer = 'honest'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(honest, 1, "the flood evicted only its own messages");
        // Over the total: the oldest of anyone goes.
        insert(&c, "third", 0, 200);
        let tx = c.transaction().unwrap();
        let e = enforce(&tx, &BTreeSet::from(["third".to_owned()]), budget).unwrap();
        tx.commit().unwrap();
        assert_eq!((e.total_rows, e.bytes), (1, 300));
        assert_eq!(stored_bytes(&c).unwrap(), 600);
        // Counted again from scratch at open, the same.
        init_schema(&c).unwrap();
        assert_eq!(stored_bytes(&c).unwrap(), 600);
    }

    #[test]
    fn a_restarted_daemon_counts_from_zero_again() {
        let g = GuardStats::new(InboxBudget::default());
        let r = |d, s| Refusals {
            direct_rate_limited: d,
            sync_rate_limited: s,
        };
        g.observe_daemon(r(5, 1), true);
        assert_eq!(g.observe_daemon(r(8, 1), false), r(3, 0));
        g.observe_daemon(r(2, 0), true);
        let s = g.status();
        assert_eq!((s.direct_rate_limited, s.sync_rate_limited), (10, 1));
        assert_eq!(g.recent(), 0, "the first sample is the base");
        g.observe_daemon(r(7, 0), false);
        assert_eq!(g.recent(), 5);
        // The history's evictions the same way, and in τ.
        let h = |evicted, bytes| HistoryStatus {
            bytes: 900,
            max_bytes: 1000,
            evicted,
            evicted_bytes: bytes,
        };
        assert_eq!(g.observe_history(h(4, 400), true), (4, 400));
        assert_eq!(g.observe_history(h(6, 600), false), (2, 200));
        assert_eq!(g.observe_history(h(1, 100), true), (1, 100));
        let s = g.status().daemon_history.expect("reported");
        assert_eq!(
            (s.bytes, s.max_bytes, s.evicted, s.evicted_bytes),
            (900, 1000, 7, 700)
        );
        assert_eq!(g.recent(), 12);
    }
}
