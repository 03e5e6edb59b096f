//! Hive's libp2p node: the swarm, its behaviours, and the loop that serves
//! IPC commands and swarm events. The daemon binary (`hive-p2pd`) wraps it in
//! an IPC server; nothing here knows about WebSockets or JSON frames beyond
//! the `hive-proto` types it answers with.

pub mod behaviour;
pub mod circuit;
pub mod config;
pub mod connmgr;
pub mod envelope;
pub mod history;
mod kad_self;
pub mod limits;
pub mod listen;
pub mod memory;
pub mod named;
pub mod node;
mod pubsub_meta;
pub mod reconnect;
pub mod relays;
pub mod scoring;
pub mod sync;
pub mod unslash;
pub mod webrtc;
pub mod webtransport;

pub use config::{NodeConfig, TcpSecurity, DEFAULT_MAX_MESSAGE_SIZE};
pub use node::{
    without_p2p, Call, CallError, Delivery, DialError, DirectError, KadError, MetricsError, Node,
    NodeError, NodeHandle, Pending, PingError, PubsubError, OP_TIMEOUT,
};

/// The one poisoned-mutex policy, shared with the host.
pub(crate) use hive_proto::sync::lock;

/// A tick every `period` (a whole number of seconds) on the process's grid
/// of wake-ups ([`futures_timer::on_grid`]), where libp2p's heartbeats and
/// pings fire too: an idle node wakes once a second for all of them. A late
/// tick is not made up for, and the next one stays on the grid.
pub(crate) fn grid_interval(period: std::time::Duration) -> tokio::time::Interval {
    let start = futures_timer::on_grid(tokio::time::Instant::now());
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick
}
