//! Nothing lost under a fast peer (REQ-LOSS-4): a bare `hive-p2pd` (no host)
//! publishes 64-byte messages over its IPC as fast as it accepts them, with
//! up to 900 requests in flight, to a topic that host B subscribes to. Every
//! publish A's daemon acknowledged must end in B's `/api/messages` exactly
//! once. The test prints sent / acknowledged / stored / lost.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use hive_tests::{Daemon, Host, HostOpts};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const TOPIC: &str = "flood";
/// Publishes the daemon must have acknowledged.
const ACKED: usize = 30_000;
/// Publishes sent at most while reaching `ACKED`.
const MAX_SENT: usize = 60_000;
const IN_FLIGHT: usize = 900;
const TOKEN: &str = "flood-test-token";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ipc(d: &Daemon) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(d.ipc_url())
        .await
        .expect("connect to A's IPC");
    let hello = json!({"type": "hello", "version": hive_proto::PROTOCOL_VERSION, "token": TOKEN});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    let Some(Ok(Message::Text(t))) = ws.next().await else {
        panic!("no welcome from A's daemon");
    };
    let v: Value = serde_json::from_str(t.as_str()).unwrap();
    assert_eq!(v["type"], "welcome", "{v}");
    ws
}

/// One request and its answer, on a connection with nothing else in flight.
async fn ask(ws: &mut Ws, op: &str, args: Value) -> Value {
    let req = json!({"type": "request", "id": 0, "op": op, "args": args});
    ws.send(Message::text(req.to_string())).await.unwrap();
    loop {
        let Some(Ok(msg)) = ws.next().await else {
            panic!("A's IPC closed");
        };
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["type"] == "response" {
            return v;
        }
    }
}

/// Publish as fast as the daemon answers, `IN_FLIGHT` at a time, until it
/// acknowledged `ACKED` (a full gossipsub queue refuses some); returns how
/// many were sent, the payloads acknowledged and how many were refused.
async fn flood(ws: Ws) -> (usize, HashSet<String>, usize) {
    let (mut sink, mut stream) = ws.split();
    let window = Arc::new(Semaphore::new(IN_FLIGHT));
    let acked_n = Arc::new(AtomicUsize::new(0));
    // Set by the sender once it stopped: how many it sent.
    let sent_n = Arc::new(AtomicUsize::new(usize::MAX));
    let (reader_window, reader_acked, reader_sent) =
        (window.clone(), acked_n.clone(), sent_n.clone());
    let reader = tokio::spawn(async move {
        let mut acked = HashSet::new();
        let mut refused = 0;
        let mut errors: HashMap<String, usize> = HashMap::new();
        while acked.len() + refused < reader_sent.load(Ordering::Acquire) {
            let Some(Ok(msg)) = stream.next().await else {
                panic!("A's IPC closed mid-flood");
            };
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] != "response" {
                continue;
            }
            let Some(n) = v["id"].as_u64().filter(|&n| n != u64::MAX) else {
                continue; // the wake-up
            };
            let n = n as usize;
            if v["result"].is_object() {
                acked.insert(payload(n));
                reader_acked.fetch_add(1, Ordering::AcqRel);
            } else {
                refused += 1;
                *errors
                    .entry(v["error"]["code"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            reader_window.add_permits(1);
        }
        if refused > 0 {
            println!("publishes refused by A's daemon, by code: {errors:?}");
        }
        (acked, refused)
    });
    let engine = base64::engine::general_purpose::STANDARD;
    let mut n = 0;
    while acked_n.load(Ordering::Acquire) < ACKED && n < MAX_SENT {
        window.acquire().await.unwrap().forget();
        let req = json!({"type": "request", "id": n, "op": "publish",
            "args": {"topic": TOPIC, "data": engine.encode(payload(n))}});
        sink.feed(Message::text(req.to_string())).await.unwrap();
        n += 1;
        if window.available_permits() == 0 {
            sink.flush().await.unwrap();
        }
    }
    sink.flush().await.unwrap();
    sent_n.store(n, Ordering::Release);
    // Wake the reader should every answer be in already.
    let v = json!({"type": "request", "id": u64::MAX, "op": "status"});
    sink.send(Message::text(v.to_string())).await.unwrap();
    let (acked, refused) = reader.await.unwrap();
    (n, acked, refused)
}

/// 64 bytes, unique per message.
fn payload(n: usize) -> String {
    format!("flood-{n:058}")
}

/// Every message row B stored: payload -> how many times.
async fn stored(b: &Host) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for text in b.stored_payloads(TOPIC).await.expect("B's messages") {
        *counts.entry(text).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_publish_of_a_flooding_peer_is_stored_once() {
    let b = Host::start(HostOpts::default()).await.expect("host B");
    b.wait_healthy().await.unwrap();
    b.subscribe(TOPIC).await.unwrap();
    let b_addr = b.first_listen_addr().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let a = Daemon::start(dir.path(), TOKEN, &["--bootstrap", &b_addr])
        .await
        .expect("daemon A");
    let mut ws = ipc(&a).await;
    // A knows B is in the topic once gossipsub told it so.
    let deadline = std::time::Instant::now() + hive_tests::DEADLINE;
    loop {
        let v = ask(&mut ws, "topic_peers", json!({"topic": TOPIC})).await;
        if v["result"]["peers"].as_array().map_or(0, Vec::len) > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A never saw B in the topic"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (sent, acked, refused) = flood(ws).await;
    assert!(
        acked.len() >= ACKED,
        "A's daemon acknowledged only {} of {sent} publishes",
        acked.len()
    );

    // Wait until B has stored every acknowledged publish (or stops moving).
    let mut last = (0, std::time::Instant::now());
    let counts = loop {
        let counts = stored(&b).await;
        let have = acked.iter().filter(|p| counts.contains_key(*p)).count();
        if have == acked.len() {
            break counts;
        }
        if have != last.0 {
            last = (have, std::time::Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let lost = acked.iter().filter(|p| !counts.contains_key(*p)).count();
    let twice = counts.values().filter(|&&n| n > 1).count();
    let foreign = counts.keys().filter(|p| !p.starts_with("flood-")).count();
    let status = b.status().await.unwrap();
    println!(
        "sent {sent} acknowledged {} refused {refused} stored {} lost {lost} duplicated {twice}; B inbound {}",
        acked.len(),
        counts.len(),
        status["inbound"]
    );
    assert_eq!(lost, 0, "acknowledged publishes missing from B's history");
    assert_eq!(twice, 0, "messages stored more than once");
    assert_eq!(foreign, 0, "rows that A never published");
}
