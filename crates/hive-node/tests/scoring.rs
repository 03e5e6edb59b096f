//! Gossipsub peer scoring against a real attacker (issue 14): a rust-libp2p
//! peer that publishes unsigned messages to a Hive node (strict signing, so
//! every one is invalid) sinks below the graylist threshold, while an honest
//! Hive peer in the same topic keeps a score of 0 and its messages still
//! arrive. On loopback TCP, both peers from one address (IP colocation must
//! not count against anyone).

use std::time::Duration;

use futures::StreamExt;
use hive_node::{Node, NodeConfig, NodeHandle};
use hive_proto::Event;
use libp2p::{gossipsub, identity::Keypair, noise, tcp, yamux, Multiaddr};

const TOPIC: &str = "scored";
/// A bound that turns a hang into a failure, not a timing assertion.
const WAIT: Duration = Duration::from_secs(30);

async fn hive_node() -> NodeHandle {
    let mut config = NodeConfig::new(Keypair::generate_ed25519());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.mdns = false;
    config.gossipsub_initial_delay = Duration::from_millis(100);
    Node::start(config).await.expect("node starts")
}

fn addr_of(node: &NodeHandle) -> Multiaddr {
    node.initial_listen_addrs()[0].parse().unwrap()
}

/// A gossipsub peer that signs nothing: under Hive's strict validation
/// every message it publishes is invalid.
fn attacker() -> libp2p::Swarm<gossipsub::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            let config = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                // Anonymous messages have no author and seqno to be named by.
                .message_id_fn(|m| gossipsub::MessageId::from(m.data.clone()))
                .build()
                .unwrap();
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config).unwrap()
        })
        .unwrap()
        .build()
}

async fn score_of(node: &NodeHandle, peer: &str) -> Option<f64> {
    let peers = node.peers().await.ok()?;
    peers
        .peers
        .into_iter()
        .find(|p| p.peer_id == peer)?
        .gossip_score
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_invalid_messages_is_graylisted_and_honest_peers_are_not() {
    let (h, honest) = (hive_node().await, hive_node().await);
    h.subscribe(TOPIC.into()).await.unwrap();
    honest.subscribe(TOPIC.into()).await.unwrap();
    honest.dial(addr_of(&h)).await.expect("honest peer dials");

    let mut bad = attacker();
    let bad_id = bad.local_peer_id().to_string();
    let topic = gossipsub::IdentTopic::new(TOPIC);
    bad.behaviour_mut().subscribe(&topic).unwrap();
    bad.dial(addr_of(&h)).unwrap();

    // Publish an invalid message every 50 ms (once H is known in the topic)
    // until H's score of the attacker is below the graylist threshold.
    let graylisted = tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let (mut sent, mut attempt) = (0u64, 0u64);
        loop {
            tokio::select! {
                // Driven for its own sake: connection, subscriptions, sends.
                _ = bad.select_next_some() => {}
                _ = tick.tick() => {
                    // Distinct each time: a refused publish (no peers yet)
                    // still enters the attacker's own duplicate cache.
                    attempt += 1;
                    let payload = format!("unsigned {attempt}");
                    if bad.behaviour_mut().publish(topic.clone(), payload).is_ok() {
                        sent += 1;
                    }
                    if sent > 0 && sent % 4 == 0 {
                        if let Some(score) = score_of(&h, &bad_id).await {
                            if score < hive_node::scoring::thresholds().graylist_threshold {
                                return (sent, score);
                            }
                        }
                    }
                }
            }
        }
    })
    .await;
    let (sent, score) = graylisted.expect("the attacker was never graylisted");
    println!("graylisted after {sent} invalid messages: score {score}");

    // The honest peer, same address, same topic: untouched, and heard.
    let honest_id = honest.peer_id().to_string();
    let honest_score = score_of(&h, &honest_id).await;
    assert_eq!(honest_score, Some(0.0), "the honest peer's score");
    let mut events = h.subscribe_events();
    let h_id = h.peer_id().to_string();
    tokio::time::timeout(WAIT, async {
        // The honest peer publishes once it knows H is in the topic.
        while !honest
            .topic_peers(TOPIC.into())
            .await
            .is_ok_and(|t| t.peers.contains(&h_id))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        honest
            .publish(TOPIC.into(), b"valid".to_vec(), None)
            .await
            .expect("the honest peer publishes");
        loop {
            match events.recv().await {
                Ok(Event::Message { from, .. }) if from == honest_id => return,
                Ok(_) => {}
                Err(e) => panic!("H's events: {e}"),
            }
        }
    })
    .await
    .expect("the honest peer's message reaches H");
}
