//! The daemon's catching up (`/hive/sync/1.0.0`), as the host shows it.
//!
//! The daemon counts since it started and answers in its `status`; the
//! health loop hands each answer here. The host's Prometheus counters must
//! only ever grow, across daemon restarts too, so they advance by the
//! difference from the last answer of the same daemon (a restarted daemon
//! counts from zero again).

use hive_proto::SyncStatus;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use hive_proto::sync::lock;

#[derive(Default)]
pub struct CatchUpMetrics {
    behind: Gauge,
    fetched: Counter,
    rejected: Counter,
    failed: Counter,
    served: Counter,
    refused: Counter,
    reconciles: Counter,
    reconciled: Counter,
    /// The last status, and the pid of the daemon that gave it.
    last: std::sync::Mutex<Option<(u32, SyncStatus)>>,
}

impl CatchUpMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sync_behind",
            "Catch-ups with peers waiting or running: above 0 the node knows it may be behind",
            self.behind.clone(),
        );
        let counters = [
            (
                "sync_fetched",
                "Messages fetched from peers' history that passed verification",
                &self.fetched,
            ),
            (
                "sync_rejected",
                "Messages peers offered without their author's valid signature (refused)",
                &self.rejected,
            ),
            (
                "sync_failed",
                "Catch-ups with a peer that failed (no answer, or a broken exchange)",
                &self.failed,
            ),
            (
                "sync_served",
                "Pages of history served to other nodes",
                &self.served,
            ),
            (
                "sync_refused",
                "Sync requests from other nodes refused (too many at once)",
                &self.refused,
            ),
            (
                "sync_reconciles",
                "Reconcile rounds with connected peers (periodic, ids first)",
                &self.reconciles,
            ),
            (
                "sync_reconciled",
                "Messages reconciles found missing while connected and kept",
                &self.reconciled,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
    }

    /// Take a status answer of the daemon `pid` (`None`: it does not catch
    /// up).
    pub fn observe(&self, pid: u32, now: Option<&SyncStatus>) {
        let Some(now) = now else {
            self.behind.set(0);
            return;
        };
        let mut last = lock(&self.last);
        let zero = SyncStatus::default();
        let before = match last.as_ref() {
            Some((p, s)) if *p == pid => s,
            _ => &zero,
        };
        let grow = |c: &Counter, now: u64, before: u64| {
            c.inc_by(now.saturating_sub(before));
        };
        grow(&self.fetched, now.fetched, before.fetched);
        grow(&self.rejected, now.rejected, before.rejected);
        grow(&self.failed, now.failed, before.failed);
        grow(&self.served, now.served, before.served);
        grow(&self.refused, now.refused, before.refused);
        grow(&self.reconciles, now.reconciles, before.reconciles);
        grow(&self.reconciled, now.reconciled, before.reconciled);
        self.behind.set(now.behind as i64);
        *last = Some((pid, now.clone()));
    }

    /// The daemon is gone: nothing is being caught up.
    pub fn daemon_gone(&self) {
        self.behind.set(0);
    }

    pub fn behind(&self) -> usize {
        self.behind.get().max(0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(fetched: u64, behind: usize) -> SyncStatus {
        SyncStatus {
            behind,
            fetched,
            ..Default::default()
        }
    }

    #[test]
    fn counters_grow_by_the_difference_and_across_a_restart() {
        let m = CatchUpMetrics::default();
        m.observe(10, Some(&status(5, 2)));
        m.observe(10, Some(&status(8, 0)));
        assert_eq!(m.fetched.get(), 8);
        assert_eq!(m.behind(), 0);
        // A new daemon (pid 11) starts from zero: its 3 are new.
        m.observe(11, Some(&status(3, 1)));
        assert_eq!(m.fetched.get(), 11);
        assert_eq!(m.behind(), 1);
        m.daemon_gone();
        assert_eq!(m.behind(), 0);
    }
}
