//! go-libp2p-daemon's connection manager, for clients of the control
//! protocol: CONNMANAGER tags with weights per peer and TRIM. The trimming
//! itself is the node's own (`hive_node::connmgr`, the same one Hive's mode
//! runs): with `-connManager` the node trims once the connected peers pass
//! the high watermark (`-connHi`) down to the low one (`-connLo`), sparing
//! peers connected for less than the grace period (`-connGrace`), mesh and
//! relay peers, and keeping the heaviest-tagged ones longest. Without
//! `-connManager` nothing is trimmed, as go's daemon then runs no manager
//! either.

use std::sync::Arc;

use hive_node::connmgr::Tags;
use hive_node::NodeHandle;
use libp2p::PeerId;

pub use hive_node::connmgr::Limits;

pub struct ConnManager {
    /// Trimming on: `-connManager`.
    enabled: bool,
    /// The node's tags: what TAG_PEER sets is what its trimming weighs.
    tags: Tags,
}

impl ConnManager {
    pub fn new(node: &NodeHandle, enabled: bool) -> Arc<ConnManager> {
        Arc::new(ConnManager {
            enabled,
            tags: node.conn_tags().clone(),
        })
    }

    pub fn tag(&self, peer: PeerId, tag: String, weight: i64) {
        self.tags.tag(peer, tag, weight);
    }

    pub fn untag(&self, peer: &PeerId, tag: &str) {
        self.tags.untag(peer, tag);
    }

    /// TRIM: close connections down to the low watermark. Returns how many
    /// peers were disconnected. Does nothing unless `-connManager` is on.
    pub async fn trim(&self, node: &NodeHandle) -> Result<usize, hive_node::CallError> {
        if !self.enabled {
            return Ok(0);
        }
        node.trim().await
    }
}
