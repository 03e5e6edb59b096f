//! What the host knows about a daemon and tells its subscribers: the types
//! shared by the supervisor, the metrics and the API, kept below all three
//! so that none of them has to import another for a name.

use hive_proto::Event;
use serde::Serialize;

use crate::kinds::InKind;

/// Where the daemon is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DaemonState {
    Starting,
    Running,
    Restarting,
    Stopped,
}

impl DaemonState {
    /// The name the API uses (the same as its JSON form).
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonState::Starting => "starting",
            DaemonState::Running => "running",
            DaemonState::Restarting => "restarting",
            DaemonState::Stopped => "stopped",
        }
    }
}

/// The supervision state as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = DaemonInfo)]
pub struct DaemonSnapshot {
    pub state: DaemonState,
    pub pid: Option<u32>,
    pub restarts: u64,
    /// Seconds since the current daemon became ready (absent when it is
    /// not running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<f64>,
    /// While `restarting` with no pid yet: how long the host waits before
    /// the next start
    /// (250 ms doubling to 30 s while starts keep failing, back to 250 ms
    /// after a daemon that ran for a minute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_delay_ms: Option<u64>,
}

/// What the host broadcasts to its own subscribers.
#[derive(Debug, Clone)]
pub enum HostEvent {
    /// An event pushed by the daemon and not stored (peer changes, ...).
    Daemon(Event),
    /// A message or direct message, stored in the inbox under `cursor`.
    Stored { cursor: u64, event: Event },
    /// An outbox message that will never be delivered (`kind` is
    /// `Expired` or `Failed`), stored in the inbox under `cursor`.
    Undelivered {
        cursor: u64,
        kind: InKind,
        id: String,
        target: String,
        direct: bool,
        reason: String,
    },
    /// The supervision state changed.
    State(DaemonSnapshot),
}

/// Everything known about the daemon, including what survives it.
#[derive(Debug, Clone)]
pub struct HostStatus {
    pub daemon: DaemonSnapshot,
    pub peer_id: String,
    pub listen_addrs: Vec<String>,
    pub peers: usize,
    pub daemon_version: Option<String>,
}
