//! A client of `/api/events` that does not keep up (audit row 44): the host
//! never buffers for it without bound and never loses a message for it.
//!
//! - A client that stops reading while more events than the host's queue
//!   holds (16,384) flow is closed with 4008 and the documented reason,
//!   `slow consumer: reconnect with ?after=N`, N being the cursor of the last
//!   event it was sent; reconnecting with `?after=N` gives it the rest: every
//!   message host B stored reaches it exactly once over the two connections.
//! - A client that stops reading and never reads again is dropped once a
//!   frame has waited 30 s for it, and frees its slot: with
//!   `--max-ws-clients 1`, a second client gets in. (Before, its task waited
//!   on the full socket for as long as the TCP connection lived, so a page
//!   that opened the stream and never read held a slot for good.)
//!
//! The publisher is the fastest a node can meet: a bare `hive-p2pd`
//! publishing over its IPC as fast as it accepts. The slow clients connect
//! with an 8 KiB receive buffer, so the kernel holds few of their frames.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use hive_tests::flood::{publish_flood, wait_topic_peer};
use hive_tests::{event_bytes, wait_for, Daemon, Host, HostOpts};
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const TOPIC: &str = "slow-client";
const TOKEN: &str = "slow-client-token";
/// The host's event queue per client (`HOST_EVENT_CAPACITY`).
const QUEUE: u64 = 16_384;
/// Events the socket buffers may hold besides the queue (over-estimated:
/// a few MiB of send buffer at about 700 bytes a frame).
const BUFFERED: u64 = 6_000;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// 512 bytes, unique per message.
fn payload(n: usize) -> String {
    format!("slow-{n:0507}")
}

/// `/api/events` (with `query`) on a socket with a small receive buffer.
async fn slow_events(host: &Host, query: &str) -> anyhow::Result<Ws> {
    let addr: std::net::SocketAddr = host.url("").trim_start_matches("http://").parse()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(8 * 1024)?;
    let tcp = socket.connect(addr).await?;
    let url = format!("ws://{addr}/api/events{query}");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp).await?;
    Ok(ws)
}

/// Host B subscribed to TOPIC, and a bare daemon A that knows B is in it.
async fn publisher_and_host(extra: &[&str]) -> anyhow::Result<(Host, Daemon, tempfile::TempDir)> {
    let b = Host::start(HostOpts {
        extra_args: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await?;
    b.wait_healthy().await?;
    b.subscribe(TOPIC).await?;
    let b_addr = b.first_listen_addr().await?;
    let dir = tempfile::tempdir()?;
    let a = Daemon::start(dir.path(), TOKEN, &["--bootstrap", &b_addr]).await?;
    Ok((b, a, dir))
}

/// B's inbound position (the last daemon history number it stored).
async fn position(b: &Host) -> u64 {
    let st = b.status().await.unwrap_or_default();
    st["inbound"]["position"].as_u64().unwrap_or(0)
}

/// Read message payloads of TOPIC until the stream closes; returns them in
/// order, the last cursor seen and the close frame's code and reason.
async fn drain(ws: &mut Ws) -> anyhow::Result<(Vec<String>, u64, Option<(u16, String)>)> {
    let (mut got, mut cursor) = (Vec::new(), 0);
    loop {
        let next = tokio::time::timeout(hive_tests::DEADLINE, ws.next())
            .await
            .map_err(|_| anyhow::anyhow!("no frame and no close within the deadline"))?;
        match next {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str())?;
                cursor = v["cursor"].as_u64().unwrap_or(cursor);
                if v["type"] == "message" && v["topic"] == TOPIC {
                    got.push(String::from_utf8(event_bytes(&v)?)?);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                return Ok((got, cursor, close));
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return Ok((got, cursor, None)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_fell_behind_is_closed_with_4008_and_resumes_from_its_cursor(
) -> anyhow::Result<()> {
    let (b, a, _dir) = publisher_and_host(&[]).await?;
    let mut ws_a = a.ipc().await?;
    wait_topic_peer(&mut ws_a, TOPIC).await?;
    let mut slow = slow_events(&b, "").await?;
    let start = position(&b).await;

    // The client reads nothing while B stores more than the queue and the
    // socket buffers can hold, then reads again.
    let flood = tokio::spawn(publish_flood(ws_a, TOPIC, 26_000, 60_000, 512, payload));
    wait_for("B to store past the slow client's queue", || async {
        (position(&b).await >= start + QUEUE + BUFFERED).then_some(())
    })
    .await?;
    let (first, last_cursor, close) = drain(&mut slow).await?;
    let (code, reason) = close.ok_or_else(|| anyhow::anyhow!("no close frame"))?;
    println!(
        "slow client: {} messages, then close {code} {reason:?}",
        first.len()
    );
    assert_eq!(code, u16::from(CloseCode::Library(4008)), "{reason}");
    assert_eq!(
        reason,
        format!("slow consumer: reconnect with ?after={last_cursor}"),
        "the reason names the cursor of the last event sent"
    );
    let flooded = flood.await??;

    // Once B stored everything A's daemon acknowledged, the client resumes
    // from the cursor the close gave it.
    let stored = wait_for("B to store every acknowledged publish", || async {
        let stored = b.stored_payloads(TOPIC).await.ok()?;
        let have: HashSet<&String> = stored.iter().collect();
        flooded
            .acked
            .iter()
            .all(|p| have.contains(p))
            .then_some(stored)
    })
    .await?;
    let mut rest = slow_events(&b, &format!("?after={last_cursor}")).await?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for p in &first {
        *seen.entry(p.clone()).or_default() += 1;
    }
    while seen.len() < stored.len() {
        let next = tokio::time::timeout(hive_tests::DEADLINE, rest.next()).await;
        let Ok(Some(Ok(Message::Text(t)))) = next else {
            anyhow::bail!(
                "the resumed stream ended with {} of {} messages",
                seen.len(),
                stored.len()
            );
        };
        let v: Value = serde_json::from_str(t.as_str())?;
        if v["type"] == "message" && v["topic"] == TOPIC {
            *seen
                .entry(String::from_utf8(event_bytes(&v)?)?)
                .or_default() += 1;
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).take(3).collect();
    println!(
        "slow client: {} stored, {} before the close, {} after resuming",
        stored.len(),
        first.len(),
        seen.len() - first.len()
    );
    assert!(
        twice.is_empty(),
        "seen twice over the two connections: {twice:?}"
    );
    let status = b.status().await?;
    let dropped = status["signals"]["dropped_clients"].as_f64().unwrap_or(0.0);
    assert!(
        dropped > 0.0,
        "τ does not show the dropped client: {status}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_again_is_dropped_and_frees_its_slot() -> anyhow::Result<()> {
    let (b, a, _dir) = publisher_and_host(&["--max-ws-clients", "1"]).await?;
    let mut ws_a = a.ipc().await?;
    wait_topic_peer(&mut ws_a, TOPIC).await?;
    let _stuck = slow_events(&b, "").await?;
    // The only slot is taken.
    let refused = slow_events(&b, "").await;
    assert!(refused.is_err(), "a second client got in at once");
    // Enough to fill the stuck client's socket buffers, far from its queue.
    publish_flood(ws_a, TOPIC, 8_000, 20_000, 512, payload).await?;
    // The stuck client never reads; the host gives up on it and its slot
    // is free again (no timing asserted: the test waits up to its deadline).
    let started = std::time::Instant::now();
    let mut second = None;
    while started.elapsed() < Duration::from_secs(90) {
        if let Ok(ws) = slow_events(&b, "").await {
            second = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        second.is_some(),
        "the stuck client still holds the only slot after 90 s"
    );
    println!(
        "stuck client dropped; a new one got in after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
