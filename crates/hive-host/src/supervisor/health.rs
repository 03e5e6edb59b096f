//! Watching a running daemon: what ends the watch (exit, a closed link,
//! failed health pings, shutdown), and the pings that keep the status fresh.

use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hive_proto::{Event, Op, StatusResult};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use super::Supervisor;
use crate::ipc_client::IpcClient;
use hive_proto::sync::lock;

const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// Health checks per second that a hive's child nodes share. Each check
/// wakes both the host and a daemon: at 2 s each, 1,000 children cost 500
/// wake-ups a second on a machine that is otherwise idle.
const CHILD_CHECKS_PER_SEC: usize = 50;
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive failed health pings after which the daemon counts as hung.
pub(super) const HEALTH_FAILURES: u32 = 3;
/// A late health check is not held against a daemon whose threads waited
/// at least this long for a CPU in its last four seconds: the machine is starved (a few
/// hundred nodes starting on two cores), the daemon is not hung. A stopped
/// or deadlocked daemon waits for no CPU, so it is still found out.
const STARVED: Duration = Duration::from_secs(1);
/// A check not answered within this long starts watching the CPU wait.
const SLOW_CHECK: Duration = Duration::from_secs(1);
/// How long a daemon whose IPC link closed may take to exit by itself.
const LINK_LOSS_GRACE: Duration = Duration::from_secs(3);

/// How often a daemon's health is checked. The first node, the one
/// applications use, every [`HEALTH_INTERVAL`]. A hive's children share
/// [`CHILD_CHECKS_PER_SEC`]: up to 100 of them are checked every 2 s, 1,000
/// every 20 s (a hung one is then replaced within about a minute).
#[derive(Debug, Clone, Default)]
pub struct HealthPace {
    /// How many children the hive runs; `None` for the first node.
    children: Option<Arc<AtomicUsize>>,
}

impl HealthPace {
    /// The pace of a child node, from the live count of the hive's children.
    pub fn shared(children: Arc<AtomicUsize>) -> Self {
        HealthPace {
            children: Some(children),
        }
    }

    fn interval(&self) -> Duration {
        let Some(children) = &self.children else {
            return HEALTH_INTERVAL;
        };
        let n = children.load(Ordering::Relaxed) as u64;
        let shared = Duration::from_millis(n * 1000 / CHILD_CHECKS_PER_SEC as u64);
        shared.max(HEALTH_INTERVAL)
    }
}

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
        events: hive_proto::fanout::Receiver<Event>,
        shutdown: &CancellationToken,
    ) -> Outcome {
        let pid = child.id();
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
            _ = self.health_loop(client, pid) => Outcome::Hung,
            _ = self.forward_events(events, client) => Outcome::Hung,
            _ = shutdown.cancelled() => Outcome::Shutdown,
        }
    }

    /// Returns only when the daemon is considered hung.
    async fn health_loop(&self, client: &IpcClient, pid: Option<u32>) {
        let pace = &self.shared.config.health;
        let mut failures = 0;
        let mut fresh = true;
        loop {
            // Read each time: the pace follows the hive as it grows.
            tokio::time::sleep(pace.interval()).await;
            let mut request =
                std::pin::pin!(client.request_typed::<StatusResult>(Op::Status, HEALTH_TIMEOUT));
            // The CPU wait is read only for a check that is slow already:
            // a read of every thread's schedstat per check, for hundreds of
            // daemons, is not free.
            let (answer, waited_before) =
                match tokio::time::timeout(SLOW_CHECK, request.as_mut()).await {
                    Ok(answer) => (answer, None),
                    Err(_) => {
                        let before = pid.and_then(cpu_wait);
                        (request.await, before)
                    }
                };
            match answer {
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
                    let waited = waited_before
                        .zip(pid.and_then(cpu_wait))
                        .map(|(before, after)| after.saturating_sub(before));
                    if let Some(waited) = waited.filter(|w| *w >= STARVED) {
                        // Killing a daemon the machine starves adds a
                        // restart to the load that starved it.
                        tracing::warn!(error = %e, ?waited, "daemon health check late: the daemon waited for a CPU, not counted as a failure");
                        continue;
                    }
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

/// How long all threads of `pid` have waited, runnable, for a CPU
/// (the second field of each thread's `/proc/<pid>/task/<tid>/schedstat`);
/// None where the kernel does not tell.
fn cpu_wait(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut nanos: u64 = 0;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        let waited: u64 = stat.split_whitespace().nth(1)?.parse().ok()?;
        nanos = nanos.saturating_add(waited);
    }
    Some(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn children_share_a_budget_of_checks_and_the_first_node_keeps_its_pace() {
        assert_eq!(HealthPace::default().interval(), HEALTH_INTERVAL);
        let children = Arc::new(AtomicUsize::new(10));
        let pace = HealthPace::shared(children.clone());
        assert_eq!(pace.interval(), HEALTH_INTERVAL, "a small hive: 2 s");
        children.store(1000, Ordering::Relaxed);
        assert_eq!(pace.interval(), Duration::from_secs(20));
        children.store(300, Ordering::Relaxed);
        assert_eq!(
            pace.interval(),
            Duration::from_secs(6),
            "it follows the count"
        );
        assert_eq!(HealthPace::default().interval(), HEALTH_INTERVAL);
    }

    /// What the health check relies on: a stopped process waits for no
    /// CPU, so a hung daemon is still killed.
    #[test]
    fn a_stopped_process_waits_for_no_cpu() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        let stopped = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status();
        assert!(stopped.is_ok_and(|s| s.success()));
        // kill(1) only queues the signal: read the baseline once the kernel
        // says the (single-threaded) process is stopped.
        let state = || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest.to_owned());
            after_comm.and_then(|rest| rest.split_whitespace().next().map(str::to_owned))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while state().as_deref() != Some("T") {
            assert!(std::time::Instant::now() < deadline, "sleep did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        let before = cpu_wait(pid);
        std::thread::sleep(Duration::from_millis(300));
        let after = cpu_wait(pid);
        let _ = child.kill();
        let _ = child.wait();
        let Some(before) = before else {
            return; // no schedstat here: the health check counts every miss
        };
        assert_eq!(after, Some(before), "a stopped process waited for a CPU");

        assert!(cpu_wait(std::process::id()).is_some());
        assert_eq!(cpu_wait(u32::MAX), None, "no such process");
    }
}
