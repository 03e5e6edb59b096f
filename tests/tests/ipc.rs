//! The daemon's WebSocket IPC, driven directly with a raw WebSocket client:
//! authentication, handshake, pipelining, and bad input that must be answered
//! without breaking the connection. (REQ-IPC-1..6, REQ-ID-1)

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hive_proto::{close, PROTOCOL_VERSION};
use hive_tests::Daemon;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const TOKEN: &str = "test-token-0123456789abcdef";

async fn connect(d: &Daemon) -> Ws {
    let mut cfg = WebSocketConfig::default();
    cfg.max_message_size = Some(128 << 20);
    cfg.max_frame_size = Some(128 << 20);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(d.ipc_url(), Some(cfg), false)
        .await
        .expect("connect to IPC");
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// Next text frame as JSON; None when the connection closed.
async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .ok()??
            .ok()?;
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Next response (skipping pushed events).
async fn response(ws: &mut Ws) -> Value {
    loop {
        let v = recv(ws)
            .await
            .expect("connection closed while waiting for a response");
        if v["type"] == "response" {
            return v;
        }
    }
}

/// Wait for the close frame and return its code and reason.
async fn close_frame(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Ok(Some(Ok(Message::Close(None)))) | Ok(None) | Err(_) => return (0, String::new()),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) => return (0, String::new()),
        }
    }
}

async fn authed(d: &Daemon) -> Ws {
    let mut ws = connect(d).await;
    send(
        &mut ws,
        json!({"type": "hello", "version": PROTOCOL_VERSION, "token": TOKEN}),
    )
    .await;
    let welcome = recv(&mut ws).await.expect("welcome");
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["peer_id"], d.peer_id().as_str());
    ws
}

async fn daemon() -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::TempDir::new().unwrap();
    let d = Daemon::start(dir.path(), TOKEN, &[])
        .await
        .expect("daemon starts");
    (dir, d)
}

/// Daemons A, B and C, B and C bootstrapped from A (and their data dirs).
async fn three_from_a() -> (Vec<tempfile::TempDir>, [Daemon; 3]) {
    let (dir_a, a) = daemon().await;
    let bootstrap = a.ready["listen_addrs"][0].as_str().unwrap().to_string();
    let mut dirs = vec![dir_a];
    let mut from_a = Vec::new();
    for _ in 0..2 {
        let dir = tempfile::TempDir::new().unwrap();
        let d = Daemon::start(dir.path(), TOKEN, &["--bootstrap", &bootstrap])
            .await
            .expect("daemon starts");
        dirs.push(dir);
        from_a.push(d);
    }
    let c = from_a.pop().expect("two started");
    let b = from_a.pop().expect("two started");
    (dirs, [a, b, c])
}

#[tokio::test]
async fn ready_line_names_ipc_peer_and_addrs() {
    let (_dir, d) = daemon().await;
    assert_eq!(d.ready["event"], "ready");
    assert!(d.ipc_url().starts_with("ws://127.0.0.1:"), "{}", d.ready);
    let peer = d.peer_id();
    let addrs = d.ready["listen_addrs"].as_array().unwrap();
    assert!(!addrs.is_empty());
    for a in addrs {
        assert!(
            a.as_str().unwrap().ends_with(&format!("/p2p/{peer}")),
            "{a}"
        );
    }
    // The token never appears on the command line.
    let pid = d.ready["pid"].as_u64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(TOKEN));
}

#[tokio::test]
async fn wrong_or_missing_token_is_refused_with_a_reason() {
    let (_dir, d) = daemon().await;

    let mut ws = connect(&d).await;
    send(
        &mut ws,
        json!({"type": "hello", "version": PROTOCOL_VERSION, "token": "wrong"}),
    )
    .await;
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, close::UNAUTHORIZED);
    assert!(reason.contains("token"), "reason: {reason}");

    // A request before any hello is not served.
    let mut ws = connect(&d).await;
    send(&mut ws, json!({"type": "request", "id": 1, "op": "status"})).await;
    let (code, _) = close_frame(&mut ws).await;
    assert_eq!(code, close::HANDSHAKE_FAILED);

    let mut ws = connect(&d).await;
    send(
        &mut ws,
        json!({"type": "hello", "version": 999, "token": TOKEN}),
    )
    .await;
    let (code, reason) = close_frame(&mut ws).await;
    assert_eq!(code, close::VERSION_MISMATCH);
    assert!(reason.contains("999"), "reason: {reason}");

    // The daemon still serves a proper client afterwards.
    let mut ws = authed(&d).await;
    send(&mut ws, json!({"type": "request", "id": 2, "op": "status"})).await;
    let r = response(&mut ws).await;
    assert_eq!(r["result"]["peer_id"], d.peer_id().as_str());
}

/// A client that connects and says nothing is closed with 4003 once the
/// 10 s for its hello are over (audit row 59), and the daemon still serves
/// others meanwhile.
#[tokio::test]
async fn a_silent_client_is_closed_after_the_hello_timeout() {
    let (_dir, d) = daemon().await;
    let started = std::time::Instant::now();
    let mut silent = connect(&d).await;
    let mut other = authed(&d).await;
    send(
        &mut other,
        json!({"type": "request", "id": 1, "op": "status"}),
    )
    .await;
    assert!(response(&mut other).await["result"]["peer_id"].is_string());
    let (code, reason) = close_frame(&mut silent).await;
    assert_eq!(code, close::HANDSHAKE_FAILED, "{reason}");
    println!("silent client closed after {:?}", started.elapsed());
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_connection_keeps_working() {
    let (_dir, d) = daemon().await;
    let mut ws = authed(&d).await;
    // A second client, to prove others are unaffected.
    let mut other = authed(&d).await;

    ws.send(Message::text("{this is not json")).await.unwrap();
    let r = response(&mut ws).await;
    assert_eq!(r["error"]["code"], "bad_frame", "{r}");

    send(
        &mut ws,
        json!({"type": "request", "id": 10, "op": "teleport"}),
    )
    .await;
    let r = response(&mut ws).await;
    assert_eq!(r["id"], 10);
    assert_eq!(r["error"]["code"], "unknown_op", "{r}");

    send(
        &mut ws,
        json!({"type": "request", "id": 11, "op": "dial", "args": {"addr": "not a multiaddr"}}),
    )
    .await;
    let r = response(&mut ws).await;
    assert_eq!(r["id"], 11);
    assert_eq!(r["error"]["code"], "bad_args", "{r}");

    send(&mut ws, json!({"type": "request", "id": 12, "op": "publish", "args": {"topic": "t", "data": "%%%"}})).await;
    let r = response(&mut ws).await;
    assert_eq!(r["id"], 12);
    assert_eq!(r["error"]["code"], "bad_args", "{r}");

    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let r = response(&mut ws).await;
    assert_eq!(r["error"]["code"], "bad_frame", "{r}");

    // Oversized: over the 8 MiB default soft limit, under the hard limit.
    let big = format!(
        r#"{{"type":"request","id":13,"op":"publish","args":{{"topic":"t","data":"{}"}}}}"#,
        "A".repeat(9 << 20)
    );
    ws.send(Message::text(big)).await.unwrap();
    let r = response(&mut ws).await;
    assert_eq!(r["error"]["code"], "frame_too_large", "{r}");

    send(
        &mut ws,
        json!({"type": "hello", "version": PROTOCOL_VERSION, "token": TOKEN}),
    )
    .await;
    let r = response(&mut ws).await;
    assert_eq!(r["error"]["code"], "protocol_violation", "{r}");

    // Still serving, on this connection and on the other.
    send(
        &mut ws,
        json!({"type": "request", "id": 14, "op": "status"}),
    )
    .await;
    let r = response(&mut ws).await;
    assert_eq!(r["id"], 14);
    assert_eq!(r["result"]["peer_id"], d.peer_id().as_str());
    send(
        &mut other,
        json!({"type": "request", "id": 1, "op": "listen_addrs"}),
    )
    .await;
    let r = response(&mut other).await;
    assert!(
        r["result"]["listen_addrs"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{r}"
    );
}

#[tokio::test]
async fn many_requests_in_flight_each_get_exactly_one_response() {
    let (_dir, d) = daemon().await;
    let mut ws = authed(&d).await;
    const N: u64 = 500;
    for id in 0..N {
        let op = if id % 2 == 0 { "status" } else { "topics" };
        send(&mut ws, json!({"type": "request", "id": id, "op": op})).await;
    }
    let mut seen = vec![0u32; N as usize];
    for _ in 0..N {
        let r = response(&mut ws).await;
        let id = r["id"].as_u64().expect("id") as usize;
        assert!(r.get("error").is_none(), "{r}");
        seen[id] += 1;
    }
    assert!(
        seen.iter().all(|&n| n == 1),
        "some ids answered twice or never"
    );
}

#[tokio::test]
async fn subscribe_publish_and_events_between_two_daemons() {
    let (_da, a) = daemon().await;
    let dir_b = tempfile::TempDir::new().unwrap();
    let bootstrap = a.ready["listen_addrs"][0].as_str().unwrap().to_string();
    let b = Daemon::start(dir_b.path(), TOKEN, &["--bootstrap", &bootstrap])
        .await
        .unwrap();
    let mut wa = authed(&a).await;
    let mut wb = authed(&b).await;
    for (ws, id) in [(&mut wa, 1), (&mut wb, 1)] {
        send(
            ws,
            json!({"type": "request", "id": id, "op": "subscribe", "args": {"topic": "ipc"}}),
        )
        .await;
        assert!(response(ws).await["result"]["changed"] == true);
    }
    // Wait for the subscription to propagate, by asking (not by sleeping blind).
    let mut id = 100;
    loop {
        id += 1;
        send(
            &mut wa,
            json!({"type": "request", "id": id, "op": "topics"}),
        )
        .await;
        let r = response(&mut wa).await;
        let peers = r["result"]["topics"][0]["peers"].as_u64().unwrap_or(0);
        if peers >= 1 {
            break;
        }
        assert!(id < 700, "topic peer never appeared: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let payload = vec![0u8, 159, 146, 150, 255];
    send(
        &mut wa,
        json!({"type": "request", "id": 1000, "op": "publish",
        "args": {"topic": "ipc", "data": hive_proto::Bytes(payload.clone())}}),
    )
    .await;
    let r = response(&mut wa).await;
    let msg_id = r["result"]["id"].as_str().expect("message id").to_string();
    loop {
        let ev = recv(&mut wb).await.expect("event stream open");
        if ev["type"] == "event" && ev["event"] == "message" {
            assert_eq!(ev["topic"], "ipc");
            assert_eq!(ev["id"], msg_id.as_str());
            assert_eq!(ev["from"], a.peer_id().as_str());
            let data: hive_proto::Bytes = serde_json::from_value(ev["data"].clone()).unwrap();
            assert_eq!(data.0, payload);
            break;
        }
    }
    // Direct send is answered only after the remote acknowledged it.
    send(
        &mut wa,
        json!({"type": "request", "id": 1001, "op": "send",
        "args": {"peer_id": b.peer_id(), "data": hive_proto::Bytes(b"direct".to_vec())}}),
    )
    .await;
    let r = response(&mut wa).await;
    assert!(r["result"]["id"].is_string(), "{r}");
    loop {
        let ev = recv(&mut wb).await.expect("event stream open");
        if ev["event"] == "direct" {
            assert_eq!(ev["id"], r["result"]["id"]);
            break;
        }
    }
    // ... and only then: with B's daemon hung (SIGSTOP), A's answer waits
    // (a local acknowledgement would come at once), and it comes, as an
    // acknowledgement, once B runs again. (audit row 52)
    let b_pid = b.child.id().expect("B's pid") as i32;
    hive_tests::signal(b_pid, libc::SIGSTOP);
    send(
        &mut wa,
        json!({"type": "request", "id": 1003, "op": "send",
        "args": {"peer_id": b.peer_id(), "data": hive_proto::Bytes(b"to a hung peer".to_vec())}}),
    )
    .await;
    let early = tokio::time::timeout(Duration::from_secs(2), response(&mut wa)).await;
    hive_tests::signal(b_pid, libc::SIGCONT);
    assert!(
        early.is_err(),
        "answered while the peer was hung: {early:?}"
    );
    let r = response(&mut wa).await;
    assert_eq!(r["id"], 1003, "{r}");
    assert!(
        r["result"]["id"].is_string(),
        "acknowledged once B ran again: {r}"
    );
    // Ping measures a round trip to the connected peer.
    send(
        &mut wa,
        json!({"type": "request", "id": 1002, "op": "ping", "args": {"peer_id": b.peer_id()}}),
    )
    .await;
    let r = response(&mut wa).await;
    assert!(
        r["result"]["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{r}"
    );
    // Kademlia put/get between the two.
    send(&mut wa, json!({"type": "request", "id": 1003, "op": "put_record",
        "args": {"key": hive_proto::Bytes(b"k".to_vec()), "value": hive_proto::Bytes(b"v".to_vec())}})).await;
    let r = response(&mut wa).await;
    assert!(r.get("error").is_none(), "{r}");
    send(
        &mut wb,
        json!({"type": "request", "id": 1004, "op": "get_record",
        "args": {"key": hive_proto::Bytes(b"k".to_vec())}}),
    )
    .await;
    let r = response(&mut wb).await;
    assert_eq!(r["result"]["value"], "dg==", "{r}");
}

#[tokio::test]
async fn identity_is_kept_in_a_0600_key_file_across_restarts() {
    let dir = tempfile::TempDir::new().unwrap();
    let first = Daemon::start(dir.path(), TOKEN, &[]).await.unwrap();
    let peer = first.peer_id();
    drop(first);
    let key = dir.path().join("identity.key");
    let mode = std::fs::metadata(&key)
        .expect("key file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    let second = Daemon::start(dir.path(), TOKEN, &[]).await.unwrap();
    assert_eq!(second.peer_id(), peer);
}

#[tokio::test]
async fn unix_socket_ipc_is_private_and_serves() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::TempDir::new().unwrap();
    let sock = dir.path().join("ipc.sock");
    let spec = format!("unix:{}", sock.display());
    let mut child = tokio::process::Command::new(hive_tests::daemon_bin())
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--ipc",
            &spec,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ])
        .env(hive_proto::ENV_IPC_TOKEN, TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let ready: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(ready["ipc"], spec.as_str());
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let stream = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://localhost/", stream)
        .await
        .unwrap();
    ws.send(Message::text(
        json!({"type": "hello", "version": PROTOCOL_VERSION, "token": TOKEN}).to_string(),
    ))
    .await
    .unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("welcome"));
    ws.send(Message::text(
        json!({"type": "request", "id": 1, "op": "status"}).to_string(),
    ))
    .await
    .unwrap();
    let status = ws.next().await.unwrap().unwrap();
    let status: Value = serde_json::from_str(status.to_text().unwrap()).unwrap();
    assert_eq!(status["result"]["peer_id"], ready["peer_id"]);
}

#[tokio::test]
async fn dht_provide_find_providers_and_find_peer() {
    let (_dirs, [a, b, c]) = three_from_a().await;
    let mut wa = authed(&a).await;
    let mut wb = authed(&b).await;
    let mut wc = authed(&c).await;

    let key = hive_proto::Bytes(b"some content".to_vec());
    send(
        &mut wb,
        json!({"type": "request", "id": 1, "op": "provide", "args": {"key": key}}),
    )
    .await;
    let r = response(&mut wb).await;
    assert!(r.get("error").is_none(), "{r}");

    send(
        &mut wa,
        json!({"type": "request", "id": 2, "op": "find_providers", "args": {"key": key}}),
    )
    .await;
    let r = response(&mut wa).await;
    let providers = r["result"]["providers"]
        .as_array()
        .expect("providers")
        .clone();
    assert!(
        providers
            .iter()
            .any(|p| p["peer_id"] == b.peer_id().as_str()),
        "{r}"
    );

    // C finds B's addresses through the DHT (C knows only A).
    send(
        &mut wc,
        json!({"type": "request", "id": 3, "op": "find_peer", "args": {"peer_id": b.peer_id()}}),
    )
    .await;
    let r = response(&mut wc).await;
    assert_eq!(r["result"]["peer_id"], b.peer_id().as_str(), "{r}");
    assert!(
        r["result"]["addrs"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{r}"
    );

    send(&mut wc, json!({"type": "request", "id": 4, "op": "get_record", "args": {"key": hive_proto::Bytes(b"absent".to_vec())}})).await;
    let r = response(&mut wc).await;
    assert_eq!(r["error"]["code"], "not_found", "{r}");

    send(
        &mut wc,
        json!({"type": "request", "id": 5, "op": "disconnect", "args": {"peer_id": a.peer_id()}}),
    )
    .await;
    let r = response(&mut wc).await;
    assert!(r.get("error").is_none(), "{r}");
    // A is C's bootstrap peer: C must not dial it straight back (audit row
    // 16).
    stays_away(&mut wc, &a.peer_id(), "its bootstrap peer").await;
}

/// DISCONNECT of a peer that is not a bootstrap peer holds it away too (audit
/// row 16). Both sides would undo it within a second: C, below its low
/// watermark (8) and remembering B, by dialing B, and B, below its own and
/// remembering C, by dialing C; C refuses B's connections while the hold
/// lasts.
#[tokio::test]
async fn a_disconnected_peer_is_not_dialed_back_bootstrap_or_not() {
    let (_dirs, [_a, b, c]) = three_from_a().await;
    let mut wc = authed(&c).await;
    let b_addr = b.ready["listen_addrs"][0].as_str().unwrap();
    send(
        &mut wc,
        json!({"type": "request", "id": 1, "op": "dial", "args": {"addr": b_addr}}),
    )
    .await;
    let r = response(&mut wc).await;
    assert!(r.get("error").is_none(), "{r}");
    let mut id = 1;
    assert!(
        connected_to(&mut wc, &mut id, &b.peer_id()).await,
        "dial answered {r}, B not listed"
    );
    send(
        &mut wc,
        json!({"type": "request", "id": 100, "op": "disconnect", "args": {"peer_id": b.peer_id()}}),
    )
    .await;
    let r = response(&mut wc).await;
    assert!(r.get("error").is_none(), "{r}");
    stays_away(&mut wc, &b.peer_id(), "a peer it had dialed").await;
}

/// After a DISCONNECT answered by the daemon behind `ws`: `peer` leaves its
/// peers within 10 s and stays away for the next 5 s.
async fn stays_away(ws: &mut Ws, peer: &str, what: &str) {
    let gone = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut id = 1000;
    while connected_to(ws, &mut id, peer).await {
        assert!(
            tokio::time::Instant::now() < gone,
            "{what} still connected after disconnect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..25 {
        assert!(
            !connected_to(ws, &mut id, peer).await,
            "{what} connected again after a disconnect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the daemon behind `ws` lists `peer` among its peers.
async fn connected_to(ws: &mut Ws, id: &mut u64, peer: &str) -> bool {
    *id += 1;
    send(
        ws,
        json!({"type": "request", "id": *id, "op": "peers", "args": {}}),
    )
    .await;
    let r = response(ws).await;
    // An answer that is not a list of peers fails here, not as "absent"
    // (sent with `"args": {}` this once answered bad_args, and the
    // disconnect checks built on it could not fail).
    let peers = r["result"]["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("peers answered {r}"));
    peers.iter().any(|p| p["peer_id"] == peer)
}

/// A daemon without a host reproduces by itself: `reproduce` starts children
/// of its own binary that join its network, and they die with it (even by
/// `kill -9`). Its metrics op returns libp2p's families. (REQ-REPRO-5)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_on_its_own_supervises_its_children() {
    let (dir, mut d) = daemon().await;
    let mut ws = authed(&d).await;
    send(
        &mut ws,
        json!({"type": "request", "id": 1, "op": "reproduce", "args": {"count": 2}}),
    )
    .await;
    let r = response(&mut ws).await;
    assert_eq!(r["result"]["delegated"], false, "{r}");
    let children = r["result"]["children"].as_array().unwrap().clone();
    assert_eq!(children.len(), 2);
    let mut pids = Vec::new();
    for child in &children {
        assert!(child["data_dir"]
            .as_str()
            .unwrap()
            .starts_with(&dir.path().display().to_string()));
        assert_ne!(child["peer_id"], d.peer_id().as_str());
        pids.push(child["pid"].as_i64().unwrap() as i32);
    }
    // The children join through their parent.
    let mut joined = Err(());
    for attempt in 0..300 {
        send(
            &mut ws,
            json!({"type": "request", "id": 100 + attempt, "op": "peers"}),
        )
        .await;
        let r = response(&mut ws).await;
        if r["result"]["peers"]
            .as_array()
            .is_some_and(|p| p.len() >= 2)
        {
            joined = Ok(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(joined.is_ok(), "children did not connect");

    // Bad counts are refused; limits hold.
    send(
        &mut ws,
        json!({"type": "request", "id": 3, "op": "reproduce", "args": {"count": 0}}),
    )
    .await;
    let r = response(&mut ws).await;
    assert_eq!(r["error"]["code"], "bad_args", "{r}");

    send(
        &mut ws,
        json!({"type": "request", "id": 4, "op": "metrics"}),
    )
    .await;
    let r = response(&mut ws).await;
    let text = r["result"]["text"].as_str().unwrap();
    assert!(text.contains("libp2p_swarm_connections"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));

    // The parent dies hard: its children follow.
    let parent = d.child.id().unwrap() as i32;
    hive_tests::signal(parent, libc::SIGKILL);
    let _ = d.child.wait().await;
    let gone = hive_tests::wait_for("children to exit with their parent", || async {
        pids.iter()
            .all(|p| !hive_tests::pid_alive(*p))
            .then_some(())
    })
    .await;
    assert!(gone.is_ok(), "a child outlived its parent");
}
