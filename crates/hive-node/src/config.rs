//! Configuration of one node.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::Multiaddr;

/// Default gossipsub / direct message size limit: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// Everything the swarm needs to start. The daemon builds it from its CLI.
#[derive(Clone)]
pub struct NodeConfig {
    pub keypair: Keypair,
    /// Addresses to listen on; each must bind or start-up fails.
    pub listen: Vec<Multiaddr>,
    /// Peers dialed at start and added to Kademlia. No public defaults.
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    /// Largest gossipsub message (and direct message payload) accepted.
    pub max_message_size: usize,
    /// Established connections in total.
    pub max_connections: u32,
    /// Established connections to one peer.
    pub max_connections_per_peer: u32,
    /// How long a connection with no open stream is kept. Long, because
    /// gossipsub meshes and direct messages want warm connections.
    pub idle_timeout: Duration,
}

impl NodeConfig {
    pub fn new(keypair: Keypair) -> Self {
        NodeConfig {
            keypair,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: true,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_connections: 512,
            max_connections_per_peer: 8,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("peer_id", &self.keypair.public().to_peer_id())
            .field("listen", &self.listen)
            .field("bootstrap", &self.bootstrap)
            .field("mdns", &self.mdns)
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}
