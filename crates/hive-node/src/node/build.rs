//! Building the swarm: transports, their upgrades and the behaviours.

use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Stream, Swarm};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use super::NodeError;
use crate::behaviour::Behaviour;
use crate::circuit::{CircuitTransport, InboundCircuit};
use crate::config::{NodeConfig, TcpSecurity};
use crate::relays::{Relays, ReservationOutcome};

/// The swarm, listening, and what the rest of the node reaches it through.
pub(super) struct Wired {
    pub swarm: Swarm<Behaviour>,
    pub registry: Registry,
    pub listen_addrs: Vec<Multiaddr>,
    pub keeper: crate::reconnect::Keeper,
    pub streams: libp2p_stream::Control,
    pub named: crate::named::NamedStreams,
    pub named_inbound: mpsc::Receiver<(PeerId, String, Stream)>,
    pub signatures: crate::pubsub_meta::Signatures,
    pub relays: Relays,
    pub relay_outcomes: mpsc::UnboundedReceiver<ReservationOutcome>,
}

/// Build the swarm with its behaviours and transports, bind every listen
/// address, take circuits when this node is a relay client, and set up its
/// relay slots.
pub(super) async fn wire(config: &NodeConfig) -> Result<Wired, NodeError> {
    let mut registry = Registry::default();
    let (named_behaviour, named, named_inbound) = crate::named::new();
    let (keep_signatures, signatures) =
        crate::pubsub_meta::new(config.keypair.public().to_peer_id());
    let streams = libp2p_stream::Behaviour::new();
    let mut stream_control = streams.new_control();
    let (circuits, inbound_circuits) = crate::circuit::new_transport(stream_control.clone());
    let parts = Parts {
        named: named_behaviour,
        streams,
        signatures: keep_signatures,
        circuits,
    };
    let mut swarm = swarm(config, &mut registry, parts)?;
    let (listen_addrs, keeper) = super::listen(&mut swarm, config).await?;
    if config.relay_client {
        accept_circuits(&mut swarm, &mut stream_control, inbound_circuits)?;
    }
    let (relays, relay_outcomes) = Relays::new(config.auto_relay.as_ref(), stream_control.clone());
    Ok(Wired {
        swarm,
        registry,
        listen_addrs,
        keeper,
        streams: stream_control,
        named,
        named_inbound,
        signatures,
        relays,
        relay_outcomes,
    })
}

/// What the swarm is built from beyond the configuration: behaviours and
/// the circuit transport, made before it so that their handles stay out.
pub(super) struct Parts {
    pub named: crate::named::Behaviour,
    pub streams: libp2p_stream::Behaviour,
    pub signatures: crate::pubsub_meta::KeepSignature,
    pub circuits: CircuitTransport,
}

/// TCP with Noise or TLS (go's daemon offers both; `-noise=false` or
/// `-tls=false` leaves the other alone) and Yamux, QUIC, WebTransport and
/// webrtc-direct;
/// each muxer wrapped so that protocol names without a leading slash can be
/// negotiated (see `unslash`). Noise is proposed first: with TLS first a
/// CONNECT between two daemons took about 50 ms here instead of 3; peers
/// that speak only TLS still get it.
pub(super) fn swarm(
    config: &NodeConfig,
    registry: &mut Registry,
    parts: Parts,
) -> Result<Swarm<Behaviour>, NodeError> {
    use libp2p::Transport as _;
    let build = |e: &dyn std::fmt::Display| NodeError::Build(e.to_string());
    let webrtc_certificate =
        crate::webrtc::certificate(config.state_file.as_deref().and_then(|f| f.parent()))
            .map_err(|e| build(&e))?;
    let Parts {
        named,
        streams,
        signatures,
        circuits,
    } = parts;
    // The rest of the chain, the same whichever security TCP offers (the
    // builder's type differs with it).
    macro_rules! after_tcp {
        ($builder:expr) => {
            $builder
                .map_err(|e| build(&e))?
                .with_other_transport(|key| {
                    libp2p::quic::tokio::Transport::new(libp2p::quic::Config::new(key)).map(
                        |(peer, connection), _| (peer, crate::unslash::Unslash::new(connection)),
                    )
                })
                .map_err(|e| build(&e))?
                // WebTransport multiplexes by itself: no yamux on top.
                .with_other_transport(|key| {
                    crate::webtransport::Transport::new(key.clone()).map(|(peer, connection), _| {
                        (peer, crate::unslash::Unslash::new(connection))
                    })
                })
                .map_err(|e| build(&e))?
                // webrtc-direct: DTLS and SCTP data channels, Noise inside;
                // its data channels are the streams, no yamux either.
                .with_other_transport(|key| {
                    crate::webrtc::Transport::new(key.clone(), webrtc_certificate).map(
                        |(peer, connection), _| (peer, crate::unslash::Unslash::new(connection)),
                    )
                })
                .map_err(|e| build(&e))?
                // Circuits through relays, secured and multiplexed like TCP.
                .with_other_transport(|key| -> Result<_, crate::behaviour::BoxError> {
                    Ok(circuits
                        .upgrade(libp2p::core::upgrade::Version::V1Lazy)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(crate::unslash::UnslashUpgrade(yamux::Config::default())))
                })
                .map_err(|e| build(&e))?
                .with_dns()
                .map_err(|e| build(&e))?
                .with_behaviour(|key| {
                    Behaviour::new(key, config, registry, named, streams, signatures)
                })
                .map_err(|e| build(&e))?
                .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
                .build()
        };
    }
    let tcp = || tcp::Config::new().nodelay(true);
    let mux = || crate::unslash::UnslashUpgrade(yamux::Config::default());
    let base = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone()).with_tokio();
    let swarm = match config.tcp_security {
        TcpSecurity::Both => {
            after_tcp!(base.with_tcp(tcp(), (noise::Config::new, libp2p::tls::Config::new), mux))
        }
        TcpSecurity::NoiseOnly => after_tcp!(base.with_tcp(tcp(), noise::Config::new, mux)),
        TcpSecurity::TlsOnly => after_tcp!(base.with_tcp(tcp(), libp2p::tls::Config::new, mux)),
    };
    Ok(swarm)
}

/// Take circuits from any relay (this listener announces no address) and
/// answer their STOP streams.
pub(super) fn accept_circuits(
    swarm: &mut Swarm<Behaviour>,
    streams: &mut libp2p_stream::Control,
    inbound: mpsc::Sender<InboundCircuit>,
) -> Result<(), NodeError> {
    swarm
        .listen_on(crate::circuit::any_relay_listen_addr())
        .map_err(|e| NodeError::Build(format!("circuit listener: {e}")))?;
    let stops = streams
        .accept(crate::circuit::STOP_PROTOCOL)
        .map_err(|e| NodeError::Build(format!("circuit STOP handler: {e}")))?;
    tokio::spawn(crate::circuit::accept_stops(stops, inbound));
    Ok(())
}
