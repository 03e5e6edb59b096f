//! Peers cannot fill a node (issue 14, REQ-SEC-PEER-1): a bare `hive-p2pd`
//! A sends direct messages of 64 KiB to host B as fast as B's daemon
//! answers, 32 in flight, for `FLOOD` (20 s, as issue 14 asks). Meanwhile
//! host C sends B `HONEST` small
//! direct messages through its API. Checked:
//!
//! - A got `rate_limited` errors (refusals, never silence), and B counts
//!   them in `/metrics` and τ;
//! - B's stored bytes never exceed its budget (`/api/status` during the
//!   flood, and the rows in `/api/messages` after it), and what B evicted
//!   to stay within it is counted;
//! - B's API answered every status call made during the flood;
//! - every one of C's messages is stored at B.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use hive_tests::{event_bytes, metric_sample as sample, wait_for, Daemon, Host, HostOpts, IpcWs};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "peer-flood-test-token";
const FLOOD: Duration = Duration::from_secs(20);
const SIZE: usize = 64 * 1024;
const IN_FLIGHT: usize = 32;
const HONEST: usize = 20;
/// B's budget: 4 MiB per peer, 8 MiB in all.
const PEER_BUDGET: u64 = 4 << 20;
const TOTAL_BUDGET: u64 = 8 << 20;
/// B's daemon: 1 MiB and 50 messages a second per peer (bursts of 2 MiB / 50).
const B_LIMITS: [&str; 10] = [
    "--inbox-peer-bytes",
    "4194304",
    "--inbox-max-bytes",
    "8388608",
    "--direct-bytes-rate",
    "1048576",
    "--direct-rate",
    "50",
    "--direct-burst",
    "50",
];

/// Send 64 KiB direct messages to `to` for [`FLOOD`], as fast as the
/// daemon answers; returns the answers by error code (`ok` for stored).
async fn flood(ws: IpcWs, to: String) -> anyhow::Result<HashMap<String, usize>> {
    let (mut sink, mut stream) = ws.split();
    let window = Arc::new(Semaphore::new(IN_FLIGHT));
    let reader_window = window.clone();
    let (sent_tx, mut sent_rx) = tokio::sync::oneshot::channel::<usize>();
    let reader = tokio::spawn(async move {
        let mut codes: HashMap<String, usize> = HashMap::new();
        let mut answered = 0;
        let mut sent = None;
        while sent.is_none_or(|n| answered < n) {
            let msg = tokio::select! {
                n = &mut sent_rx, if sent.is_none() => { sent = n.ok(); continue }
                msg = stream.next() => msg,
            };
            let Some(Ok(Message::Text(t))) = msg else {
                if msg.is_none() {
                    break;
                }
                continue;
            };
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            if v["type"] != "response" {
                continue;
            }
            answered += 1;
            let code = match v["error"]["code"].as_str() {
                Some(code) => code.to_owned(),
                None => "ok".to_owned(),
            };
            *codes.entry(code).or_default() += 1;
            reader_window.add_permits(1);
        }
        codes
    });
    let data = base64::engine::general_purpose::STANDARD.encode(vec![7u8; SIZE]);
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < FLOOD {
        window.acquire().await?.forget();
        let req = json!({"type": "request", "id": n, "op": "send",
            "args": {"peer_id": to, "data": data, "id": format!("flood-{n}")}});
        sink.send(Message::text(req.to_string())).await?;
        n += 1;
    }
    let _ = sent_tx.send(n);
    Ok(reader.await?)
}

/// Payload bytes B stores per sender, from `/api/messages`.
async fn stored_by_peer(b: &Host) -> anyhow::Result<HashMap<String, (u64, Vec<Vec<u8>>)>> {
    let mut by_peer: HashMap<String, (u64, Vec<Vec<u8>>)> = HashMap::new();
    let mut after = 0u64;
    loop {
        let page = b
            .get(&format!(
                "/api/messages?kind=direct&after={after}&limit=100"
            ))
            .await?;
        let rows = page["messages"].as_array().cloned().unwrap_or_default();
        for row in &rows {
            let data = event_bytes(row)?;
            let entry = by_peer
                .entry(row["from"].as_str().unwrap_or_default().to_owned())
                .or_default();
            entry.0 += data.len() as u64;
            entry.1.push(data);
        }
        after = page["cursor"].as_u64().unwrap_or(after);
        if rows.len() < 100 {
            return Ok(by_peer);
        }
    }
}

/// Status calls to B every 100 ms until `stop`: (calls, failures, most
/// stored bytes seen).
async fn watch_status(b: &Host, stop: &tokio::sync::Notify) -> (usize, usize, u64) {
    let (mut calls, mut failures, mut most) = (0, 0, 0);
    loop {
        calls += 1;
        match b.status().await {
            Ok(st) => {
                let bytes = st["peer_limits"]["stored_bytes"].as_u64().unwrap_or(0);
                most = most.max(bytes);
            }
            Err(_) => failures += 1,
        }
        tokio::select! {
            _ = stop.notified() => return (calls, failures, most),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_refused_and_bounded_while_others_get_through() -> anyhow::Result<()> {
    let b = Host::start(HostOpts {
        extra_args: B_LIMITS.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await?;
    b.wait_healthy().await?;
    let b_addr = b.first_listen_addr().await?;
    let b_id = b.peer_id().await?;
    let c = Host::start(HostOpts {
        bootstrap: vec![b_addr.clone()],
        ..Default::default()
    })
    .await?;
    c.wait_healthy().await?;
    let dir = tempfile::tempdir()?;
    let a = Daemon::start(dir.path(), TOKEN, &["--bootstrap", &b_addr]).await?;
    let ws = a.ipc().await?;

    let stop = tokio::sync::Notify::new();
    let honest = async {
        // The API accepts them into C's outbox; C's daemon delivers them.
        for i in 0..HONEST {
            let body = format!("honest {i}").into_bytes();
            c.post(&format!("/api/peers/{b_id}/send?wait=0"), body)
                .await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(())
    };
    let flooded = async {
        let codes = flood(ws, b_id.clone()).await;
        stop.notify_one();
        codes
    };
    let (codes, honest, (calls, failures, most)) =
        tokio::join!(flooded, honest, watch_status(&b, &stop));
    let codes = codes?;
    honest?;
    println!(
        "peer flood: A's answers by code {codes:?}; B's status: {calls} calls, \
         {failures} failed, most stored {most} bytes"
    );
    let refused = codes.get("rate_limited").copied().unwrap_or(0);
    assert!(refused > 0, "A was never refused: {codes:?}");
    assert!(codes.get("ok").copied().unwrap_or(0) > 0, "{codes:?}");
    assert_eq!(
        failures, 0,
        "B's API failed {failures} of {calls} status calls"
    );
    assert!(most <= TOTAL_BUDGET, "B stored {most} bytes");

    // Every one of C's messages arrives, the flood notwithstanding.
    let a_id = a.peer_id();
    let c_id = c.peer_id().await?;
    let by_peer = wait_for("all of C's messages at B", || async {
        let by_peer = stored_by_peer(&b).await.ok()?;
        let got = by_peer.get(&c_id).map_or(0, |(_, rows)| rows.len());
        (got == HONEST).then_some(by_peer)
    })
    .await?;
    let (a_bytes, _) = by_peer.get(&a_id).cloned().unwrap_or_default();
    let all: u64 = by_peer.values().map(|(n, _)| n).sum();
    assert!(a_bytes <= PEER_BUDGET, "A has {a_bytes} bytes stored at B");
    assert!(all <= TOTAL_BUDGET, "B stores {all} bytes");

    // Counted: the daemon's refusals (read by B's health checks), the
    // evictions, and τ.
    let metrics_url = b.url("/metrics");
    let metrics = wait_for("B's /metrics to count A's refusals", || async {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        let n = sample(
            &text,
            "hive_peer_refusals_total{reason=\"direct_rate_limited\"}",
        )?;
        (n >= refused as f64).then_some(text)
    })
    .await?;
    let evicted = sample(
        &metrics,
        "hive_peer_refusals_total{reason=\"inbox_peer_budget\"}",
    );
    println!(
        "peer flood: B stores {a_bytes} bytes of A's ({all} in all), \
         evicted {evicted:?} of A's messages"
    );
    assert!(evicted.is_some_and(|n| n > 0.0), "{metrics}");
    let status = b.status().await?;
    let signal = status["signals"]["peer_refusals"].as_f64().unwrap_or(0.0);
    assert!(signal > 0.0, "τ does not show the refusals: {status}");
    assert!(
        status["peer_limits"]["direct_rate_limited"].as_u64() >= Some(refused as u64),
        "{status}"
    );
    Ok(())
}
