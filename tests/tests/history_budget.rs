//! The daemon's history has a byte budget (issue 14, REQ-SEC-8): a
//! peer that sends large valid messages cannot fill the disk through
//! `history.db`, whose age and per-topic count limits alone would let it.
//!
//! Host B runs with `hive up --history-max-bytes 1 MiB` (the smallest the
//! host allows: one largest message), which it passes to its daemon. A bare
//! `hive-p2pd` A sends B `FLOOD` direct messages of 64 KiB (3 MiB, all
//! accepted: below B's default rates), each acknowledged only once B's
//! daemon has written it. Checked:
//!
//! - B's daemon status (relayed verbatim by `/api/status`) holds at most the
//!   budget and counts the evictions: at least all but the 16 newest
//!   messages that fit;
//! - the host mirrors them: `peer_limits.daemon_history`, `/metrics`
//!   (`hive_peer_refusals_total{reason="history_budget"}`,
//!   `hive_daemon_history_bytes`) and τ;
//! - B's daemon is the same process (no crash, no restart), still receives
//!   (a message sent after the flood is stored by B's host), and B's host,
//!   which stored every message live, lost none.

use futures::{SinkExt, StreamExt};
use hive_tests::{event_bytes, metric_sample as sample, wait_for, Daemon, Host, HostOpts, IpcWs};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "history-budget-test-token";
const BUDGET: u64 = 1 << 20;
const SIZE: usize = 64 * 1024;
const FLOOD: usize = 48;

/// Send one direct message through A's daemon and wait for its answer
/// (B's acknowledgement: the message is in B's history).
async fn send(ws: &mut IpcWs, n: usize, to: &str, data: &[u8]) -> anyhow::Result<()> {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(data);
    let req = json!({"type": "request", "id": n, "op": "send",
        "args": {"peer_id": to, "data": data, "id": format!("big-{n}")}});
    ws.send(Message::text(req.to_string())).await?;
    while let Some(msg) = ws.next().await {
        let Message::Text(t) = msg? else { continue };
        let v: Value = serde_json::from_str(t.as_str())?;
        if v["type"] == "response" && v["id"] == n {
            anyhow::ensure!(v["error"].is_null(), "send {n} refused: {v}");
            return Ok(());
        }
    }
    anyhow::bail!("A's daemon closed the IPC")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_more_than_the_budget_only_evicts_the_oldest() -> anyhow::Result<()> {
    let b = Host::start(HostOpts {
        extra_args: vec!["--history-max-bytes".into(), BUDGET.to_string()],
        ..Default::default()
    })
    .await?;
    b.wait_healthy().await?;
    let b_addr = b.first_listen_addr().await?;
    let b_id = b.peer_id().await?;
    let b_daemon = b.daemon_pid().await?;
    let dir = tempfile::tempdir()?;
    let a = Daemon::start(dir.path(), TOKEN, &["--bootstrap", &b_addr]).await?;
    let mut ws = a.ipc().await?;

    for n in 0..FLOOD {
        send(&mut ws, n, &b_id, &vec![n as u8; SIZE]).await?;
    }
    // Still receiving once over the budget.
    send(&mut ws, FLOOD, &b_id, b"after the flood").await?;

    // Each entry counts its payload and its sender and id: 16 of 64 KiB
    // would already be over 1 MiB, so at most 15 of the flood are kept.
    let least_evicted = (FLOOD - 15) as u64;
    let status = wait_for("B's status to show the evictions", || async {
        let st = b.status().await.ok()?;
        let mirrored = st["peer_limits"]["daemon_history"]["evicted"].as_u64()?;
        (mirrored >= least_evicted).then_some(st)
    })
    .await?;
    let history = &status["history"];
    println!("history budget: B's daemon status {history}");
    let bytes = history["bytes"].as_u64().unwrap_or(u64::MAX);
    let evicted = history["evicted"].as_u64().unwrap_or(0);
    assert_eq!(history["max_bytes"].as_u64(), Some(BUDGET), "{status}");
    assert!(bytes <= BUDGET, "B's history keeps {bytes} bytes: {status}");
    // Only as many as needed went: what is kept and what was evicted make
    // up all that was sent, and the kept part is within one message of the
    // budget.
    assert!(bytes + SIZE as u64 + 100 > BUDGET, "{status}");
    assert!(
        (least_evicted..=FLOOD as u64).contains(&evicted),
        "{status}"
    );
    assert!(
        history["evicted_bytes"].as_u64() >= Some(evicted * SIZE as u64),
        "{status}"
    );
    assert_eq!(b.daemon_pid().await?, b_daemon, "B's daemon was restarted");
    assert_eq!(status["inbound"]["lost"].as_u64(), Some(0), "{status}");

    // B's host stored the message sent after the flood.
    let a_id = a.peer_id();
    wait_for("the message after the flood at B", || async {
        let page = b
            .get("/api/messages?kind=direct&after=0&limit=100")
            .await
            .ok()?;
        let rows = page["messages"].as_array()?.clone();
        rows.iter()
            .any(|r| {
                r["from"] == a_id.as_str() && event_bytes(r).is_ok_and(|d| d == b"after the flood")
            })
            .then_some(())
    })
    .await?;

    // Mirrored into /metrics and τ.
    let text = reqwest::get(b.url("/metrics")).await?.text().await?;
    let counted = sample(&text, "hive_peer_refusals_total{reason=\"history_budget\"}");
    let gauge = sample(&text, "hive_daemon_history_bytes");
    println!("history budget: /metrics evicted {counted:?}, bytes {gauge:?}");
    assert!(counted >= Some(least_evicted as f64), "{text}");
    assert!(gauge.is_some_and(|g| g <= BUDGET as f64), "{text}");
    let signal = status["signals"]["peer_refusals"].as_f64().unwrap_or(0.0);
    assert!(signal > 0.0, "τ does not show the evictions: {status}");
    Ok(())
}
