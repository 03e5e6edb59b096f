//! Supervision of the one `hive-p2pd` daemon the host owns.
//!
//! The daemon is the only thing touching the network; the host keeps the
//! *intent* of its API clients (which topics they subscribed) so that a
//! crashed or hung daemon can be replaced by a new one that looks the same
//! from outside. The rest of coming back as the same node is the daemon's
//! own (one restart policy for every supervisor): same data dir and so the
//! same identity; and in it `node-state.json`, from which the new daemon
//! binds the ports it had and dials the peers it knew (see
//! `hive_node::memory`).
//!
//! States: `starting` → `running` → `restarting` → `running` … → `stopped`.
//!
//! One file per concern, each an `impl Supervisor` block: `restart` (the
//! life-cycle loop and its backoff), `process` (spawning, readiness and
//! stopping the daemon), `health` (pings and what ends a daemon's watch),
//! `events` (storing what the daemon pushes, then re-broadcasting it),
//! `topics` (the subscriptions replayed on every new daemon), `history`
//! (τ samples and the windows of restarts and dropped clients).

mod events;
mod health;
mod history;
mod process;
mod restart;
mod topics;

pub use health::HealthPace;
use hive_proto::fanout::Fanout;
use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::inbound::InboundStats;
use crate::ipc_client::IpcClient;
use crate::ipc_stats::IpcStats;
use crate::metrics::Metrics;
use crate::state::{DaemonSnapshot, DaemonState, HostEvent, HostStatus};
use crate::store::Store;
use hive_proto::sync::lock;

/// Capacity of the host event channel fanned out to WebSocket clients.
pub const HOST_EVENT_CAPACITY: usize = 16_384;

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub daemon: DaemonSettings,
    /// The daemon's own data dir (`<host data dir>/daemon`).
    pub data_dir: PathBuf,
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
    /// Secret for the IPC hello, handed over in the environment.
    pub token: String,
    /// The host's `--durability`, which its daemons' histories follow.
    pub durability: crate::store::Durability,
    /// How often the daemon's health is checked.
    pub health: HealthPace,
}

/// How a host starts its daemons: the same for the first node and every
/// child, so that a spawned node behaves like the first.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub daemon_bin: PathBuf,
    pub no_mdns: bool,
    pub log_format: String,
    /// Connected peers below which the `peers_below_target` signal rises.
    pub peer_target: usize,
    /// Relays each daemon keeps a slot on (`--relay`), for nodes that
    /// others cannot dial.
    pub relays: Vec<String>,
    /// Each daemon also serves as a relay (`--relay-service`).
    pub relay_service: bool,
    /// `--relay-reservation-secs` for the daemons, when given.
    pub relay_reservation_secs: Option<u64>,
    /// The connection manager's watermarks (`--conn-low`, `--conn-high`);
    /// `None`: the daemon's defaults.
    pub conn_low: Option<usize>,
    pub conn_high: Option<usize>,
    /// What remote peers may make this node store: the per-peer rates
    /// passed to the daemon, and the inbox's byte budget the host keeps.
    pub peer_limits: crate::peer_guard::PeerLimits,
    /// The daemon's `--worker-threads`; `None`: one per core.
    pub worker_threads: Option<u16>,
}

/// How much τ history each node keeps: 15 minutes at one sample per 5 s.
pub const TENSION_HISTORY_LEN: usize = 180;

#[derive(Debug)]
struct Status {
    state: DaemonState,
    pid: Option<u32>,
    restarts: u64,
    restart_times: VecDeque<Instant>,
    peer_id: String,
    listen_addrs: Vec<String>,
    peers: usize,
    daemon_version: Option<String>,
    /// When event-stream clients were dropped for falling behind.
    drop_times: VecDeque<Instant>,
    /// When the current daemon became ready.
    running_since: Option<Instant>,
    /// While restarting: the backoff before the next start.
    restart_delay: Option<std::time::Duration>,
    /// `(unix ms, τ)` samples, oldest first.
    tension_history: VecDeque<(u64, f64)>,
}

impl Status {
    /// The part of the status the API shows as `daemon`.
    fn snapshot(&self) -> DaemonSnapshot {
        DaemonSnapshot {
            state: self.state,
            pid: self.pid,
            restarts: self.restarts,
            uptime_secs: self.running_since.map(|t| t.elapsed().as_secs_f64()),
            restart_delay_ms: self.restart_delay.map(|d| d.as_millis() as u64),
        }
    }
}

struct Shared {
    config: SupervisorConfig,
    status: Mutex<Status>,
    /// Present only while the daemon is running.
    client: Mutex<Option<IpcClient>>,
    /// Topics the API subscribed; replayed on every new daemon.
    topics: Mutex<BTreeSet<String>>,
    events: Fanout<HostEvent>,
    /// Where received messages are stored (deduplicated) before they are
    /// broadcast.
    store: Store,
    stats: Arc<IpcStats>,
    metrics: Arc<Metrics>,
    /// How the host keeps up with the daemon's history.
    inbound: Arc<InboundStats>,
}

/// Handle on the supervisor; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    pub fn new(
        config: SupervisorConfig,
        store: Store,
        stats: Arc<IpcStats>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let events = Fanout::new(HOST_EVENT_CAPACITY);
        // Subscriptions outlive the host: a restarted host re-subscribes.
        let topics: BTreeSet<String> = match store.wanted_topics() {
            Ok(topics) => topics.into_iter().collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stored subscriptions");
                BTreeSet::new()
            }
        };
        metrics.set_state(DaemonState::Starting);
        let budget = config.daemon.peer_limits.budget;
        Supervisor {
            shared: Arc::new(Shared {
                status: Mutex::new(Status {
                    state: DaemonState::Starting,
                    pid: None,
                    restarts: 0,
                    restart_times: VecDeque::new(),
                    peer_id: String::new(),
                    listen_addrs: Vec::new(),
                    peers: 0,
                    daemon_version: None,
                    drop_times: VecDeque::new(),
                    running_since: None,
                    restart_delay: None,
                    tension_history: VecDeque::with_capacity(TENSION_HISTORY_LEN),
                }),
                client: Mutex::new(None),
                topics: Mutex::new(topics),
                events,
                store,
                stats,
                metrics,
                config,
                inbound: Arc::new(InboundStats {
                    guard: crate::peer_guard::GuardStats::new(budget),
                    ..InboundStats::default()
                }),
            }),
        }
    }

    /// The IPC link, when the daemon is running.
    pub fn client(&self) -> Option<IpcClient> {
        lock(&self.shared.client)
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    pub fn snapshot(&self) -> DaemonSnapshot {
        lock(&self.shared.status).snapshot()
    }

    pub fn status(&self) -> HostStatus {
        let s = lock(&self.shared.status);
        HostStatus {
            daemon: s.snapshot(),
            peer_id: s.peer_id.clone(),
            listen_addrs: s.listen_addrs.clone(),
            peers: s.peers,
            daemon_version: s.daemon_version.clone(),
        }
    }

    /// Broadcast an event of the host's own (an undeliverable message).
    pub fn publish_event(&self, event: HostEvent) {
        let _ = self.shared.events.send(event);
    }

    /// `/api/status`'s `inbound` field.
    pub fn inbound_stats(&self) -> crate::inbound::InboundSnapshot {
        crate::inbound::InboundSnapshot {
            received: lock(&self.shared.client)
                .as_ref()
                .map_or(0, IpcClient::pushed),
            ..self.shared.inbound.snapshot()
        }
    }

    /// `/api/status`'s `peer_limits` field.
    pub fn guard_status(&self) -> crate::peer_guard::GuardStatus {
        self.shared.inbound.guard.status()
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn subscribe_events(&self) -> hive_proto::fanout::Receiver<HostEvent> {
        self.shared.events.subscribe()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    fn set_state(&self, state: DaemonState, pid: Option<u32>) {
        let snapshot = {
            let mut s = lock(&self.shared.status);
            s.state = state;
            s.pid = pid;
            s.running_since = (state == DaemonState::Running).then(Instant::now);
            // The wait is over once a process is started (a `restarting`
            // state with a pid is the replacement starting).
            if state != DaemonState::Restarting || pid.is_some() {
                s.restart_delay = None;
            }
            s.snapshot()
        };
        self.shared.metrics.set_state(state);
        tracing::info!(state = ?snapshot.state, pid = snapshot.pid, restarts = snapshot.restarts, "daemon state");
        let _ = self.shared.events.send(HostEvent::State(snapshot));
    }
}
