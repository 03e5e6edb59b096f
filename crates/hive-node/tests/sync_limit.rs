//! A peer that floods `/hive/sync/1.0.0` with requests is refused past its
//! rate (issue 14): node A serves one page per 100 s with bursts of 3 (so no
//! token refills while the test runs, however slow the machine); node B
//! asks for page after page on one stream as fast as A answers. A answers
//! the burst, then closes the stream and counts the refusal in its status;
//! a fresh stream of B's is refused at once too (the bucket is per peer, not
//! per stream).

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use hive_node::limits::{PeerLimits, Rate};
use hive_node::{Node, NodeConfig, NodeHandle};
use libp2p::{identity::Keypair, Multiaddr, PeerId};

const WAIT: Duration = Duration::from_secs(30);
const BURST: usize = 3;

async fn node(limits: PeerLimits) -> NodeHandle {
    let mut config = NodeConfig::new(Keypair::generate_ed25519());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.mdns = false;
    config.peer_limits = limits;
    Node::start(config).await.expect("node starts")
}

/// Ask for pages on one stream until A closes it; how many it answered.
async fn pages_until_closed(b: &NodeHandle, a: PeerId) -> usize {
    let mut stream = b
        .stream_control()
        .open_stream(a, hive_node::sync::SYNC_PROTOCOL)
        .await
        .expect("sync stream to A");
    let request = serde_json::json!({"topic": "t", "since_ms": 0, "after": 0, "limit": 10});
    let body = serde_json::to_vec(&request).unwrap();
    let mut answered = 0;
    loop {
        let sent = async {
            stream.write_all(&(body.len() as u32).to_be_bytes()).await?;
            stream.write_all(&body).await?;
            stream.flush().await
        };
        if sent.await.is_err() {
            return answered;
        }
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return answered;
        }
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut frame).await.expect("a whole answer");
        answered += 1;
        assert!(answered <= 100, "A never stopped answering");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_flooding_sync_requests_is_refused_past_its_rate() {
    let a = node(PeerLimits {
        sync_requests: Rate {
            per_sec: 0.01,
            burst: BURST as f64,
        },
        ..PeerLimits::DEFAULT
    })
    .await;
    let b = node(PeerLimits::DEFAULT).await;
    let a_addr: Multiaddr = a.initial_listen_addrs()[0].parse().unwrap();
    b.dial(a_addr).await.expect("B dials A");

    let answered = tokio::time::timeout(WAIT, pages_until_closed(&b, a.peer_id()))
        .await
        .expect("A closed the stream");
    assert_eq!(
        answered, BURST,
        "A answered the burst, then closed the stream"
    );
    let again = tokio::time::timeout(WAIT, pages_until_closed(&b, a.peer_id()))
        .await
        .expect("A closed the second stream");
    assert_eq!(again, 0, "a new stream got pages: the limit is per peer");
    let refused = a.status().await.unwrap().refused.expect("refusal counts");
    assert_eq!(refused.sync_rate_limited, 2, "{refused:?}");
    assert_eq!(refused.direct_rate_limited, 0);
}
