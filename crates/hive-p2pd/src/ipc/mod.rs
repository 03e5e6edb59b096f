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

/// Compare two secrets in time that depends only on their lengths, so that
/// response timing does not reveal how much of a guessed token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
