//! The typed `NodeHandle` against real nodes in this process, on loopback
//! TCP: what each operation answers, and which typed error a caller gets
//! for a peer nobody knows or input the node refuses.

use std::time::Duration;

use hive_node::{
    Delivery, DialError, DirectError, KadError, Node, NodeConfig, NodeHandle, PingError,
    PubsubError,
};
use hive_proto::Event;
use libp2p::{identity::Keypair, Multiaddr, PeerId};

/// Long enough for any loopback step on a loaded machine; a bound, not a
/// timing assertion: it only turns a hang into a failure.
const WAIT: Duration = Duration::from_secs(30);

async fn node() -> NodeHandle {
    let mut config = NodeConfig::new(Keypair::generate_ed25519());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.mdns = false;
    // Publishing soon after subscribing, as clients do.
    config.gossipsub_initial_delay = Duration::from_millis(100);
    Node::start(config).await.expect("node starts")
}

fn addr_of(node: &NodeHandle) -> Multiaddr {
    node.initial_listen_addrs()[0].parse().unwrap()
}

/// The first event `pick` accepts, within [`WAIT`].
async fn next<T>(
    events: &mut hive_proto::fanout::Receiver<Event>,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("event stream open");
            if let Some(found) = pick(event) {
                return found;
            }
        }
    })
    .await
    .expect("the event came")
}

#[tokio::test]
async fn dial_lists_the_peer_on_both_sides_and_disconnect_drops_it() {
    let (a, b) = (node().await, node().await);
    let mut a_events = a.subscribe_events();
    let mut b_events = b.subscribe_events();

    let dialed = b.dial(addr_of(&a)).await.expect("dial");
    assert_eq!(dialed.peer_id, a.peer_id().to_string());
    let b_id = b.peer_id().to_string();
    next(&mut a_events, |e| match e {
        Event::PeerConnected { peer_id, .. } if peer_id == b_id => Some(()),
        _ => None,
    })
    .await;
    let listed = a.peers().await.expect("peers");
    assert_eq!(listed.peers.len(), 1);
    assert_eq!(listed.peers[0].peer_id, b_id);
    // Dialing a connected peer answers at once with the same peer.
    let again = b.dial(addr_of(&a)).await.expect("second dial");
    assert_eq!(again.peer_id, a.peer_id().to_string());
    assert_eq!(b.status().await.expect("status").peers, 1);

    b.disconnect(a.peer_id()).await.expect("disconnect");
    let a_id = a.peer_id().to_string();
    next(&mut b_events, |e| match e {
        Event::PeerDisconnected { peer_id } if peer_id == a_id => Some(()),
        _ => None,
    })
    .await;
    assert!(b.peers().await.expect("peers").peers.is_empty());
}

#[tokio::test]
async fn pipelined_publishes_arrive_in_the_order_they_were_submitted() {
    let (a, b) = (node().await, node().await);
    let topic = "order".to_string();
    assert!(a.subscribe(topic.clone()).await.expect("subscribe").changed);
    assert!(b.subscribe(topic.clone()).await.expect("subscribe").changed);
    let mut a_events = a.subscribe_events();
    let mut b_events = b.subscribe_events();
    a.dial(addr_of(&b)).await.expect("dial");
    let b_id = b.peer_id().to_string();
    next(&mut a_events, |e| match e {
        Event::TopicPeerJoined { topic: t, peer_id } if t == "order" && peer_id == b_id => Some(()),
        _ => None,
    })
    .await;

    // Each publish is handed to the node before the next is built; the
    // answers are awaited only afterwards, all together.
    let mut pending = Vec::new();
    for i in 0..50u32 {
        let call = a.publish(topic.clone(), i.to_be_bytes().to_vec(), None);
        pending.push(call.submit().await.expect("submitted"));
    }
    for answer in futures::future::join_all(pending.into_iter().map(|p| p.answer())).await {
        answer.expect("published");
    }
    let mut received = Vec::new();
    while received.len() < 50 {
        let data = next(&mut b_events, |e| match e {
            Event::Message { topic: t, data, .. } if t == "order" => Some(data.0),
            _ => None,
        })
        .await;
        received.push(u32::from_be_bytes(data.try_into().expect("4 bytes")));
    }
    assert_eq!(received, (0..50).collect::<Vec<_>>());

    // What B received is in its history, numbered, in the same order.
    let page = b.history(0, None).await.expect("history");
    assert_eq!(page.events.len(), 50);

    // A message of exactly the limit goes out (one byte more is refused,
    // see `unknown_peers_and_refused_input_get_typed_errors`).
    let at_limit = vec![7; hive_node::DEFAULT_MAX_MESSAGE_SIZE];
    a.publish(topic.clone(), at_limit, None)
        .await
        .expect("a message of exactly the limit is published");
}

#[tokio::test]
async fn a_direct_message_is_acknowledged_with_its_id() {
    let (a, b) = (node().await, node().await);
    a.dial(addr_of(&b)).await.expect("dial");
    let mut b_events = b.subscribe_events();
    let sent = a
        .send(b.peer_id(), b"hello".to_vec(), Some("m-1".into()))
        .await
        .expect("acknowledged");
    assert_eq!(sent.id, "m-1");
    let data = next(&mut b_events, |e| match e {
        Event::Direct { id, data, .. } if id == "m-1" => Some(data.0),
        _ => None,
    })
    .await;
    assert_eq!(data, b"hello");
    let rtt = a.ping(b.peer_id()).await.expect("ping");
    assert!(rtt.rtt_ms >= 0.0);
}

#[tokio::test]
async fn unknown_peers_and_refused_input_get_typed_errors() {
    let a = node().await;
    let stranger = PeerId::random();

    match a.ping(stranger).await {
        Err(PingError::Failed { peer, delivery, .. }) => {
            assert_eq!(peer, stranger);
            assert_eq!(delivery, Delivery::Unreachable);
        }
        other => panic!("ping of an unknown peer: {other:?}"),
    }
    match a.send(stranger, b"x".to_vec(), None).await {
        Err(DirectError::NotAcked { delivery, .. }) => assert_eq!(delivery, Delivery::Unreachable),
        other => panic!("send to an unknown peer: {other:?}"),
    }
    assert!(matches!(
        a.send(a.peer_id(), b"x".to_vec(), None).await,
        Err(DirectError::ToSelf)
    ));
    let too_big = vec![0; hive_node::DEFAULT_MAX_MESSAGE_SIZE + 1];
    assert!(matches!(
        a.send(stranger, too_big.clone(), None).await,
        Err(DirectError::TooLarge { .. })
    ));
    assert!(matches!(
        a.find_peer(stranger).await,
        Err(KadError::PeerNotFound(p)) if p == stranger
    ));
    assert!(matches!(
        a.get_record(b"no such key".to_vec()).await,
        Err(KadError::NoRecord)
    ));

    assert!(matches!(
        a.subscribe(String::new()).await,
        Err(PubsubError::EmptyTopic)
    ));
    assert!(matches!(
        a.publish("lonely".into(), b"x".to_vec(), None).await,
        Err(PubsubError::NoPeers { topic }) if topic == "lonely"
    ));
    assert!(matches!(
        a.publish("t".into(), b"x".to_vec(), Some(String::new()))
            .await,
        Err(PubsubError::BadId { .. })
    ));
    assert!(matches!(
        a.publish("t".into(), too_big, None).await,
        Err(PubsubError::TooLarge { .. })
    ));

    // Nothing listens on port 1 of loopback.
    let closed: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{stranger}")
        .parse()
        .unwrap();
    assert!(matches!(
        a.dial(closed).await,
        Err(DialError::Failed { .. })
    ));
    let to_self: Multiaddr = format!("{}/p2p-circuit/p2p/{}", addr_of(&a), a.peer_id())
        .parse()
        .unwrap();
    assert!(matches!(
        a.dial(to_self).await,
        Err(DialError::SelfThroughRelay)
    ));

    // The node is still serving after all of that.
    assert_eq!(
        a.status().await.expect("status").peer_id,
        a.peer_id().to_string()
    );
}

#[tokio::test]
async fn a_record_put_is_read_back_and_shutdown_is_signalled() {
    let a = node().await;
    a.put_record(b"k".to_vec(), b"v".to_vec())
        .await
        .expect("put");
    let record = a.get_record(b"k".to_vec()).await.expect("get");
    assert_eq!(record.value.0, b"v");
    a.shutdown().await.expect("shutdown accepted");
    tokio::time::timeout(WAIT, a.shutdown_requested())
        .await
        .expect("shutdown signalled");
}
