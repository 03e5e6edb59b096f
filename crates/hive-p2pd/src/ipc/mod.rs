//! The IPC server: a WebSocket endpoint on loopback TCP or a Unix socket.
//!
//! `server` accepts connections and hands each to `connection`, which runs
//! the handshake and then serves pipelined requests and pushed events.

mod connection;
mod dispatch;
mod server;

pub use server::bind;

use hive_node::NodeHandle;

/// What every connection needs, shared.
pub struct Context {
    pub node: NodeHandle,
    /// Answers `reproduce`, which needs processes rather than the node.
    pub reproducer: crate::children::Reproducer,
    pub token: String,
    pub max_frame_bytes: usize,
}
