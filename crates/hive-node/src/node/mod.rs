//! The node: a swarm driven by one loop that serves commands and swarm events.
//!
//! Everything that touches the swarm happens in [`Node::run`], which reads
//! like rust-libp2p's examples: one `select!` over the command channel and the
//! swarm. Callers use the typed [`NodeHandle`] (see `handle`): each method
//! sends a [`Command`] carrying a `oneshot` sender for its answer. Operations
//! that wait on the network (dial, direct send, DHT queries, ping) never block
//! the loop: they park their reply channel in a pending map keyed by the id
//! libp2p hands back, and are answered when the matching swarm event arrives.
//!
//! This module holds the state and start-up; each concern is one `impl Node`
//! block in a child module: `event_loop` (the loop and the commands),
//! `status_cache` (`status` answered outside the loop while nothing has
//! changed), `build` (the swarm), `swarm_events`
//! (connections, listen addresses, the behaviours' events), `peers` (dials
//! and what the node says about its peers), `reach` (reachability and relay
//! slots), `pubsub`, `direct` (direct messages and ping), `dht` (Kademlia)
//! and `conns` (the connection manager); `handle` is the typed API and
//! `errors` its error types.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hive_proto::{
    ClosestPeersResult, DialResult, Event, FindPeerResult, FindProvidersResult, GetRecordResult,
    ListenAddrsResult, MetricsResult, PeersResult, PingResult, PublishResult, SendResult,
    StatusResult, SubscribeResult, TopicPeersResult, TopicsResult,
};
use libp2p::metrics::Metrics;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{kad, request_response};
use libp2p::{Multiaddr, PeerId, Swarm};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};

use crate::behaviour::Behaviour;
use crate::config::{NodeConfig, Reachability};
use crate::relays::{Relays, ReservationOutcome};

mod bootstrap_warn;
mod build;
mod conns;
mod dht;
mod direct;
mod errors;
mod event_loop;
mod handle;
#[cfg(test)]
mod memory_tests;
mod peers;
mod pubsub;
mod reach;
mod routes;
mod self_lookup;
mod status_cache;
mod swarm_events;

pub use errors::{
    CallError, Delivery, DialError, DirectError, KadError, MetricsError, PingError, PubsubError,
};
use handle::Reply;
pub use handle::{Call, NodeHandle, Pending, OP_TIMEOUT};

/// Capacity of the event broadcast each IPC connection subscribes to.
pub const EVENT_CAPACITY: usize = 8192;
/// How long start-up may take to bind every listen address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often due bootstrap and remembered peers are dialed (each with its
/// own backoff, see `reconnect`).
const BOOTSTRAP_REDIAL_INTERVAL: Duration = Duration::from_secs(2);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("listen addresses were not bound within {0:?}")]
    ListenTimeout(Duration),
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
}

/// One operation for the loop, with the sender its answer goes back on.
pub(crate) enum Command {
    Status(Reply<StatusResult>),
    ListenAddrs(Reply<ListenAddrsResult>),
    Peers(Reply<PeersResult>),
    PeersAndTopics(Reply<(std::collections::HashSet<PeerId>, Vec<String>)>),
    Dial {
        addr: Multiaddr,
        reply: Reply<DialResult, DialError>,
    },
    Disconnect {
        peer: PeerId,
        reply: Reply<()>,
    },
    Subscribe {
        topic: String,
        reply: Reply<SubscribeResult, PubsubError>,
    },
    Unsubscribe {
        topic: String,
        reply: Reply<SubscribeResult, PubsubError>,
    },
    Topics(Reply<TopicsResult>),
    TopicPeers {
        topic: String,
        reply: Reply<TopicPeersResult>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        id: Option<String>,
        reply: Reply<PublishResult, PubsubError>,
    },
    Send {
        peer: PeerId,
        data: Vec<u8>,
        id: Option<String>,
        reply: Reply<SendResult, DirectError>,
    },
    FindPeer {
        peer: PeerId,
        reply: Reply<FindPeerResult, KadError>,
    },
    Provide {
        key: Vec<u8>,
        reply: Reply<(), KadError>,
    },
    FindProviders {
        key: Vec<u8>,
        reply: Reply<FindProvidersResult>,
    },
    ClosestPeers {
        key: Vec<u8>,
        reply: Reply<ClosestPeersResult>,
    },
    PutRecord {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: Reply<(), KadError>,
    },
    GetRecord {
        key: Vec<u8>,
        reply: Reply<GetRecordResult, KadError>,
    },
    Ping {
        peer: PeerId,
        reply: Reply<PingResult, PingError>,
    },
    Shutdown(Reply<()>),
    Metrics(Reply<MetricsResult, MetricsError>),
    /// go's CONNMANAGER TRIM: close connections down to the low watermark.
    Trim(Reply<usize>),
    /// Write what the node remembers (its ports and peers) now.
    SaveMemory {
        reply: oneshot::Sender<Option<crate::memory::Saved>>,
    },
}

/// What the node knows about one connected peer.
struct PeerState {
    connections: HashMap<ConnectionId, Multiaddr>,
    since: Instant,
    rtt: Option<Duration>,
    /// Reached only because a behaviour dialed it (a Kademlia lookup, as a
    /// rule), never by a dial of this node's own nor from the peer's side:
    /// such a connection has served its purpose once the lookup is over.
    by_lookup: bool,
    /// Since when this peer has had a direct connection beside a relayed
    /// one (see `close_superseded_circuits`).
    circuit_superseded: Option<Instant>,
}

/// A Kademlia query waiting for its result, with where the answer goes.
enum KadPending {
    FindPeer {
        target: PeerId,
        reply: Reply<FindPeerResult, KadError>,
    },
    Provide(Reply<(), KadError>),
    FindProviders {
        providers: HashSet<PeerId>,
        reply: Reply<FindProvidersResult>,
    },
    ClosestPeers(Reply<ClosestPeersResult>),
    PutRecord(Reply<(), KadError>),
    GetRecord(Reply<GetRecordResult, KadError>),
}

/// The node's state, owned by its loop.
pub struct Node {
    swarm: Swarm<Behaviour>,
    /// libp2p's own metrics, served by [`NodeHandle::metrics`].
    registry: Registry,
    metrics: Metrics,
    commands: mpsc::Receiver<Command>,
    events: hive_proto::fanout::Fanout<Event>,
    shutdown: watch::Sender<bool>,
    peer_id: PeerId,
    max_message_size: usize,
    /// See [`NodeConfig::bucket_refresh`].
    bucket_refresh: bool,
    /// Circuit addresses may be dialed.
    relay_client: bool,
    reachability: Reachability,
    /// Slots on relays (see `relays`).
    relays: Relays,
    /// Bounded connections (see `connmgr`); `None`: no trimming.
    conn_manager: Option<crate::connmgr::ConnManager>,
    relay_outcomes: mpsc::UnboundedReceiver<ReservationOutcome>,
    /// Signatures gossipsub verified, for the message events.
    signatures: crate::pubsub_meta::Signatures,
    /// This node keeps its own messages in its history for other nodes to
    /// fetch (not when it publishes unsigned: peers take only signed ones;
    /// nor when it serves no sync, in go mode).
    keeps_own: bool,
    listen_addrs: Vec<Multiaddr>,
    peers: HashMap<PeerId, PeerState>,
    /// Listen addresses peers announced through identify.
    peer_listen_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Bootstrap peers with a known id, kept connected: re-dialed while
    /// disconnected, so a peer that restarts on the same address is found
    /// again without anyone's help.
    bootstrap_peers: HashMap<PeerId, Multiaddr>,
    /// When each bootstrap peer's failed dial was last reported.
    bootstrap_warned: HashMap<PeerId, Instant>,
    kad_bootstrapped: bool,
    /// Bootstraps started only to cancel one Kademlia scheduled
    /// (`self_lookup`).
    empty_bootstraps: HashSet<libp2p::kad::QueryId>,
    /// When this node's last lookup ended, until its peers are trimmed
    /// (`conns::LOOKUP_LINGER`).
    lookup_over: Option<Instant>,
    /// Remembered and bootstrap peers, re-dialed with backoff (`reconnect`).
    keeper: crate::reconnect::Keeper,
    pending_dials: HashMap<ConnectionId, Vec<Reply<DialResult, DialError>>>,
    /// Dials this node started itself (bootstrap, remembered, discovered,
    /// asked for), until they connect or fail; any other outbound
    /// connection was a behaviour's (`PeerState::by_lookup`).
    own_dials: HashSet<ConnectionId>,
    pending_sends:
        HashMap<request_response::OutboundRequestId, (String, Reply<SendResult, DirectError>)>,
    pending_pings:
        HashMap<request_response::OutboundRequestId, (Instant, Reply<PingResult, PingError>)>,
    pending_kad: HashMap<kad::QueryId, KadPending>,
    /// Received messages on their way to the history (and then clients).
    intake: crate::history::Intake,
    /// Direct messages now stored, whose acknowledgements may go out.
    acks: mpsc::UnboundedReceiver<crate::history::Acked>,
    /// What catching up has done, for `status`.
    sync: crate::sync::Stats,
    /// Per-peer rate limits on inbound direct messages, and what they refused.
    direct_limiter: crate::limits::DirectLimiter,
    refusals: Arc<crate::limits::RefusalCounts>,
    /// The last `status`, answered again while the loop has not woken.
    status_cache: Arc<status_cache::StatusCache>,
}

/// The peer id at the end of a multiaddr, if any.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// Why no transport of this node takes `addr`, when it names a transport
/// Hive does not have.
fn missing_transport(addr: &Multiaddr) -> Option<&'static str> {
    addr.iter().find_map(|p| match p {
        Protocol::WebRTC => Some(
            "hive-p2pd has no browser-to-browser WebRTC (`/webrtc`); it listens on webrtc-direct (`/udp/PORT/webrtc-direct`), TCP, QUIC and WebTransport",
        ),
        Protocol::Ws(_) | Protocol::Wss(_) => Some(
            "hive-p2pd has no WebSocket transport for libp2p (it listens on TCP, QUIC, WebTransport and webrtc-direct); leave this address out",
        ),
        Protocol::P2pCircuit => Some(
            "a relayed address is not listened on: use --relay RELAY-ADDR (or -autoRelay) to take a slot on a relay",
        ),
        _ => None,
    })
}

/// The address without its trailing `/p2p/PEER`. Only the last one goes: in
/// a circuit address the relay's `/p2p` part is part of the route.
pub fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if let Some(Protocol::P2p(_)) = addr.iter().last() {
        addr.pop();
    }
    addr
}

fn with_p2p(addr: &Multiaddr, peer: PeerId) -> String {
    without_p2p(addr).with(Protocol::P2p(peer)).to_string()
}
/// Bind every listen address, old ports first (see `listen`) so that peers
/// find this node again, and add the external ones; returns the bound
/// addresses and the keeper of remembered peers.
async fn listen(
    swarm: &mut Swarm<Behaviour>,
    config: &NodeConfig,
) -> Result<(Vec<Multiaddr>, crate::reconnect::Keeper), NodeError> {
    let peer_id = *swarm.local_peer_id();
    let loaded = crate::reconnect::Loaded::read(config.state_file.as_deref(), peer_id);
    let plan = loaded.listen_plan(&config.listen);
    let bound = crate::listen::bind_all(swarm, plan, LISTEN_TIMEOUT, missing_transport).await?;
    let listen_addrs: Vec<Multiaddr> = bound.iter().flat_map(|b| b.addrs.clone()).collect();
    let keeper = loaded.start(peer_id, &bound, config.target_peers);
    for addr in &config.external_addrs {
        swarm.add_external_address(addr.clone());
    }
    Ok((listen_addrs, keeper))
}

impl Node {
    /// Build the swarm, bind every listen address, dial the bootstrap peers,
    /// and spawn the loop. Returns once the node is listening.
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, NodeError> {
        let wired = build::wire(&config).await?;
        Self::assemble(config, wired)
    }

    /// The loop's state around a wired swarm (from [`build::wire`], or an
    /// in-memory one in tests); spawns the loop.
    fn assemble(config: NodeConfig, wired: build::Wired) -> Result<NodeHandle, NodeError> {
        let build::Wired {
            swarm,
            mut registry,
            listen_addrs,
            keeper,
            streams,
            named,
            named_inbound,
            signatures,
            relays,
            relay_outcomes,
        } = wired;
        let peer_id = *swarm.local_peer_id();
        let conn_tags = crate::connmgr::Tags::default();
        let conn_manager = config
            .conn_manager
            .map(|limits| crate::connmgr::ConnManager::new(limits, conn_tags.clone()));
        let events = hive_proto::fanout::Fanout::new(EVENT_CAPACITY);
        // Own messages are kept for the peers that sync from this node: only
        // when it serves sync (not in go mode), publishes signed, and with the
        // swarm's identity (the one gossipsub signed with).
        let own_key = (config.catch_up
            && config.pubsub_sign
            && config.keypair.public().to_peer_id() == peer_id)
            .then(|| config.keypair.clone());
        let (intake, history, acks) =
            crate::history::Intake::open(&config.history, events.clone())?;
        let history = history.with_signer(own_key.clone());
        let (commands_tx, commands) = mpsc::channel(1024);
        let sync = crate::sync::Stats::default();
        let refusals = Arc::<crate::limits::RefusalCounts>::default();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let status_cache = Arc::new(status_cache::StatusCache::new(
            sync.clone(),
            refusals.clone(),
            intake.budget(),
        ));
        let handle = NodeHandle {
            commands: commands_tx,
            events: events.clone(),
            peer_id,
            listen_addrs: listen_addrs.iter().map(|a| with_p2p(a, peer_id)).collect(),
            shutdown: shutdown_rx,
            streams,
            named,
            conn_tags,
            named_inbound: Arc::new(std::sync::Mutex::new(Some(named_inbound))),
            history,
            sync: sync.clone(),
            refusals: refusals.clone(),
            peer_limits: config.peer_limits,
            status_cache: status_cache.clone(),
        };
        let metrics = Metrics::new(&mut registry);
        let node = Node {
            swarm,
            registry,
            metrics,
            commands,
            events,
            shutdown,
            peer_id,
            max_message_size: config.max_message_size,
            bucket_refresh: config.bucket_refresh,
            relay_client: config.relay_client,
            reachability: config.reachability,
            relays,
            conn_manager,
            relay_outcomes,
            signatures,
            keeps_own: own_key.is_some(),
            listen_addrs,
            peers: HashMap::new(),
            peer_listen_addrs: HashMap::new(),
            bootstrap_peers: HashMap::new(),
            bootstrap_warned: HashMap::new(),
            kad_bootstrapped: false,
            empty_bootstraps: HashSet::new(),
            lookup_over: None,
            keeper,
            pending_dials: HashMap::new(),
            own_dials: HashSet::new(),
            pending_sends: HashMap::new(),
            pending_pings: HashMap::new(),
            pending_kad: HashMap::new(),
            intake,
            acks,
            sync,
            direct_limiter: crate::limits::DirectLimiter::new(&config.peer_limits),
            refusals,
            status_cache,
        };
        node.launch(&config.bootstrap);
        if config.catch_up {
            crate::sync::spawn(handle.clone());
        }
        Ok(handle)
    }

    fn emit(&self, event: Event) {
        // No receiver is fine: nobody is connected to hear it.
        let _ = self.events.send(event);
    }

    fn encode_metrics(&self) -> Result<MetricsResult, MetricsError> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| MetricsError::Encode(e.to_string()))?;
        Ok(MetricsResult { text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one `/p2p` helper: only the last `/p2p/ID` goes, so a relayed
    /// address keeps its relay's part (the host's old copy cut at the
    /// first and dropped the route).
    #[test]
    fn without_p2p_strips_only_the_last_peer_id() {
        let relay = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let target = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let relayed: Multiaddr =
            format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{target}")
                .parse()
                .unwrap();
        assert_eq!(
            without_p2p(&relayed).to_string(),
            format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit")
        );
        let plain: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        assert_eq!(without_p2p(&plain), plain, "nothing to strip");
        assert_eq!(
            with_p2p(&relayed, target),
            relayed.to_string(),
            "with_p2p puts back exactly one"
        );
    }
}
