//! τ for one node: its samples over the last 15 minutes, and the sliding
//! windows of restarts and dropped event-stream clients that feed it.

use std::time::{Duration, Instant};

use super::{Supervisor, TENSION_HISTORY_LEN};
use crate::state::DaemonState;
use crate::tension::{self, Tension};
use hive_proto::sync::lock;

impl Supervisor {
    /// Current tension, computed from the live signals.
    pub fn tension(&self) -> Tension {
        self.tension_with_children(0, 0)
    }

    /// An event-stream client was dropped for falling behind.
    pub fn note_client_dropped(&self) {
        self.shared.metrics.slow_clients_dropped.inc();
        lock(&self.shared.status)
            .drop_times
            .push_back(Instant::now());
    }

    /// Keep one τ sample for the history (called every few seconds).
    pub fn record_tension(&self, value: f64) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut s = lock(&self.shared.status);
        if s.tension_history.len() == TENSION_HISTORY_LEN {
            s.tension_history.pop_front();
        }
        s.tension_history.push_back((now_ms, value));
    }

    /// τ samples of the last 15 minutes, oldest first.
    pub fn tension_history(&self) -> Vec<(u64, f64)> {
        lock(&self.shared.status)
            .tension_history
            .iter()
            .copied()
            .collect()
    }

    /// τ of this node, counting `children_down` of its `children` nodes.
    pub fn tension_with_children(&self, children: usize, children_down: usize) -> Tension {
        let (running, recent_restarts, dropped_clients, peers) = {
            let mut s = lock(&self.shared.status);
            let window = Duration::from_secs(tension::RESTART_WINDOW_SECS);
            while s
                .restart_times
                .front()
                .is_some_and(|t| t.elapsed() > window)
            {
                s.restart_times.pop_front();
            }
            let drop_window = Duration::from_secs(tension::DROP_WINDOW_SECS);
            while s
                .drop_times
                .front()
                .is_some_and(|t| t.elapsed() > drop_window)
            {
                s.drop_times.pop_front();
            }
            (
                s.state == DaemonState::Running,
                s.restart_times.len(),
                s.drop_times.len(),
                s.peers,
            )
        };
        let latencies = self.shared.stats.recent_latencies_ms();
        tension::compute(&tension::Inputs {
            daemon_running: running,
            recent_restarts,
            latencies_ms: &latencies,
            in_flight: self.shared.stats.in_flight(),
            outbox_depth: self.shared.metrics.outbox_depth.get().max(0) as u64,
            dropped_clients,
            peers,
            peer_target: self.shared.config.daemon.peer_target,
            children,
            children_down,
            catching_up: self.shared.metrics.catch_up.behind(),
            peer_refusals: self.shared.inbound.guard.recent(),
        })
    }

    pub(super) fn count_restart(&self) {
        let mut s = lock(&self.shared.status);
        s.restarts += 1;
        s.restart_times.push_back(Instant::now());
        if s.restart_times.len() > 1024 {
            s.restart_times.pop_front();
        }
        self.shared.metrics.restarts.inc();
    }
}
