//! Configuration of one node.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::Multiaddr;

/// Default gossipsub / direct message size limit: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// Which security protocols TCP connections offer (go's `-noise` and
/// `-tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpSecurity {
    /// Noise first, then TLS (go's daemon offers both).
    Both,
    NoiseOnly,
    TlsOnly,
}

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
    /// Addresses others reach this node at, taken as confirmed external
    /// addresses (announced by identify).
    pub external_addrs: Vec<Multiaddr>,
    /// Reach peers through relays (circuit addresses) and accept circuits
    /// that relays open to this node.
    pub relay_client: bool,
    /// Serve as a relay for others (HOP offered from the start, whatever
    /// the reachability, as go's daemon does); `None`: not a relay.
    pub relay_service: Option<RelayService>,
    /// Keep reservations on relays, so that peers that cannot dial this
    /// node reach it through them; `None`: no reservations.
    pub auto_relay: Option<AutoRelay>,
    /// Whether others can dial this node directly: decides whether
    /// [`AutoRelay`] reserves.
    pub reachability: Reachability,
    /// Run AutoNAT (v1): ask peers to dial back the listen addresses, and
    /// dial back for them. Confirmed addresses become external addresses.
    pub autonat: bool,
    /// Ask the local gateway (UPnP IGD) to forward the TCP listen ports.
    pub upnp: bool,
    /// The security protocols offered on TCP (QUIC always uses TLS).
    pub tcp_security: TcpSecurity,
    /// Kademlia as a client only: it queries but answers nobody (go's
    /// `-dhtClient`). Otherwise it serves, even without a confirmed
    /// external address.
    pub dht_client: bool,
    /// Sign published gossipsub messages (without: they carry this node as
    /// author and no signature).
    pub pubsub_sign: bool,
    /// Refuse gossipsub messages without a valid signature (without: check
    /// signatures that are present, accept unsigned messages).
    pub pubsub_strict: bool,
    /// Gossipsub heartbeat period.
    pub gossipsub_heartbeat: Duration,
    /// Delay before the first gossipsub heartbeat.
    pub gossipsub_initial_delay: Duration,
    /// Where and how much the node keeps of what it received.
    pub history: crate::history::HistoryConfig,
    /// Keep connections between these watermarks (see `connmgr`);
    /// `None`: never trim.
    pub conn_manager: Option<crate::connmgr::Limits>,
    /// Whether a Kademlia bootstrap also refreshes every bucket farther
    /// than the closest neighbour (a lookup of a random key in each), as
    /// rust-libp2p and go do. Off in Hive's own mode: a bootstrap is the
    /// lookup of the node's own id only. Each refresh lookup connects to
    /// some twenty peers; a newcomer bootstraps twice (rust-libp2p starts
    /// another while its routing table holds fewer than 20 peers), so 300
    /// nodes joining opened about 150,000 connections on this machine and
    /// starved it. The far buckets fill from the peers that connect and
    /// from lookups the node's users make.
    pub bucket_refresh: bool,
    /// Where the node remembers its bound ports and known peers across
    /// restarts (see [`crate::memory`]); `None`: it remembers nothing.
    pub state_file: Option<std::path::PathBuf>,
    /// Remembered peers are dialed while fewer peers than this are
    /// connected (bootstrap peers always, while disconnected).
    pub target_peers: usize,
    /// Ask peers for missed messages after being away, and answer theirs
    /// (`/hive/sync/1.0.0`, see [`crate::sync`]).
    pub catch_up: bool,
    /// Rate limits on what remote peers ask of this node (`limits`).
    pub peer_limits: crate::limits::PeerLimits,
}

/// Relays to keep a slot on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoRelay {
    /// Each with its `/p2p/PEER` part: dialed at start and re-dialed while
    /// a slot is wanted.
    pub relays: Vec<Multiaddr>,
    /// Reserve only while the node is not reachable directly (go's
    /// autorelay); otherwise always (an explicit `--relay`).
    pub only_when_private: bool,
}

/// Whether this node believes others can reach it directly; go's autorelay
/// keeps slots only while they cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reachability {
    /// Decided by confirmed external addresses.
    #[default]
    Auto,
    /// Taken as reachable (go's `-forceReachabilityPublic`).
    Public,
    /// Taken as unreachable (go's `-forceReachabilityPrivate`).
    Private,
}

/// Limits of the relay service (circuit relay v2, HOP side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayService {
    pub max_reservations: usize,
    pub max_reservations_per_peer: usize,
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    pub max_circuit_duration: Duration,
    /// Bytes relayed in each direction of one circuit before it is reset.
    pub max_circuit_bytes: u64,
    /// How long a slot (reservation) lasts unless its holder renews it.
    pub reservation_duration: Duration,
}

impl Default for RelayService {
    /// go-libp2p-daemon's defaults (`-relayMaxReservations`,
    /// `-relayMaxCircuits`, `-relayTimeLimit`, `-relayDataLimit`).
    fn default() -> Self {
        RelayService {
            max_reservations: 128,
            max_reservations_per_peer: 4,
            max_circuits: 1024,
            max_circuits_per_peer: 16,
            max_circuit_duration: Duration::from_secs(30 * 60),
            max_circuit_bytes: 4 << 30,
            reservation_duration: Duration::from_secs(3600),
        }
    }
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
            bucket_refresh: false,
            external_addrs: Vec::new(),
            relay_client: true,
            relay_service: None,
            auto_relay: None,
            reachability: Reachability::Auto,
            autonat: false,
            tcp_security: TcpSecurity::Both,
            upnp: false,
            dht_client: false,
            pubsub_sign: true,
            pubsub_strict: true,
            gossipsub_heartbeat: Duration::from_secs(1),
            gossipsub_initial_delay: Duration::from_secs(5),
            history: crate::history::HistoryConfig::at(None),
            conn_manager: Some(crate::connmgr::Limits::HIVE),
            state_file: None,
            target_peers: 8,
            catch_up: true,
            peer_limits: crate::limits::PeerLimits::DEFAULT,
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
            .field("relay_client", &self.relay_client)
            .field("relay_service", &self.relay_service)
            .field("auto_relay", &self.auto_relay)
            .field("reachability", &self.reachability)
            .field("autonat", &self.autonat)
            .field("upnp", &self.upnp)
            .field("conn_manager", &self.conn_manager)
            .finish_non_exhaustive()
    }
}
