//! The composed libp2p behaviour of a Hive node and its wire messages.

use std::num::NonZeroU32;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    autonat, connection_limits, dcutr, gossipsub, identify, kad, mdns, ping, relay,
    request_response, upnp, PeerId, StreamProtocol,
};
use serde::{Deserialize, Serialize};

use crate::config::{NodeConfig, RelayService};

/// Protocol of direct messages between Hive daemons.
pub const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/hive/direct/1.0.0");
/// How often every connection is pinged. The pings only measure the round
/// trip shown in `/api/peers` (a failed ping closes nothing but a
/// webrtc-direct connection; the others end by their transports' own
/// timeouts), and each one wakes both ends: at
/// rust-libp2p's default of 15 s, a node with 16 peers woke about twice a
/// second for them alone, which a thousand idle nodes on one machine feel.
pub const PING_INTERVAL: Duration = Duration::from_secs(60);

/// The ping interval of a node that listens on webrtc-direct, and the
/// timeout of its pings: a webrtc-direct connection ends only when a ping
/// fails (see `Node::on_ping_failed`), and rust-libp2p's ping reports a
/// connection's failures from the second one on, so a peer gone is noticed
/// within about 20 s instead of 160.
pub const WEBRTC_PING_INTERVAL: Duration = Duration::from_secs(5);
const WEBRTC_PING_TIMEOUT: Duration = Duration::from_secs(5);

fn ping_config(config: &NodeConfig) -> ping::Config {
    let webrtc = config.listen.iter().any(|addr| {
        addr.iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::WebRTCDirect))
    });
    if webrtc {
        ping::Config::new()
            .with_interval(WEBRTC_PING_INTERVAL)
            .with_timeout(WEBRTC_PING_TIMEOUT)
    } else {
        ping::Config::new().with_interval(PING_INTERVAL)
    }
}

/// How often a node in Hive's own mode repeats its Kademlia bootstrap (the
/// lookup of its own id), where rust-libp2p repeats it every 5 minutes (and
/// go's flags keep that). Each lookup connects to the peers it asks that the
/// node is not connected to, and a new connection costs both ends a
/// handshake, identify and gossipsub's subscription exchange, and a
/// thousand nodes on one machine ran more than three lookups a second
/// between them (see bench/FINDINGS.md). The routing table
/// also learns from every peer that connects (newcomers look themselves up)
/// and drops peers that stop answering, so a quiet network loses little.
pub const HIVE_BOOTSTRAP_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Protocol of on-demand pings (the `ping` op).
pub const PING_PROTOCOL: StreamProtocol = StreamProtocol::new("/hive/ping/1.0.0");
/// Identify's protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/hive/1.0.0";

/// A direct message: the sender's id for it (stable across retries) and its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectRequest {
    pub id: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The receiving daemon's answer to a direct message: stored (no
/// `refused`), or refused with a reason the sender's daemon reports with a
/// stable error code. Daemons older than refusals send only `id`, and
/// ignore a `refused` they do not know (CBOR maps, unknown keys skipped).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectAck {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

/// Why a receiving daemon did not store a direct message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The sender is over the receiver's per-peer rate limit.
    RateLimited,
    /// A reason this daemon does not know (a newer receiver).
    #[serde(other)]
    Other,
}

impl DirectAck {
    /// The message is stored.
    pub fn stored(id: String) -> Self {
        DirectAck { id, refused: None }
    }
}

/// An on-demand ping; the nonce comes back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PingRequest {
    pub nonce: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PingResponse {
    pub nonce: u64,
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: gossipsub::Behaviour<crate::pubsub_meta::KeepSignature>,
    /// Kademlia, naming itself when asked for its own id (go's lookup check).
    pub kad: crate::kad_self::SelfNaming,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub direct: request_response::cbor::Behaviour<DirectRequest, DirectAck>,
    pub hping: request_response::cbor::Behaviour<PingRequest, PingResponse>,
    /// Raw streams on arbitrary protocols, for the go-daemon control
    /// protocol's STREAM_OPEN / STREAM_HANDLER.
    pub streams: libp2p_stream::Behaviour,
    /// Raw streams on names without a leading slash (hivemind's unary
    /// handlers), which `libp2p_stream` cannot express.
    pub named: crate::named::Behaviour,
    /// The relay service (circuit relay v2 HOP), when this node is a relay.
    pub relay: Toggle<relay::Behaviour>,
    /// DCUtR: turn a relayed connection into a direct one (hole punching).
    pub dcutr: Toggle<dcutr::Behaviour>,
    /// AutoNAT v1: are the listen addresses reachable from outside?
    pub autonat: Toggle<autonat::Behaviour>,
    /// Port forwarding on the local gateway (UPnP IGD).
    pub upnp: Toggle<upnp::tokio::Behaviour>,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Behaviour {
    /// `registry` receives gossipsub's own metrics (mesh, scores, invalid
    /// messages per topic).
    pub fn new(
        key: &Keypair,
        config: &NodeConfig,
        registry: &mut prometheus_client::registry::Registry,
        named: crate::named::Behaviour,
        streams: libp2p_stream::Behaviour,
        signatures: crate::pubsub_meta::KeepSignature,
    ) -> Result<Self, BoxError> {
        let peer_id = key.public().to_peer_id();

        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(config.max_connections))
                .with_max_established_per_peer(Some(config.max_connections_per_peer)),
        );

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                .with_agent_version(format!("hive-p2pd/{}", env!("CARGO_PKG_VERSION"))),
        );

        let ping = ping::Behaviour::new(ping_config(config));

        let gossipsub = gossipsub(key, config, registry, signatures)?;
        let kad = kademlia(peer_id, config);

        let mdns = if config.mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config::default(),
                peer_id,
            )?)
        } else {
            None
        };

        let size_limit = (config.max_message_size + 64 * 1024) as u64;
        let direct = request_response::cbor::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(size_limit)
                .set_response_size_maximum(64 * 1024),
            [(DIRECT_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
        );
        let hping = request_response::cbor::Behaviour::new(
            [(PING_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(20)),
        );

        let relay = config.relay_service.as_ref().map(|service| {
            let mut relay = relay::Behaviour::new(peer_id, relay_config(service));
            // Offered whatever the node's reachability, as go's daemon does
            // (`-relay` runs go-libp2p's relay service unconditionally):
            // rust-libp2p's own rule would wait for a confirmed external
            // address, which a node on loopback or a LAN never gets.
            relay.set_status(Some(relay::Status::Enable));
            relay
        });

        Ok(Behaviour {
            limits,
            identify,
            ping,
            gossipsub,
            kad,
            mdns: Toggle::from(mdns),
            direct,
            hping,
            streams,
            named,
            relay: Toggle::from(relay),
            dcutr: Toggle::from(config.relay_client.then(|| dcutr::Behaviour::new(peer_id))),
            autonat: Toggle::from(
                config
                    .autonat
                    .then(|| autonat::Behaviour::new(peer_id, autonat::Config::default())),
            ),
            upnp: Toggle::from(config.upnp.then(upnp::tokio::Behaviour::default)),
        })
    }
}

/// Gossipsub as Hive runs it: strict or permissive validation, Hive's id
/// envelope for message ids, floodsub spoken too, and its metrics.
fn gossipsub(
    key: &Keypair,
    config: &NodeConfig,
    registry: &mut prometheus_client::registry::Registry,
    signatures: crate::pubsub_meta::KeepSignature,
) -> Result<gossipsub::Behaviour<crate::pubsub_meta::KeepSignature>, BoxError> {
    let gossipsub_config = gossipsub::ConfigBuilder::default()
        .validation_mode(if config.pubsub_strict {
            gossipsub::ValidationMode::Strict
        } else {
            gossipsub::ValidationMode::Permissive
        })
        .max_transmit_size(config.max_message_size + 16 * 1024)
        .heartbeat_interval(config.gossipsub_heartbeat)
        .heartbeat_initial_delay(config.gossipsub_initial_delay)
        .message_id_fn({
            let signatures = signatures.clone();
            move |message| signatures.message_id(message)
        })
        // Peers that speak only floodsub (go's and js's daemons with
        // `-pubsubRouter=floodsub`) get every message of the topics they
        // subscribe to; gossipsub peers still negotiate meshsub.
        .support_floodsub()
        .build()
        .map_err(|e| format!("gossipsub config: {e}"))?;
    let authenticity = if config.pubsub_sign {
        gossipsub::MessageAuthenticity::Signed(key.clone())
    } else {
        gossipsub::MessageAuthenticity::Author(key.public().to_peer_id())
    };
    let mut behaviour =
        gossipsub::Behaviour::new_with_transform(authenticity, gossipsub_config, signatures)?
            .with_metrics(
                registry.sub_registry_with_prefix("gossipsub"),
                gossipsub::MetricsConfig::default(),
            );
    // Invalid messages and protocol abuse graylist their sender (`scoring`).
    behaviour
        .with_peer_score(crate::scoring::params(), crate::scoring::thresholds())
        .map_err(|e| format!("gossipsub peer scoring: {e}"))?;
    Ok(behaviour)
}

/// How many closest peers a lookup gathers in Hive's mode (and how many
/// peers a DHT record goes to), where Kademlia's 20 is go's: a lookup
/// connects to every peer it asks, and a newcomer's self-lookup asked some
/// 30 peers, each one a Noise handshake on both sides, most closed again a
/// second later. Buckets still hold 20.
const HIVE_LOOKUP_K: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(8) {
    Some(k) => k,
    None => unreachable!(),
};

fn kademlia(peer_id: PeerId, config: &NodeConfig) -> crate::kad_self::SelfNaming {
    let mut kad_config = kad::Config::new(kad::PROTOCOL_NAME);
    kad_config.set_query_timeout(Duration::from_secs(30));
    // The node decides who enters the routing table (`node::routes`).
    kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
    if !config.bucket_refresh {
        kad_config.set_periodic_bootstrap_interval(Some(HIVE_BOOTSTRAP_INTERVAL));
        kad_config.set_replication_factor(HIVE_LOOKUP_K);
    }
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Without a confirmed external address Kademlia stays a client and
    // answers nobody; on loopback and private networks there never is one,
    // so serve unconditionally.
    kad.set_mode(Some(if config.dht_client {
        kad::Mode::Client
    } else {
        kad::Mode::Server
    }));
    crate::kad_self::SelfNaming::new(peer_id, kad)
}

/// rust-libp2p's relay configuration from Hive's limits. Its default rate
/// limiters count per IP address too; every peer of a test on loopback, or
/// behind one NAT, shares one, so only the per-peer limits are kept.
fn relay_config(service: &RelayService) -> relay::Config {
    let per_peer = NonZeroU32::new(30).unwrap_or(NonZeroU32::MIN);
    relay::Config {
        max_reservations: service.max_reservations,
        max_reservations_per_peer: service.max_reservations_per_peer,
        max_circuits: service.max_circuits,
        max_circuits_per_peer: service.max_circuits_per_peer,
        max_circuit_duration: service.max_circuit_duration,
        max_circuit_bytes: service.max_circuit_bytes,
        reservation_duration: service.reservation_duration,
        reservation_rate_limiters: Vec::new(),
        circuit_src_rate_limiters: Vec::new(),
    }
    .reservation_rate_per_peer(per_peer, Duration::from_secs(60))
    .circuit_src_per_peer(per_peer, Duration::from_secs(60))
}
