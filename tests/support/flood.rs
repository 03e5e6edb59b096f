//! A peer publishing as fast as its daemon accepts: a bare `hive-p2pd`'s
//! IPC, `in_flight` requests at a time, the fastest client a node can meet.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::IpcWs;

/// One request and its answer, on a connection with nothing else in flight.
pub async fn ask(ws: &mut IpcWs, op: &str, args: Value) -> Result<Value> {
    let req = json!({"type": "request", "id": 0, "op": op, "args": args});
    ws.send(Message::text(req.to_string())).await?;
    loop {
        let msg = ws.next().await.context("the daemon's IPC closed")??;
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str())?;
        if v["type"] == "response" {
            return Ok(v);
        }
    }
}

/// Until the daemon's gossipsub knows a peer in `topic` (no dial, no
/// publish: what a publisher's own node tells it).
pub async fn wait_topic_peer(ws: &mut IpcWs, topic: &str) -> Result<()> {
    let deadline = std::time::Instant::now() + crate::DEADLINE;
    loop {
        let v = ask(ws, "topic_peers", json!({"topic": topic})).await?;
        if v["result"]["peers"].as_array().map_or(0, Vec::len) > 0 {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("the daemon never saw a peer in {topic}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a flood did.
pub struct Flooded {
    pub sent: usize,
    /// Payloads the daemon acknowledged.
    pub acked: HashSet<String>,
    pub refused: usize,
}

/// Publish `payload(n)` for n = 0, 1, … as fast as the daemon answers,
/// `in_flight` at a time, until it acknowledged `acked` (a full gossipsub
/// queue refuses some) or `max_sent` were sent.
pub async fn publish_flood(
    ws: IpcWs,
    topic: &str,
    acked: usize,
    max_sent: usize,
    in_flight: usize,
    payload: fn(usize) -> String,
) -> Result<Flooded> {
    let (mut sink, mut stream) = ws.split();
    let window = Arc::new(Semaphore::new(in_flight));
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
            let msg = stream.next().await.context("the IPC closed mid-flood")??;
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(t.as_str())?;
            if v["type"] != "response" {
                continue;
            }
            let Some(n) = v["id"].as_u64().filter(|&n| n != u64::MAX) else {
                continue; // the wake-up
            };
            if v["result"].is_object() {
                acked.insert(payload(n as usize));
                reader_acked.fetch_add(1, Ordering::AcqRel);
            } else {
                refused += 1;
                let code = v["error"]["code"].as_str().unwrap_or("?").to_owned();
                *errors.entry(code).or_default() += 1;
            }
            reader_window.add_permits(1);
        }
        if refused > 0 {
            println!("publishes refused by the flooding daemon, by code: {errors:?}");
        }
        anyhow::Ok((acked, refused))
    });
    let engine = base64::engine::general_purpose::STANDARD;
    let mut n = 0;
    while acked_n.load(Ordering::Acquire) < acked && n < max_sent {
        window.acquire().await?.forget();
        let req = json!({"type": "request", "id": n, "op": "publish",
            "args": {"topic": topic, "data": engine.encode(payload(n))}});
        sink.feed(Message::text(req.to_string())).await?;
        n += 1;
        if window.available_permits() == 0 {
            sink.flush().await?;
        }
    }
    sink.flush().await?;
    sent_n.store(n, Ordering::Release);
    // Wake the reader should every answer be in already.
    let v = json!({"type": "request", "id": u64::MAX, "op": "status"});
    sink.send(Message::text(v.to_string())).await?;
    let (acked, refused) = reader.await??;
    Ok(Flooded {
        sent: n,
        acked,
        refused,
    })
}
