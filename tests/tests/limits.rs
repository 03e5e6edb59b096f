//! Documented limits, pushed on the way a hurried client would (audit row
//! 44): all at once, not one polite request after another.
//!
//! - `--max-outbox N`: a host with no peers (nothing leaves its outbox)
//!   admits exactly N of 60 concurrent publishes; every other one gets 503
//!   with `Retry-After: 1` and the error code `overloaded`. (Before, the
//!   bound was checked against the committed rows only, and the requests of
//!   one group commit all passed it: 60 of 60 admitted, twice in two runs.)
//! - The IPC's 1,024 requests in flight per connection: 1,100 dials that
//!   cannot finish (to a port that accepts TCP and never speaks), pipelined
//!   on one connection, and a `status` after them: exactly the 77 past the
//!   bound get `busy`, at once (long before any dial could end), in order.

use std::collections::HashMap;

use futures::{SinkExt, StreamExt};
use hive_tests::{Daemon, Host, HostOpts};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const MAX_OUTBOX: usize = 10;
const CONCURRENT: usize = 60;
const IN_FLIGHT_LIMIT: usize = 1024;
const DIALS: usize = 1100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_admits_exactly_its_bound_and_answers_503_with_retry_after(
) -> anyhow::Result<()> {
    let host = Host::start(HostOpts {
        // fsync: each commit takes a while, as on a slow disk, so many
        // publishes are in one.
        extra_args: vec![
            "--max-outbox".into(),
            MAX_OUTBOX.to_string(),
            "--durability".into(),
            "fsync".into(),
        ],
        ..Default::default()
    })
    .await?;
    host.wait_healthy().await?;
    let client = reqwest::Client::new();
    // One open connection per request first, so that the publishes arrive
    // together rather than one connection set-up apart.
    let health = host.url("/healthz");
    futures::future::join_all((0..CONCURRENT).map(|_| client.get(&health).send())).await;
    let url = host.url("/api/topics/nobody-here/publish");
    let answers = futures::future::join_all((0..CONCURRENT).map(|i| {
        let request = client.post(&url).body(format!("queued {i}"));
        async move {
            let r = request.send().await?;
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = r.json().await?;
            anyhow::Ok((status, retry, body))
        }
    }))
    .await;
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for answer in answers {
        let (status, retry, body) = answer?;
        *by_status.entry(status).or_default() += 1;
        match status {
            200 => {}
            503 => {
                assert_eq!(retry.as_deref(), Some("1"), "{body}");
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
            }
            other => anyhow::bail!("publish answered {other}: {body}"),
        }
    }
    println!("{CONCURRENT} concurrent publishes, --max-outbox {MAX_OUTBOX}: {by_status:?}");
    assert_eq!(by_status.get(&200), Some(&MAX_OUTBOX), "{by_status:?}");
    let outbox = host.get("/api/outbox").await?;
    assert_eq!(
        outbox["depth"].as_u64(),
        Some(MAX_OUTBOX as u64),
        "{outbox}"
    );
    // And the host still takes requests that need no room.
    assert!(host.status().await?["peer_id"].is_string());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_1024_requests_in_flight_the_ipc_answers_busy_at_once() -> anyhow::Result<()> {
    // Accepts TCP (the kernel's backlog) and never speaks: a dial there
    // waits for its handshake until the dial timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port();
    let dir = tempfile::tempdir()?;
    let d = Daemon::start(dir.path(), "limits-token", &[]).await?;
    let ws = d.ipc().await?;
    let (mut sink, mut stream) = ws.split();
    let nobody = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    for n in 0..DIALS {
        let req = json!({"type": "request", "id": n, "op": "dial",
            "args": {"addr": format!("/ip4/127.0.0.1/tcp/{port}/p2p/{nobody}")}});
        sink.feed(Message::text(req.to_string())).await?;
    }
    let status = json!({"type": "request", "id": DIALS, "op": "status"});
    sink.feed(Message::text(status.to_string())).await?;
    sink.flush().await?;
    // The busy answers and the status come long before any dial ends.
    let mut busy = Vec::new();
    let mut answered_status = false;
    while !answered_status {
        let msg = tokio::time::timeout(hive_tests::DEADLINE, stream.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the IPC closed"))??;
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str())?;
        if v["type"] != "response" {
            continue;
        }
        let id = v["id"].as_u64().unwrap_or(u64::MAX) as usize;
        if id == DIALS {
            // Past the bound like the last dials: answered at once too.
            answered_status = true;
        }
        assert_eq!(
            v["error"]["code"], "busy",
            "a request that cannot finish ended: {v}"
        );
        busy.push(id);
    }
    println!("{DIALS} dials pipelined: {} answered busy", busy.len());
    // Exactly the requests past the bound (the status among them), in order.
    assert_eq!(busy, (IN_FLIGHT_LIMIT..=DIALS).collect::<Vec<_>>());
    drop(silent);
    Ok(())
}
