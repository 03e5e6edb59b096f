//! A peer that answers a reconcile with forged messages gets nothing kept
//! (issue 13, REQ-LOSS-16): node F speaks `/hive/sync/1.0.0` by hand (it runs no sync of
//! its own) and, when honest node B reconciles with it, lists four ids and
//! serves: one message F really signed, one claiming another author (signed
//! by F), one whose payload was changed after signing, and, slipped into
//! the answer, one B did not ask for. B must keep the first only, count the
//! three refusals, and show the reconcile in its status. Nothing here
//! reconnects: the pair is new to B (it never had a message of the topic),
//! so no catch-up runs, only the periodic reconcile.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use hive_node::{Node, NodeConfig, NodeHandle};
use hive_proto::{Bytes, Event};
use libp2p::{identity::Keypair, Multiaddr, PeerId};
use serde_json::{json, Value};

const TOPIC: &str = "t";
/// A bound on the whole exchange (the first reconcile comes about 10 s
/// after the pair starts), not a timing assertion.
const WAIT: Duration = Duration::from_secs(60);
const SEQNO: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 9];

/// What gossipsub signs (the libp2p pubsub spec), written out here
/// independently of the node's own encoder.
fn signed_bytes(author: &PeerId, data: &[u8]) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
        out.push((number << 3) | 2);
        let mut n = bytes.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(bytes);
    }
    let mut out = b"libp2p-pubsub:".to_vec();
    field(&mut out, 1, &author.to_bytes());
    field(&mut out, 2, data);
    field(&mut out, 3, &SEQNO);
    field(&mut out, 4, TOPIC.as_bytes());
    out
}

/// A message as F serves it: `claimed` as author, `data` as payload, and
/// F's signature over `signed` with `claimed` as the author.
fn message(f: &Keypair, claimed: PeerId, id: &str, data: &[u8], signed: &[u8]) -> Value {
    let signature = f.sign(&signed_bytes(&claimed, signed)).unwrap();
    json!({
        "seq": 0, "from": claimed.to_string(), "id": id,
        "data": b64(data), "seqno": b64(&SEQNO), "signature": b64(&signature),
    })
}

/// Bytes as the protocol carries them (base64).
fn b64(bytes: &[u8]) -> Value {
    serde_json::to_value(Bytes(bytes.to_vec())).unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A node on loopback; `catch_up: false` runs no sync of its own.
async fn node(key: Keypair, catch_up: bool) -> NodeHandle {
    let mut config = NodeConfig::new(key);
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.mdns = false;
    config.catch_up = catch_up;
    Node::start(config).await.expect("node starts")
}

async fn read_frame(stream: &mut libp2p::Stream) -> Option<Value> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    serde_json::from_slice(&body).ok()
}

async fn write_frame(stream: &mut libp2p::Stream, frame: &Value) -> std::io::Result<()> {
    let body = serde_json::to_vec(frame).unwrap();
    stream.write_all(&(body.len() as u32).to_be_bytes()).await?;
    stream.write_all(&body).await?;
    stream.flush().await
}

/// F's side: ids of four messages (received a minute ago, so settled), and
/// for any request by id all four, asked for or not.
async fn forger(f: NodeHandle, key: Keypair) {
    let me = f.peer_id();
    let other = Keypair::generate_ed25519().public().to_peer_id();
    let served = vec![
        message(&key, me, "good", b"good", b"good"),
        message(&key, other, "forged", b"forged", b"forged"),
        message(&key, me, "altered", b"altered", b"original"),
        message(&key, me, "extra", b"extra", b"extra"),
    ];
    let now = now_ms();
    let ids: Vec<Value> = served[..3]
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"seq": i + 1, "from": m["from"], "id": m["id"], "ms": now - 60_000}))
        .collect();
    let mut incoming = f
        .stream_control()
        .accept(hive_node::sync::SYNC_PROTOCOL)
        .expect("F accepts sync streams");
    while let Some((_, mut stream)) = incoming.next().await {
        let (ids, served) = (ids.clone(), served.clone());
        tokio::spawn(async move {
            while let Some(request) = read_frame(&mut stream).await {
                let now = now_ms();
                let answer = if request["ids_only"] == true && request["after"] == 0 {
                    json!({"messages": [], "more": false, "ids": ids, "now_ms": now})
                } else if request["only"].is_array() {
                    json!({"messages": served, "more": false, "now_ms": now})
                } else {
                    json!({"messages": [], "more": false, "now_ms": now})
                };
                if write_frame(&mut stream, &answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_forged_messages_to_a_reconcile_gets_none_kept() {
    let key = Keypair::generate_ed25519();
    let f = node(key.clone(), false).await;
    tokio::spawn(forger(f.clone(), key));
    let b = node(Keypair::generate_ed25519(), true).await;
    let mut events = b.subscribe_events();
    b.subscribe(TOPIC.into()).await.expect("B subscribes");
    let f_addr: Multiaddr = f.initial_listen_addrs()[0].parse().unwrap();
    b.dial(f_addr).await.expect("B dials F");

    let sync = tokio::time::timeout(WAIT, async {
        loop {
            let sync = b.status().await.unwrap().sync.expect("B syncs");
            // All four served were handled, kept or refused.
            if sync.reconciles >= 1 && sync.reconciled + sync.rejected >= 4 {
                return sync;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("B reconciled with F");
    assert_eq!(sync.reconciled, 1, "only F's own message: {sync:?}");
    assert_eq!(sync.rejected, 3, "forged, altered, not asked for: {sync:?}");

    let page = b.history(0, None).await.expect("B's history");
    let kept: Vec<(String, String)> = page
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message { from, id, .. } => Some((from.clone(), id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(kept, [(f.peer_id().to_string(), "good".to_string())]);
    // Clients heard of the good one only, once.
    let mut heard = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Message { id, .. } = event {
            heard.push(id);
        }
    }
    assert_eq!(heard, ["good"]);
}
