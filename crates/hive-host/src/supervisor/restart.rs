//! The life-cycle loop: start a daemon, watch it, and when it ends start the
//! next one after a backoff, until the host shuts down.

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::health::{Outcome, HEALTH_FAILURES};
use super::process::kill_and_reap;
use super::Supervisor;
use crate::state::DaemonState;
use hive_proto::backoff;
use hive_proto::sync::lock;

/// How one daemon's life ended.
enum Life {
    /// The host is shutting down; the daemon is gone.
    Shutdown,
    /// It failed or stopped; `healthy` if it ran long enough to reset the
    /// backoff.
    Ended { healthy: bool },
}

impl Supervisor {
    /// Run the daemon until `shutdown` fires, restarting it as needed. On
    /// return no daemon process is left.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures = 0u32;
        let mut state = DaemonState::Starting;
        while !shutdown.is_cancelled() {
            match self.one_life(state, &shutdown).await {
                Life::Shutdown => break,
                Life::Ended { healthy: true } => failures = 0,
                Life::Ended { healthy: false } => {}
            }
            if shutdown.is_cancelled() {
                break;
            }
            self.count_restart();
            state = DaemonState::Restarting;
            let delay = backoff::RESTART.delay(failures);
            // Announced with the state, so that an operator (and a test)
            // sees the backoff the host is in.
            lock(&self.shared.status).restart_delay = Some(delay);
            self.set_state(state, None);
            tracing::info!(?delay, "restarting the daemon");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => break,
            }
            failures = failures.saturating_add(1);
        }
        *lock(&self.shared.client) = None;
        self.set_state(DaemonState::Stopped, None);
    }

    /// Start one daemon (announced as `state`), watch it until it ends, and
    /// leave no process behind.
    async fn one_life(&self, state: DaemonState, shutdown: &CancellationToken) -> Life {
        // The configured addresses every time: the daemon itself binds the
        // ports it had before when they are free.
        let mut child = match self.spawn(&self.shared.config.listen) {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(error = %e, "daemon start failed");
                return Life::Ended { healthy: false };
            }
        };
        self.set_state(state, child.id());
        let started = tokio::select! {
            r = self.await_ready(&mut child) => r,
            _ = shutdown.cancelled() => {
                kill_and_reap(&mut child).await;
                return Life::Shutdown;
            }
        };
        let (client, events, _ready) = match started {
            Ok(link) => link,
            Err(e) => {
                tracing::error!(error = %e, "daemon start failed");
                kill_and_reap(&mut child).await;
                return Life::Ended { healthy: false };
            }
        };
        let since = Instant::now();
        self.on_ready(&client).await;
        self.set_state(DaemonState::Running, child.id());
        let outcome = self.supervise(&mut child, &client, events, shutdown).await;
        *lock(&self.shared.client) = None;
        lock(&self.shared.status).peers = 0;
        self.shared.metrics.peers.set(0);
        self.shared.metrics.catch_up.daemon_gone();
        match outcome {
            Outcome::Shutdown => {
                self.stop_daemon(&mut child, &client).await;
                return Life::Shutdown;
            }
            Outcome::Exited(status) => {
                client.close();
                match status {
                    Ok(status) => tracing::warn!(%status, "daemon exited"),
                    Err(e) => tracing::warn!(error = %e, "daemon lost"),
                }
            }
            Outcome::Hung => {
                client.close();
                tracing::error!(
                    "daemon failed {HEALTH_FAILURES} health checks in a row; killing it"
                );
                kill_and_reap(&mut child).await;
            }
        }
        Life::Ended {
            healthy: since.elapsed() >= backoff::HEALTHY_AFTER,
        }
    }
}
