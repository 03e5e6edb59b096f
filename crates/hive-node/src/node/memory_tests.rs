//! The node's handlers over in-memory swarms (`libp2p-swarm-test`): the
//! whole loop and its bookkeeping, with a memory transport in place of TCP
//! and QUIC, so that many peers cost nothing. (`tests/handle.rs` runs the
//! same `NodeHandle` on loopback TCP.)

use std::time::Duration;

use hive_proto::Event;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, Swarm};
use libp2p_swarm_test::SwarmExt as _;
use prometheus_client::registry::Registry;

use super::build::Wired;
use super::{Node, NodeHandle};
use crate::behaviour::Behaviour;
use crate::config::NodeConfig;
use crate::connmgr::Limits;
use crate::relays::Relays;

/// A bound on each wait, not a timing assertion: it turns a hang into a
/// failure.
const WAIT: Duration = Duration::from_secs(30);

/// A node whose swarm is `libp2p-swarm-test`'s ephemeral one, listening on
/// a memory address; returns it with that address (ending in `/p2p/ID`).
async fn memory_node(mut config: NodeConfig) -> (NodeHandle, Multiaddr) {
    config.mdns = false;
    let mut registry = Registry::default();
    let (named_behaviour, named, named_inbound) = crate::named::new();
    // The ephemeral swarm has a key of its own: no own message is kept.
    let (keep, signatures) = crate::pubsub_meta::new(config.keypair.public().to_peer_id());
    let streams_behaviour = libp2p_stream::Behaviour::new();
    let streams = streams_behaviour.new_control();
    let mut swarm = Swarm::new_ephemeral_tokio(|key| {
        Behaviour::new(
            &key,
            &config,
            &mut registry,
            named_behaviour,
            streams_behaviour,
            keep,
        )
        .expect("behaviour")
    });
    let (memory, _tcp) = swarm.listen().with_memory_addr_external().await;
    let peer = *swarm.local_peer_id();
    let bound = [crate::listen::Bound {
        configured: memory.clone(),
        addrs: vec![memory.clone()],
    }];
    let keeper =
        crate::reconnect::Loaded::read(None, peer).start(peer, &bound, config.target_peers);
    let (relays, relay_outcomes) = Relays::new(None, streams.clone());
    let wired = Wired {
        swarm,
        registry,
        listen_addrs: vec![memory.clone()],
        keeper,
        streams,
        named,
        named_inbound,
        signatures,
        relays,
        relay_outcomes,
    };
    let handle = Node::assemble(config, wired).expect("node");
    (handle, memory.with(Protocol::P2p(peer)))
}

/// A leaf that dials only when told: no peer target to top up to.
fn leaf() -> NodeConfig {
    let mut config = NodeConfig::new(Keypair::generate_ed25519());
    config.target_peers = 0;
    config
}

async fn next<T>(
    events: &mut hive_proto::fanout::Receiver<Event>,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(found) = pick(events.recv().await.expect("events")) {
                return found;
            }
        }
    })
    .await
    .expect("the event came")
}

/// go's TRIM on a hub with four leaves, low watermark 1, no grace: the
/// three lightest go, the tagged one stays, and the peer list the node
/// keeps says so (one connection, its age).
#[tokio::test]
async fn trim_keeps_the_tagged_peer_and_the_peer_list_follows() {
    let mut hub_config = leaf();
    hub_config.conn_manager = Some(Limits {
        low: 1,
        high: 100,
        grace: Duration::ZERO,
        trim_to: crate::connmgr::TrimTo::Low,
    });
    let (hub, hub_addr) = memory_node(hub_config).await;
    let mut hub_events = hub.subscribe_events();
    let mut leaves = Vec::new();
    for _ in 0..4 {
        let (node, _) = memory_node(leaf()).await;
        let dialed = node.dial(hub_addr.clone()).await.expect("dial");
        assert_eq!(dialed.peer_id, hub.peer_id().to_string());
        leaves.push(node);
    }
    while hub.peers().await.expect("peers").peers.len() < 4 {
        next(&mut hub_events, |e| {
            matches!(e, Event::PeerConnected { .. }).then_some(())
        })
        .await;
    }
    let kept = leaves[2].peer_id();
    hub.conn_tags().tag(kept, "app".into(), 100);

    assert_eq!(hub.trim().await.expect("trim"), 3);
    let mut gone = 0;
    while gone < 3 {
        let peer = next(&mut hub_events, |e| match e {
            Event::PeerDisconnected { peer_id } => Some(peer_id),
            _ => None,
        })
        .await;
        assert_ne!(peer, kept.to_string(), "the tagged peer was trimmed");
        gone += 1;
    }
    let listed = hub.peers().await.expect("peers").peers;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].peer_id, kept.to_string());
    assert_eq!(listed[0].connections.len(), 1);
    assert!(listed[0].connected_secs.is_some());
    assert_eq!(hub.status().await.expect("status").peers, 1);
}

/// Without a connection manager TRIM closes nothing.
#[tokio::test]
async fn trim_without_a_connection_manager_closes_nothing() {
    let (hub, hub_addr) = memory_node(leaf()).await;
    let (other, _) = memory_node(leaf()).await;
    other.dial(hub_addr).await.expect("dial");
    assert_eq!(hub.trim().await.expect("trim"), 0);
    assert_eq!(other.status().await.expect("status").peers, 1);
}
