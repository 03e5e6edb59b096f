//! The node: a swarm driven by one loop that serves commands and swarm events.
//!
//! Everything that touches the swarm happens in [`Node::run`], which reads
//! like rust-libp2p's examples: one `select!` over the command channel and the
//! swarm. Callers use the typed [`NodeHandle`] (see `handle`): each method
//! sends a [`Command`] carrying a `oneshot` sender for its answer. Operations
//! that wait on the network (dial, direct send, DHT queries, ping) never block
//! the loop: they park their reply channel in a pending map keyed by the id
//! libp2p hands back, and are answered when the matching swarm event arrives.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hive_proto::{
    Bytes, ClosestPeersResult, DialResult, Event, FindPeerResult, FindProvidersResult,
    GetRecordResult, ListenAddrsResult, MetricsResult, PeerInfo, PeersResult, PingResult,
    PublishResult, SendResult, StatusResult, SubscribeResult, TopicInfo, TopicPeersResult,
    TopicsResult,
};
use libp2p::metrics::{Metrics, Recorder};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{gossipsub, identify, kad, mdns, noise, ping, request_response, tcp, yamux};
use libp2p::{Multiaddr, PeerId, Swarm};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::behaviour::{
    Behaviour, BehaviourEvent, DirectAck, DirectRequest, PingRequest, PingResponse,
};
use crate::config::{NodeConfig, Reachability};
use crate::envelope;
use crate::relays::{AddrChange, Relays, ReservationOutcome};

mod conns;
mod errors;
mod handle;

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
    events: broadcast::Sender<Event>,
    shutdown: watch::Sender<bool>,
    started: Instant,
    peer_id: PeerId,
    max_message_size: usize,
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
    listen_addrs: Vec<Multiaddr>,
    peers: HashMap<PeerId, PeerState>,
    /// Listen addresses peers announced through identify.
    peer_listen_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Bootstrap peers with a known id, kept connected: re-dialed while
    /// disconnected, so a peer that restarts on the same address is found
    /// again without anyone's help.
    bootstrap_peers: HashMap<PeerId, Multiaddr>,
    kad_bootstrapped: bool,
    /// Remembered and bootstrap peers, re-dialed with backoff (`reconnect`).
    keeper: crate::reconnect::Keeper,
    pending_dials: HashMap<ConnectionId, Vec<Reply<DialResult, DialError>>>,
    pending_sends:
        HashMap<request_response::OutboundRequestId, (String, Reply<SendResult, DirectError>)>,
    pending_pings:
        HashMap<request_response::OutboundRequestId, (Instant, Reply<PingResult, PingError>)>,
    pending_kad: HashMap<kad::QueryId, KadPending>,
    /// Received messages on their way to the history (and then clients).
    intake: crate::history::Intake,
    /// Direct messages now stored, whose acknowledgements may go out.
    acks: mpsc::UnboundedReceiver<crate::history::Acked>,
}

fn check_topic(topic: &str) -> Result<(), PubsubError> {
    if topic.is_empty() {
        return Err(PubsubError::EmptyTopic);
    }
    Ok(())
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
        Protocol::WebTransport => Some(
            "hive-p2pd has no WebTransport transport (it listens on TCP and QUIC); leave this address out",
        ),
        Protocol::WebRTCDirect | Protocol::WebRTC => Some(
            "hive-p2pd has no WebRTC transport (it listens on TCP and QUIC); leave this address out",
        ),
        Protocol::Ws(_) | Protocol::Wss(_) => Some(
            "hive-p2pd has no WebSocket transport for libp2p (it listens on TCP and QUIC); leave this address out",
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
impl Node {
    /// Build the swarm, bind every listen address, dial the bootstrap peers,
    /// and spawn the loop. Returns once the node is listening.
    pub async fn start(config: NodeConfig) -> Result<NodeHandle, NodeError> {
        let behaviour_config = config.clone();
        let mut registry = Registry::default();
        let (named_behaviour, named, named_inbound) = crate::named::new();
        let (keep_signatures, signatures) = crate::pubsub_meta::new();
        let streams = libp2p_stream::Behaviour::new();
        let mut stream_control = streams.new_control();
        let (circuits, inbound_circuits) = crate::circuit::new_transport(stream_control.clone());
        use libp2p::Transport as _;
        // TCP with Noise or TLS (go's daemon offers both) and Yamux, and
        // QUIC; each muxer wrapped so that protocol names without a leading
        // slash can be negotiated (see `unslash`). Noise is proposed first:
        // with TLS first a CONNECT between two daemons took about 50 ms here
        // instead of 3; peers that speak only TLS still get it.
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::new().nodelay(true),
                (noise::Config::new, libp2p::tls::Config::new),
                || crate::unslash::UnslashUpgrade(yamux::Config::default()),
            )
            .map_err(|e| NodeError::Build(e.to_string()))?
            .with_other_transport(|key| {
                libp2p::quic::tokio::Transport::new(libp2p::quic::Config::new(key))
                    .map(|(peer, connection), _| (peer, crate::unslash::Unslash::new(connection)))
            })
            .map_err(|e| NodeError::Build(e.to_string()))?
            // Circuits through relays, secured and multiplexed like TCP.
            .with_other_transport(|key| -> Result<_, crate::behaviour::BoxError> {
                Ok(circuits
                    .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(crate::unslash::UnslashUpgrade(yamux::Config::default())))
            })
            .map_err(|e| NodeError::Build(e.to_string()))?
            .with_dns()
            .map_err(|e| NodeError::Build(e.to_string()))?
            .with_behaviour(|key| {
                Behaviour::new(
                    key,
                    &behaviour_config,
                    &mut registry,
                    named_behaviour,
                    streams,
                    keep_signatures,
                )
            })
            .map_err(|e| NodeError::Build(e.to_string()))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
            .build();
        let peer_id = *swarm.local_peer_id();

        // Old ports first (see `listen`), so that peers find this node again.
        let loaded = crate::reconnect::Loaded::read(config.state_file.as_deref(), peer_id);
        let plan = loaded.listen_plan(&config.listen);
        let bound =
            crate::listen::bind_all(&mut swarm, plan, LISTEN_TIMEOUT, missing_transport).await?;
        let listen_addrs: Vec<Multiaddr> = bound.iter().flat_map(|b| b.addrs.clone()).collect();
        let keeper = loaded.start(peer_id, &bound, config.target_peers);

        for addr in &config.external_addrs {
            swarm.add_external_address(addr.clone());
        }
        if config.relay_client {
            // Circuits from any relay; this listener announces no address.
            swarm
                .listen_on(crate::circuit::any_relay_listen_addr())
                .map_err(|e| NodeError::Build(format!("circuit listener: {e}")))?;
            let stops = stream_control
                .accept(crate::circuit::STOP_PROTOCOL)
                .map_err(|e| NodeError::Build(format!("circuit STOP handler: {e}")))?;
            tokio::spawn(crate::circuit::accept_stops(stops, inbound_circuits));
        }

        let (relays, relay_outcomes) =
            Relays::new(config.auto_relay.as_ref(), stream_control.clone());

        let conn_tags = crate::connmgr::Tags::default();
        let conn_manager = config
            .conn_manager
            .map(|limits| crate::connmgr::ConnManager::new(limits, conn_tags.clone()));
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (intake, history, acks) =
            crate::history::Intake::open(&config.history, events.clone())?;
        let (commands_tx, commands) = mpsc::channel(1024);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let handle = NodeHandle {
            commands: commands_tx,
            events: events.clone(),
            peer_id,
            listen_addrs: listen_addrs.iter().map(|a| with_p2p(a, peer_id)).collect(),
            shutdown: shutdown_rx,
            streams: stream_control,
            named,
            conn_tags,
            named_inbound: Arc::new(std::sync::Mutex::new(Some(named_inbound))),
            history,
        };
        let metrics = Metrics::new(&mut registry);
        let mut node = Node {
            swarm,
            registry,
            metrics,
            commands,
            events,
            shutdown,
            started: Instant::now(),
            peer_id,
            max_message_size: config.max_message_size,
            relay_client: config.relay_client,
            reachability: config.reachability,
            relays,
            conn_manager,
            relay_outcomes,
            signatures,
            listen_addrs,
            peers: HashMap::new(),
            peer_listen_addrs: HashMap::new(),
            bootstrap_peers: HashMap::new(),
            kad_bootstrapped: false,
            keeper,
            pending_dials: HashMap::new(),
            pending_sends: HashMap::new(),
            pending_pings: HashMap::new(),
            pending_kad: HashMap::new(),
            intake,
            acks,
        };
        for addr in &config.bootstrap {
            node.dial_bootstrap(addr);
        }
        node.maintain_relays();
        tokio::spawn(node.run());
        if config.catch_up {
            crate::sync::spawn(handle.clone());
        }
        Ok(handle)
    }

    fn dial_bootstrap(&mut self, addr: &Multiaddr) {
        let opts = match peer_of(addr) {
            Some(peer) => {
                self.bootstrap_peers.insert(peer, without_p2p(addr));
                self.keeper.reconnect.add_bootstrap(peer, without_p2p(addr));
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, without_p2p(addr));
                DialOpts::peer_id(peer)
                    .addresses(vec![without_p2p(addr)])
                    .build()
            }
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        if let Err(e) = self.swarm.dial(opts) {
            tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
        }
    }

    /// Dial the remembered and bootstrap peers that are due (`reconnect`),
    /// and hand changes of the memory to its writer. With a connection
    /// manager, only while below its low watermark: a trimmed node does not
    /// come straight back.
    fn redial_known_peers(&mut self) {
        let wanted = self
            .conn_manager
            .as_ref()
            .is_none_or(|manager| manager.missing(self.peers.len()) > 0);
        if wanted {
            for (peer, addrs) in self.keeper.reconnect.due(self.peers.len()) {
                self.dial_idle_at(peer, addrs, "known peer");
            }
        }
        self.keeper.flush();
    }

    /// Dial `peer` at `addr` unless it is connected or being dialed already.
    fn dial_idle(&mut self, peer: PeerId, addr: Multiaddr, what: &'static str) {
        self.dial_idle_at(peer, vec![addr], what);
    }

    fn dial_idle_at(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, what: &'static str) {
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::trace!(%peer, error = %e, what, "dial not started");
        }
    }

    /// The loop: commands from IPC clients and events from the network.
    async fn run(mut self) {
        tracing::info!(peer_id = %self.peer_id, "node running");
        let mut maintenance = tokio::time::interval(BOOTSTRAP_REDIAL_INTERVAL);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = maintenance.tick() => {
                    self.redial_known_peers();
                    self.maintain_relays();
                    self.manage_connections();
                }
                Some(outcome) = self.relay_outcomes.recv() => {
                    if let Some(change) = self.relays.on_outcome(outcome) {
                        self.apply_addr_change(change);
                    }
                }
                command = self.commands.recv() => match command {
                    Some(command) => self.handle_command(command),
                    None => break,
                },
                Some(acked) = self.acks.recv() => {
                    let ack = DirectAck { id: acked.id };
                    if self.swarm.behaviour_mut().direct.send_response(acked.channel, ack).is_err() {
                        // The sender gave up; it will retry with the same id.
                        tracing::debug!("direct message ack could not be sent");
                    }
                }
                // The history is behind: push back on the network until
                // it has room (nothing is dropped).
                _ = self.intake.flush(), if !self.intake.accepting() => {}
                event = self.swarm.select_next_some(), if self.intake.accepting() => {
                    self.handle_swarm_event(event)
                }
            }
        }
        tracing::info!("node stopped");
    }

    fn emit(&self, event: Event) {
        // No receiver is fine: nobody is connected to hear it.
        let _ = self.events.send(event);
    }

    /// Listen addresses, then external ones (announced, confirmed by
    /// AutoNAT or UPnP, and relayed): what others can dial.
    fn own_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self
            .listen_addrs
            .iter()
            .map(|a| with_p2p(a, self.peer_id))
            .collect();
        for addr in self.swarm.external_addresses() {
            let addr = with_p2p(addr, self.peer_id);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }

    /// Whether others can dial this node directly.
    fn reachable(&self) -> bool {
        match self.reachability {
            Reachability::Public => true,
            Reachability::Private => false,
            Reachability::Auto => self
                .swarm
                .external_addresses()
                .any(|a| !crate::circuit::is_circuit(a)),
        }
    }

    /// Dial candidate relays, renew or retry slots, give them up once the
    /// node is reachable directly.
    fn maintain_relays(&mut self) {
        let reachable = self.reachable();
        let to_dial: Vec<(PeerId, Multiaddr)> = self
            .relays
            .to_dial(reachable, |p| self.peers.contains_key(p))
            .collect();
        for (relay, addr) in to_dial {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&relay, addr.clone());
            self.dial_idle(relay, addr, "relay");
        }
        let peers = &self.peers;
        let changes = self.relays.tick(reachable, |p| peers.contains_key(p));
        for change in changes {
            self.apply_addr_change(change);
        }
    }

    /// Announce or withdraw a relayed address.
    fn apply_addr_change(&mut self, change: AddrChange) {
        match change {
            AddrChange::Add(addr) => {
                self.swarm.add_external_address(addr.clone());
                self.emit(Event::NewListenAddr {
                    addr: with_p2p(&addr, self.peer_id),
                });
            }
            AddrChange::Remove(addr) => {
                self.swarm.remove_external_address(&addr);
                self.emit(Event::ExpiredListenAddr {
                    addr: with_p2p(&addr, self.peer_id),
                });
            }
        }
    }

    fn peer_info(&self, peer: &PeerId, state: Option<&PeerState>) -> PeerInfo {
        let announced = self.peer_listen_addrs.get(peer);
        let addrs: Vec<String> = match announced {
            Some(addrs) if !addrs.is_empty() => addrs.iter().map(|a| with_p2p(a, *peer)).collect(),
            _ => state
                .map(|s| s.connections.values().map(|a| with_p2p(a, *peer)).collect())
                .unwrap_or_default(),
        };
        PeerInfo {
            peer_id: peer.to_string(),
            addrs,
            connections: state
                .map(|s| s.connections.values().map(|a| a.to_string()).collect())
                .unwrap_or_default(),
            rtt_ms: state.and_then(|s| s.rtt).map(|d| d.as_secs_f64() * 1000.0),
            connected_secs: state.map(|s| s.since.elapsed().as_secs_f64()),
        }
    }

    /// One command from a [`NodeHandle`]. Operations that finish at once
    /// answer here; the others park their reply and are answered by a swarm
    /// event.
    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(Ok(self.status()));
            }
            Command::ListenAddrs(reply) => {
                let listen_addrs = self.own_addrs();
                let _ = reply.send(Ok(ListenAddrsResult { listen_addrs }));
            }
            Command::Peers(reply) => {
                let _ = reply.send(Ok(self.peers()));
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::Disconnect { peer, reply } => {
                // Err means not connected, which is what the caller wants anyway.
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(Ok(()));
            }
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.subscribe(&topic));
            }
            Command::Unsubscribe { topic, reply } => {
                let _ = reply.send(self.unsubscribe(&topic));
            }
            Command::Topics(reply) => {
                let _ = reply.send(Ok(self.topics()));
            }
            Command::TopicPeers { topic, reply } => {
                let _ = reply.send(Ok(self.topic_peers(&topic)));
            }
            Command::Publish {
                topic,
                data,
                id,
                reply,
            } => {
                let _ = reply.send(self.publish(&topic, data, id));
            }
            Command::Send {
                peer,
                data,
                id,
                reply,
            } => self.send_direct(peer, data, id, reply),
            Command::Ping { peer, reply } => self.ping(peer, reply),
            Command::Shutdown(reply) => {
                let _ = self.shutdown.send(true);
                let _ = reply.send(Ok(()));
            }
            Command::Metrics(reply) => {
                let _ = reply.send(self.encode_metrics());
            }
            Command::Trim(reply) => {
                let _ = reply.send(Ok(self.trim_connections(true)));
            }
            Command::SaveMemory { reply } => {
                let _ = reply.send(self.keeper.save());
            }
            kad => self.handle_kad_command(kad),
        }
    }

    fn status(&self) -> StatusResult {
        StatusResult {
            peer_id: self.peer_id.to_string(),
            listen_addrs: self.own_addrs(),
            peers: self.peers.len(),
            topics: self
                .swarm
                .behaviour()
                .gossipsub
                .topics()
                .map(|t| t.to_string())
                .collect(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            daemon_version: env!("CARGO_PKG_VERSION").to_string(),
            protocol_version: hive_proto::PROTOCOL_VERSION,
            connections: self.conn_manager.as_ref().map(|m| m.limits().into()),
        }
    }

    fn peers(&self) -> PeersResult {
        let peers = self
            .peers
            .iter()
            .map(|(peer, state)| self.peer_info(peer, Some(state)))
            .collect();
        PeersResult { peers }
    }

    fn encode_metrics(&self) -> Result<MetricsResult, MetricsError> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|e| MetricsError::Encode(e.to_string()))?;
        Ok(MetricsResult { text })
    }

    fn subscribe(&mut self, topic: &str) -> Result<SubscribeResult, PubsubError> {
        check_topic(topic)?;
        let changed = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(topic))
            .map_err(|e| PubsubError::Subscribe(format!("{e:?}")))?;
        Ok(SubscribeResult { changed })
    }

    fn unsubscribe(&mut self, topic: &str) -> Result<SubscribeResult, PubsubError> {
        check_topic(topic)?;
        let changed = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .unsubscribe(&gossipsub::IdentTopic::new(topic));
        Ok(SubscribeResult { changed })
    }

    fn topics(&self) -> TopicsResult {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let topics = gossipsub
            .topics()
            .map(|hash| TopicInfo {
                topic: hash.to_string(),
                peers: gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&hash))
                    .count(),
            })
            .collect();
        TopicsResult { topics }
    }

    fn topic_peers(&self, topic: &str) -> TopicPeersResult {
        let hash = gossipsub::IdentTopic::new(topic).hash();
        let peers = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&hash))
            .map(|(peer, _)| peer.to_string())
            .collect();
        TopicPeersResult { peers }
    }

    fn ping(&mut self, peer: PeerId, reply: Reply<PingResult, PingError>) {
        let nonce = rand::random();
        let request_id = self
            .swarm
            .behaviour_mut()
            .hping
            .send_request(&peer, PingRequest { nonce });
        self.pending_pings
            .insert(request_id, (Instant::now(), reply));
    }

    /// The DHT's commands: each starts a query and parks its reply, except
    /// what is answered from here (a connected peer, a local record).
    fn handle_kad_command(&mut self, command: Command) {
        match command {
            Command::FindPeer { peer, reply } => {
                if self.peers.contains_key(&peer) {
                    let info = self.peer_info(&peer, self.peers.get(&peer));
                    let _ = reply.send(Ok(FindPeerResult {
                        peer_id: info.peer_id,
                        addrs: info.addrs,
                    }));
                    return;
                }
                let id = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                let pending = KadPending::FindPeer {
                    target: peer,
                    reply,
                };
                self.pending_kad.insert(id, pending);
            }
            Command::Provide { key, reply } => match self
                .swarm
                .behaviour_mut()
                .kad
                .start_providing(kad::RecordKey::new(&key))
            {
                Ok(id) => {
                    self.pending_kad.insert(id, KadPending::Provide(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(KadError::ProvideRefused(e.to_string())));
                }
            },
            Command::ClosestPeers { key, reply } => {
                let id = self.swarm.behaviour_mut().kad.get_closest_peers(key);
                self.pending_kad.insert(id, KadPending::ClosestPeers(reply));
            }
            Command::FindProviders { key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                let providers = HashSet::new();
                let pending = KadPending::FindProviders { providers, reply };
                self.pending_kad.insert(id, pending);
            }
            Command::PutRecord { key, value, reply } => {
                let record = kad::Record::new(kad::RecordKey::new(&key), value);
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One)
                {
                    Ok(id) => {
                        self.pending_kad.insert(id, KadPending::PutRecord(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(KadError::PutRefused(e.to_string())));
                    }
                }
            }
            Command::GetRecord { key, reply } => self.get_record(key, reply),
            _ => tracing::error!("not a DHT command"),
        }
    }

    fn get_record(&mut self, key: Vec<u8>, reply: Reply<GetRecordResult, KadError>) {
        let key = kad::RecordKey::new(&key);
        let local = {
            use kad::store::RecordStore;
            self.swarm
                .behaviour_mut()
                .kad
                .store_mut()
                .get(&key)
                .map(|r| r.into_owned())
        };
        match local {
            Some(record) => {
                let _ = reply.send(Ok(GetRecordResult {
                    value: Bytes(record.value),
                    publisher: record.publisher.map(|p| p.to_string()),
                }));
            }
            None => {
                let id = self.swarm.behaviour_mut().kad.get_record(key);
                self.pending_kad.insert(id, KadPending::GetRecord(reply));
            }
        }
    }

    fn dial(&mut self, addr: Multiaddr, reply: Reply<DialResult, DialError>) {
        let opts = match peer_of(&addr) {
            Some(peer) => {
                if self.peers.contains_key(&peer) {
                    let _ = reply.send(Ok(DialResult {
                        peer_id: peer.to_string(),
                    }));
                    return;
                }
                if crate::circuit::is_circuit(&addr) {
                    if let Err(e) = self.prepare_circuit(&addr) {
                        let _ = reply.send(Err(e));
                        return;
                    }
                } else {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, without_p2p(&addr));
                }
                DialOpts::peer_id(peer)
                    .addresses(vec![without_p2p(&addr)])
                    .condition(PeerCondition::Always)
                    .build()
            }
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let connection_id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => self
                .pending_dials
                .entry(connection_id)
                .or_default()
                .push(reply),
            Err(e) => {
                let reason = e.to_string();
                let _ = reply.send(Err(DialError::NotStarted { addr, reason }));
            }
        }
    }

    /// Before dialing through a relay: check the address, and start a
    /// connection to the relay when there is none (the circuit transport
    /// opens its HOP stream over it, waiting for it if need be).
    fn prepare_circuit(&mut self, addr: &Multiaddr) -> Result<(), DialError> {
        if !self.relay_client {
            return Err(DialError::NoRelayClient { addr: addr.clone() });
        }
        let circuit = crate::circuit::parse_circuit_addr(addr)
            .ok_or_else(|| DialError::NotCircuit { addr: addr.clone() })?;
        if circuit.dst == self.peer_id {
            return Err(DialError::SelfThroughRelay);
        }
        if !self.peers.contains_key(&circuit.relay) && !circuit.relay_addr.is_empty() {
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&circuit.relay, circuit.relay_addr.clone());
            self.dial_idle(circuit.relay, circuit.relay_addr, "relay");
        }
        Ok(())
    }

    fn publish(
        &mut self,
        topic: &str,
        data: Vec<u8>,
        id: Option<String>,
    ) -> Result<PublishResult, PubsubError> {
        check_topic(topic)?;
        if let Some(id) = &id {
            if !envelope::valid_id(id) {
                return Err(PubsubError::BadId {
                    id: id.clone(),
                    max: envelope::MAX_ID_LEN,
                });
            }
        }
        if data.len() > self.max_message_size {
            return Err(PubsubError::TooLarge {
                size: data.len(),
                limit: self.max_message_size,
            });
        }
        let payload = match &id {
            Some(id) => envelope::wrap(id, &data),
            None => data,
        };
        let topic_id = gossipsub::IdentTopic::new(topic);
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic_id, payload)
        {
            Ok(message_id) => Ok(PublishResult {
                id: id.unwrap_or_else(|| message_id.to_string()),
            }),
            // The same id was published moments ago: it is out already.
            Err(gossipsub::PublishError::Duplicate) if id.is_some() => Ok(PublishResult {
                id: id.unwrap_or_default(),
            }),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Err(PubsubError::NoPeers {
                topic: topic.to_string(),
            }),
            Err(e) => Err(PubsubError::Failed {
                topic: topic.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    fn send_direct(
        &mut self,
        peer: PeerId,
        data: Vec<u8>,
        id: Option<String>,
        reply: Reply<SendResult, DirectError>,
    ) {
        if data.len() > self.max_message_size {
            let _ = reply.send(Err(DirectError::TooLarge {
                size: data.len(),
                limit: self.max_message_size,
            }));
            return;
        }
        if peer == self.peer_id {
            let _ = reply.send(Err(DirectError::ToSelf));
            return;
        }
        let id = id.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
        let request = DirectRequest {
            id: id.clone(),
            data,
        };
        let request_id = self
            .swarm
            .behaviour_mut()
            .direct
            .send_request(&peer, request);
        self.pending_sends.insert(request_id, (id, reply));
    }
    fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(event) => self.handle_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address.clone());
                }
                self.emit(Event::NewListenAddr {
                    addr: with_p2p(&address, self.peer_id),
                });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
                self.emit(Event::ExpiredListenAddr {
                    addr: with_p2p(&address, self.peer_id),
                });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                let state = self.peers.entry(peer_id).or_insert_with(|| PeerState {
                    connections: HashMap::new(),
                    since: Instant::now(),
                    rtt: None,
                });
                state.connections.insert(connection_id, addr.clone());
                let dialed = endpoint.is_dialer().then(|| without_p2p(&addr));
                let announced = self.peer_listen_addrs.get(&peer_id).cloned();
                let announced = announced.unwrap_or_default();
                self.keeper
                    .reconnect
                    .on_connected(peer_id, dialed, &announced);
                self.keeper.flush();
                if num_established.get() == 1 {
                    let reachable = self.reachable();
                    self.relays.on_connected(peer_id, reachable);
                    tracing::info!(%peer_id, %addr, "peer connected");
                    self.emit(Event::PeerConnected {
                        peer_id: peer_id.to_string(),
                        addr: addr.to_string(),
                    });
                }
                if let Some(replies) = self.pending_dials.remove(&connection_id) {
                    for reply in replies {
                        let _ = reply.send(Ok(DialResult {
                            peer_id: peer_id.to_string(),
                        }));
                    }
                }
                if self.bootstrap_peers.contains_key(&peer_id) && !self.kad_bootstrapped {
                    self.kad_bootstrapped = true;
                    if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
                        tracing::debug!(error = %e, "kademlia bootstrap not started");
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.connections.remove(&connection_id);
                }
                if num_established == 0 {
                    self.peers.remove(&peer_id);
                    if let Some(manager) = &mut self.conn_manager {
                        manager.on_disconnected(&peer_id);
                    }
                    self.keeper.reconnect.on_disconnected(peer_id);
                    if let Some(change) = self.relays.on_disconnected(&peer_id) {
                        self.apply_addr_change(change);
                    }
                    tracing::info!(%peer_id, "peer disconnected");
                    self.emit(Event::PeerDisconnected {
                        peer_id: peer_id.to_string(),
                    });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
                if let Some(replies) = self.pending_dials.remove(&connection_id) {
                    for reply in replies {
                        let _ = reply.send(Err(DialError::Failed {
                            reason: error.to_string(),
                        }));
                    }
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "external address expired");
            }
            other => tracing::trace!(?other, "swarm event"),
        }
    }

    fn handle_behaviour_event(&mut self, event: BehaviourEvent) {
        match &event {
            BehaviourEvent::Gossipsub(e) => self.metrics.record(e),
            BehaviourEvent::Identify(e) => self.metrics.record(e),
            BehaviourEvent::Ping(e) => self.metrics.record(e),
            BehaviourEvent::Kad(e) => self.metrics.record(e),
            BehaviourEvent::Relay(e) => self.metrics.record(e),
            BehaviourEvent::Dcutr(e) => self.metrics.record(e),
            _ => {}
        }
        match event {
            BehaviourEvent::Relay(event) => {
                if let Some(manager) = &mut self.conn_manager {
                    manager.on_relay_event(&event);
                }
                tracing::debug!(?event, "relay service");
            }
            BehaviourEvent::Autonat(event) => tracing::info!(?event, "autonat"),
            BehaviourEvent::Dcutr(event) => match event.result {
                Ok(_) => {
                    tracing::info!(peer = %event.remote_peer_id, "direct connection made from a relayed one (DCUtR)")
                }
                Err(e) => {
                    tracing::info!(peer = %event.remote_peer_id, error = %e, "relayed connection stays relayed (DCUtR failed)")
                }
            },
            BehaviourEvent::Upnp(event) => tracing::info!(?event, "upnp"),
            BehaviourEvent::Gossipsub(event) => self.handle_gossipsub(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let addrs: Vec<Multiaddr> = info
                    .listen_addrs
                    .into_iter()
                    .filter(|a| {
                        !a.iter().any(|p| {
                            matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())
                                || matches!(p, Protocol::Ip6(ip) if ip.is_unspecified())
                        })
                    })
                    .collect();
                for addr in &addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, without_p2p(addr));
                }
                let plain: Vec<Multiaddr> = addrs.iter().map(without_p2p).collect();
                self.keeper.reconnect.learn_addrs(peer_id, &plain);
                // Saved now, not at the next tick: a daemon killed right
                // after meeting a peer must still find it after a restart
                // (the writer coalesces bursts to one write a second).
                self.keeper.flush();
                self.peer_listen_addrs.insert(peer_id, addrs);
            }
            BehaviourEvent::Identify(_) => {}
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Ping(_) => {}
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    if peer == self.peer_id {
                        continue;
                    }
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    if !self.peers.contains_key(&peer) {
                        tracing::info!(%peer, %addr, "discovered by mDNS");
                        self.dial_idle(peer, addr, "peer found by mDNS");
                    }
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(_)) => {}
            BehaviourEvent::Kad(event) => self.handle_kad(event),
            BehaviourEvent::Direct(event) => self.handle_direct(event),
            BehaviourEvent::Hping(event) => self.handle_hping(event),
            BehaviourEvent::Limits(never) => match never {},
            BehaviourEvent::Streams(()) => {}
        }
    }

    fn handle_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                message_id,
                message,
                ..
            } => {
                let (id, data) = match envelope::unwrap(&message.data) {
                    Some((id, payload)) => (id.to_string(), payload.to_vec()),
                    None => (message_id.to_string(), message.data),
                };
                let signed = self
                    .signatures
                    .take(message.source, message.sequence_number);
                self.intake.offer(crate::history::Entry::Message {
                    topic: message.topic.to_string(),
                    from: message.source.map(|p| p.to_string()).unwrap_or_default(),
                    id,
                    data,
                    seqno: message
                        .sequence_number
                        .map(|n| Bytes(n.to_be_bytes().to_vec())),
                    signature: signed.as_ref().map(|s| Bytes(s.signature.clone())),
                    key: signed.and_then(|s| s.key).map(Bytes),
                })
            }
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                self.emit(Event::TopicPeerJoined {
                    topic: topic.to_string(),
                    peer_id: peer_id.to_string(),
                });
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                self.emit(Event::TopicPeerLeft {
                    topic: topic.to_string(),
                    peer_id: peer_id.to_string(),
                });
            }
            other => tracing::debug!(?other, "gossipsub event"),
        }
    }

    fn handle_direct(&mut self, event: request_response::Event<DirectRequest, DirectAck>) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                // Acknowledged once on disk; a retried duplicate is dropped
                // by the history (same sender and id) and acknowledged too.
                self.intake.offer(crate::history::Entry::Direct {
                    from: peer.to_string(),
                    id: request.id,
                    data: request.data,
                    ack: channel,
                });
            }
            E::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((id, reply)) = self.pending_sends.remove(&request_id) {
                    let result = if response.id == id {
                        Ok(SendResult { id })
                    } else {
                        Err(DirectError::WrongAck {
                            id,
                            got: response.id,
                        })
                    };
                    let _ = reply.send(result);
                }
            }
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((id, reply)) = self.pending_sends.remove(&request_id) {
                    let _ = reply.send(Err(DirectError::NotAcked {
                        id,
                        peer,
                        delivery: Delivery::of(&error),
                        reason: error.to_string(),
                    }));
                }
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound direct message failed");
            }
            E::ResponseSent { .. } => {}
        }
    }

    fn handle_hping(&mut self, event: request_response::Event<PingRequest, PingResponse>) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                let _ = self.swarm.behaviour_mut().hping.send_response(
                    channel,
                    PingResponse {
                        nonce: request.nonce,
                    },
                );
            }
            E::Message {
                message: M::Response { request_id, .. },
                ..
            } => {
                if let Some((sent, reply)) = self.pending_pings.remove(&request_id) {
                    let rtt_ms = sent.elapsed().as_secs_f64() * 1000.0;
                    let _ = reply.send(Ok(PingResult { rtt_ms }));
                }
            }
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending_pings.remove(&request_id) {
                    let _ = reply.send(Err(PingError::Failed {
                        peer,
                        delivery: Delivery::of(&error),
                        reason: error.to_string(),
                    }));
                }
            }
            E::InboundFailure { .. } | E::ResponseSent { .. } => {}
        }
    }

    fn handle_kad(&mut self, event: kad::Event) {
        if let kad::Event::RoutingUpdated {
            is_new_peer: true, ..
        } = &event
        {
            let connected: Vec<PeerId> = self.peers.keys().copied().collect();
            let behaviour = self.swarm.behaviour_mut();
            behaviour.push_identify_if_table_small(connected);
        }
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return;
        };
        let Some(pending) = self.pending_kad.remove(&id) else {
            return;
        };
        let last = step.last;
        // Each arm either answers (dropping `pending`) or puts it back.
        match (pending, result) {
            (KadPending::FindPeer { target, reply }, kad::QueryResult::GetClosestPeers(result)) => {
                let peers = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                if let Some(found) = peers.into_iter().find(|p| p.peer_id == target) {
                    let _ = reply.send(Ok(FindPeerResult {
                        peer_id: target.to_string(),
                        addrs: found.addrs.iter().map(|a| with_p2p(a, target)).collect(),
                    }));
                } else if last {
                    let _ = reply.send(Err(KadError::PeerNotFound(target)));
                } else {
                    self.pending_kad
                        .insert(id, KadPending::FindPeer { target, reply });
                }
            }
            (KadPending::ClosestPeers(reply), kad::QueryResult::GetClosestPeers(result)) => {
                // A query that timed out still found what it found.
                let peers = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                let peers = peers
                    .into_iter()
                    .map(|found| FindPeerResult {
                        peer_id: found.peer_id.to_string(),
                        addrs: found
                            .addrs
                            .iter()
                            .map(|a| with_p2p(a, found.peer_id))
                            .collect(),
                    })
                    .collect();
                let _ = reply.send(Ok(ClosestPeersResult { peers }));
            }
            (KadPending::Provide(reply), kad::QueryResult::StartProviding(result)) => {
                let _ = reply.send(match result {
                    Ok(_) => Ok(()),
                    Err(e) => Err(KadError::ProvideFailed(e.to_string())),
                });
            }
            (
                KadPending::FindProviders {
                    mut providers,
                    reply,
                },
                kad::QueryResult::GetProviders(result),
            ) => {
                if let Ok(kad::GetProvidersOk::FoundProviders {
                    providers: found, ..
                }) = result
                {
                    providers.extend(found);
                }
                if last {
                    let list = providers
                        .iter()
                        .map(|p| {
                            let info = self.peer_info(p, self.peers.get(p));
                            let addrs = if *p == self.peer_id {
                                self.own_addrs()
                            } else {
                                info.addrs
                            };
                            FindPeerResult {
                                peer_id: p.to_string(),
                                addrs,
                            }
                        })
                        .collect();
                    let _ = reply.send(Ok(FindProvidersResult { providers: list }));
                } else {
                    self.pending_kad
                        .insert(id, KadPending::FindProviders { providers, reply });
                }
            }
            (KadPending::PutRecord(reply), kad::QueryResult::PutRecord(result)) => {
                let _ = reply.send(match result {
                    Ok(_) => Ok(()),
                    // The record is in the local store already, where any
                    // peer's get finds it; replication is best effort (the
                    // routing table may not know the connected peers yet).
                    Err(kad::PutRecordError::QuorumFailed { .. }) => {
                        tracing::debug!("put_record: stored locally, quorum not reached");
                        Ok(())
                    }
                    Err(e) => Err(KadError::PutFailed(e.to_string())),
                });
            }
            (KadPending::GetRecord(reply), kad::QueryResult::GetRecord(result)) => match result {
                Ok(kad::GetRecordOk::FoundRecord(found)) => {
                    let _ = reply.send(Ok(GetRecordResult {
                        value: Bytes(found.record.value),
                        publisher: found.record.publisher.map(|p| p.to_string()),
                    }));
                }
                Ok(_) if !last => {
                    self.pending_kad.insert(id, KadPending::GetRecord(reply));
                }
                Ok(_) | Err(_) => {
                    let _ = reply.send(Err(KadError::NoRecord));
                }
            },
            (pending, other) => {
                tracing::debug!(?other, "unexpected kademlia result");
                if !last {
                    self.pending_kad.insert(id, pending);
                }
            }
        }
    }
}
