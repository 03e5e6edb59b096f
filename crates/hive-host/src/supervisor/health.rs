//! Watching a running daemon: what ends the watch (exit, a closed link,
//! failed health pings, shutdown), and the pings that keep the status fresh.

use std::process::ExitStatus;
use std::time::Duration;

use hive_proto::{Event, Op, StatusResult};
use tokio::process::Child;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Supervisor;
use crate::ipc_client::IpcClient;
use hive_proto::sync::lock;

const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive failed health pings after which the daemon counts as hung.
pub(super) const HEALTH_FAILURES: u32 = 3;
/// How long a daemon whose IPC link closed may take to exit by itself.
const LINK_LOSS_GRACE: Duration = Duration::from_secs(3);

/// How a running daemon stopped being supervised.
pub(super) enum Outcome {
    Exited(std::io::Result<ExitStatus>),
    Hung,
    Shutdown,
}

impl Supervisor {
    pub(super) async fn supervise(
        &self,
        child: &mut Child,
        client: &IpcClient,
        events: broadcast::Receiver<Event>,
        shutdown: &CancellationToken,
    ) -> Outcome {
        tokio::select! {
            status = child.wait() => Outcome::Exited(status),
            reason = client.closed() => {
                // Usually the daemon is exiting; give it a moment to do so,
                // otherwise it lives without a usable link: treat as hung.
                tracing::warn!(%reason, "IPC link to the daemon closed");
                match tokio::time::timeout(LINK_LOSS_GRACE, child.wait()).await {
                    Ok(status) => Outcome::Exited(status),
                    Err(_) => Outcome::Hung,
                }
            }
            _ = self.health_loop(client) => Outcome::Hung,
            _ = self.forward_events(events, client) => Outcome::Hung,
            _ = shutdown.cancelled() => Outcome::Shutdown,
        }
    }

    /// Returns only when the daemon is considered hung.
    async fn health_loop(&self, client: &IpcClient) {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failures = 0;
        let mut fresh = true;
        loop {
            tick.tick().await;
            match client
                .request_typed::<StatusResult>(Op::Status, HEALTH_TIMEOUT)
                .await
            {
                Ok(st) => {
                    failures = 0;
                    {
                        let mut s = lock(&self.shared.status);
                        s.peer_id = st.peer_id;
                        s.listen_addrs = st.listen_addrs;
                        s.peers = st.peers;
                        s.daemon_version = Some(st.daemon_version);
                    }
                    self.shared.metrics.peers.set(st.peers as i64);
                    self.shared
                        .metrics
                        .catch_up
                        .observe(st.pid, st.sync.as_ref());
                    let guard = &self.shared.inbound.guard;
                    if let Some(refused) = st.refused {
                        let d = guard.observe_daemon(refused, fresh);
                        self.shared.metrics.guard.daemon_refused(d);
                    }
                    if let Some(history) = st.history {
                        let d = guard.observe_history(history, fresh);
                        self.shared.metrics.guard.daemon_history(history, d);
                    }
                    fresh = false;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "daemon health check failed");
                    if failures >= HEALTH_FAILURES {
                        return;
                    }
                }
            }
        }
    }
}
