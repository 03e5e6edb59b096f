//! `status` answered from the node's last answer (REQ-IPC-8): never behind
//! anything a client did or was told. Each check races a change against a
//! `status` that a second client keeps asking for, so a kept answer is
//! always at hand to be wrongly reused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hive_tests::{Daemon, IpcWs};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "test-token-0123456789abcdef";

async fn send(ws: &mut IpcWs, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

/// The next frame that is a response, or the next event whose kind is
/// `event` (when given).
async fn next(ws: &mut IpcWs, event: Option<&str>) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("an answer within 30 s")
            .expect("connection open")
            .expect("a frame");
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(text.as_str()).expect("JSON");
        let wanted = match event {
            Some(kind) => v["type"] == "event" && v["event"] == kind,
            None => v["type"] == "response",
        };
        if wanted {
            return v;
        }
    }
}

/// `op` and a `status` right behind it, in one write, so that the daemon
/// reads both before the node has run; the `status` answer.
async fn status_behind(ws: &mut IpcWs, id: u64, op: &str, topic: &str) -> Value {
    let first = json!({"type": "request", "id": id, "op": op, "args": {"topic": topic}});
    let second = json!({"type": "request", "id": id + 1, "op": "status"});
    ws.feed(Message::text(first.to_string()))
        .await
        .expect("send");
    ws.feed(Message::text(second.to_string()))
        .await
        .expect("send");
    ws.flush().await.expect("send");
    answer(ws, id + 1).await
}

/// Ask for `status`; answers to earlier requests on the connection that
/// come first must be successes.
async fn status(ws: &mut IpcWs, id: u64) -> Value {
    send(ws, json!({"type": "request", "id": id, "op": "status"})).await;
    answer(ws, id).await
}

/// The result of request `id`; answers to earlier requests that come first
/// must be successes.
async fn answer(ws: &mut IpcWs, id: u64) -> Value {
    loop {
        let r = next(ws, None).await;
        if r["id"] == id {
            return r["result"].clone();
        }
        assert!(r.get("error").is_none(), "{r}");
    }
}

fn topics(status: &Value) -> Vec<String> {
    serde_json::from_value(status["topics"].clone()).expect("topics")
}

/// Another client asking for `status` back to back until stopped, so that
/// the node always has a fresh answer kept.
async fn keep_asking(d: &Daemon, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let mut ws = d.ipc().await.expect("IPC");
    tokio::spawn(async move {
        let mut asked = 0;
        while !stop.load(Ordering::Relaxed) {
            status(&mut ws, asked).await;
            asked += 1;
        }
        asked
    })
}

#[tokio::test]
async fn status_is_never_behind_what_a_client_did_or_was_told() {
    let dir_a = tempfile::TempDir::new().unwrap();
    let a = Daemon::start(dir_a.path(), TOKEN, &[]).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let asker = keep_asking(&a, stop.clone()).await;
    let mut ws = a.ipc().await.unwrap();
    let mut other = a.ipc().await.unwrap();
    let mut id = 1000;

    for round in 0..50 {
        let topic = format!("t{round}");
        // Pipelined: the `status` right behind a `subscribe` on the same
        // connection sees it, and likewise for the `unsubscribe`.
        let seen = status_behind(&mut ws, id, "subscribe", &topic).await;
        assert!(topics(&seen).contains(&topic), "round {round}: {seen}");
        let seen = status_behind(&mut ws, id + 2, "unsubscribe", &topic).await;
        assert!(!topics(&seen).contains(&topic), "round {round}: {seen}");
        // Another client's change, once answered, is in everyone's status.
        send(
            &mut other,
            json!({"type": "request", "id": id, "op": "subscribe", "args": {"topic": topic}}),
        )
        .await;
        let r = next(&mut other, None).await;
        assert!(r.get("error").is_none(), "{r}");
        let seen = status(&mut ws, id + 4).await;
        assert!(topics(&seen).contains(&topic), "round {round}: {seen}");
        id += 5;
    }

    // A change from the network: once A has told a client that B
    // connected, A's status counts B.
    let before = status(&mut ws, id).await;
    assert_eq!(before["peers"], 0, "{before}");
    let dir_b = tempfile::TempDir::new().unwrap();
    let a_addr = a.ready["listen_addrs"][0].as_str().unwrap().to_string();
    let b = Daemon::start(dir_b.path(), TOKEN, &["--bootstrap", &a_addr])
        .await
        .unwrap();
    let connected = next(&mut ws, Some("peer_connected")).await;
    assert_eq!(connected["peer_id"], b.peer_id(), "{connected}");
    let after = status(&mut ws, id + 1).await;
    assert_eq!(after["peers"], 1, "told B connected, status says {after}");

    stop.store(true, Ordering::Relaxed);
    let asked = asker.await.expect("the asker");
    assert!(asked > 0, "the other client's status was never answered");
}
