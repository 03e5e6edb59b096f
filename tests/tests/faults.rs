//! Nothing lost under faults, with real processes: host A publishes 10,000
//! messages as fast as its API accepts them and direct-sends 1,000 to host B,
//! while the test `kill -9`s A's daemon five times and `kill -9`s host A
//! once, restarting it on the same data directory. B's subscriber, resuming
//! from its cursor whenever its stream closes, must end with every message
//! exactly once. (REQ-LOSS-1)

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hive_tests::{event_bytes, signal, wait_for, Host, HostOpts};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const TOPIC: &str = "faults";
const PUBLISHES: usize = 10_000;
const DIRECTS: usize = 1_000;
/// After how many accepted publishes each fault strikes.
const DAEMON_KILLS_AT: [usize; 5] = [1_000, 2_500, 4_000, 5_500, 8_500];
const HOST_KILL_AT: usize = 7_000;

/// Everything B's subscriber saw: payload -> how many times, plus the cursor.
#[derive(Default)]
struct Seen {
    counts: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    cursor: u64,
    reconnects: usize,
}

/// B's subscriber: follows `/api/events`, reconnecting with `?after=` when
/// the stream ends, as a real client would.
async fn subscriber(api: String, seen: Arc<Mutex<Seen>>, stop: Arc<tokio::sync::Notify>) {
    loop {
        let after = seen.lock().unwrap().cursor;
        let url = format!("{}/api/events?after={after}", api.replacen("http", "ws", 1));
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(&url).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            let msg = tokio::select! {
                _ = stop.notified() => return,
                msg = ws.next() => msg,
            };
            let Some(Ok(msg)) = msg else { break };
            let Message::Text(text) = msg else {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let Ok(ev) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let kind = ev["type"].as_str().unwrap_or("");
            if kind != "message" && kind != "direct" {
                continue;
            }
            let payload =
                String::from_utf8(event_bytes(&ev).unwrap_or_default()).unwrap_or_default();
            let mut s = seen.lock().unwrap();
            *s.counts.entry(payload).or_default() += 1;
            *s.by_id
                .entry(format!("{kind}/{}", ev["id"].as_str().unwrap_or("")))
                .or_default() += 1;
            if let Some(c) = ev["cursor"].as_u64() {
                s.cursor = s.cursor.max(c);
            }
        }
        seen.lock().unwrap().reconnects += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// POST until the host accepts (it may be restarting); returns the id. The
/// idempotency key makes the retry of a request whose answer was lost (the
/// host died mid-request) harmless.
async fn accept(
    client: &reqwest::Client,
    api: &Mutex<String>,
    path: &str,
    key: &str,
    body: Vec<u8>,
) -> String {
    loop {
        let url = format!("{}{path}", api.lock().unwrap().clone());
        let request = client
            .post(&url)
            .header("Idempotency-Key", key)
            .body(body.clone());
        if let Ok(r) = request.send().await {
            if r.status().is_success() {
                if let Ok(v) = r.json::<Value>().await {
                    if let Some(id) = v["id"].as_str() {
                        return id.to_string();
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn kill_daemon_and_wait(host: &Host) -> anyhow::Result<()> {
    let old = wait_for("a running daemon to kill", || async {
        let st = host.status().await.ok()?;
        (st["daemon"]["state"] == "running")
            .then(|| st["daemon"]["pid"].as_i64())
            .flatten()
    })
    .await? as i32;
    signal(old, libc::SIGKILL);
    wait_for("daemon restarted after kill -9", || async {
        let st = host.status().await.ok()?;
        let pid = st["daemon"]["pid"].as_i64()? as i32;
        (st["daemon"]["state"] == "running" && pid != old).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_through_daemon_and_host_crashes() -> anyhow::Result<()> {
    // A on `/ip4/127.0.0.1/tcp/0`, the default shape: a restarted daemon
    // (and A's successor host) bind the port A had again by themselves, and
    // dial the peers they knew; nobody here dials.
    let a_opts = HostOpts {
        listen: vec!["/ip4/127.0.0.1/tcp/0".to_owned()],
        ..Default::default()
    };
    let mut a = Host::start(a_opts.clone()).await?;
    a.wait_healthy().await?;
    let b = Host::start(HostOpts {
        bootstrap: vec![a.first_listen_addr().await?],
        ..Default::default()
    })
    .await?;
    b.wait_healthy().await?;
    let b_peer = b.peer_id().await?;
    b.subscribe(TOPIC).await?;
    a.subscribe(TOPIC).await?;
    a.wait_topic_peers(TOPIC, 1).await?;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(tokio::sync::Notify::new());
    let sub = tokio::spawn(subscriber(b.api.clone(), seen.clone(), stop.clone()));

    let client = reqwest::Client::new();
    let a_api = Arc::new(Mutex::new(a.api.clone()));

    // Direct messages in parallel with the publishes.
    let directs = {
        let client = client.clone();
        let a_api = a_api.clone();
        let path = format!("/api/peers/{b_peer}/send");
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..DIRECTS {
                let key = format!("d-{i}");
                ids.push(accept(&client, &a_api, &path, &key, key.clone().into_bytes()).await);
            }
            ids
        })
    };

    let publish_path = format!("/api/topics/{TOPIC}/publish");
    let mut published = BTreeSet::new();
    for i in 0..PUBLISHES {
        let key = format!("m-{i}");
        let id = accept(
            &client,
            &a_api,
            &publish_path,
            &key,
            key.clone().into_bytes(),
        )
        .await;
        assert!(published.insert(id), "publish {i} got a repeated id");
        if DAEMON_KILLS_AT.contains(&(i + 1)) {
            kill_daemon_and_wait(&a).await?;
        }
        if i + 1 == HOST_KILL_AT {
            a.kill9();
            let _ = a.child.wait().await;
            let data = std::mem::replace(&mut a.data_dir, tempfile::TempDir::new()?);
            drop(a);
            a = Host::start_in(a_opts.clone(), data).await?;
            a.wait_healthy().await?;
            *a_api.lock().unwrap() = a.api.clone();
        }
    }
    let direct_ids = directs.await?;
    assert_eq!(direct_ids.len(), DIRECTS);

    // Wait for everything to arrive (a hang guard, not a speed claim).
    let expected: BTreeSet<String> = (0..PUBLISHES)
        .map(|i| format!("m-{i}"))
        .chain((0..DIRECTS).map(|i| format!("d-{i}")))
        .collect();
    let _ = tokio::time::timeout(Duration::from_secs(240), async {
        loop {
            if seen.lock().unwrap().counts.len() >= expected.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    // Duplicates would arrive after the originals: give them a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.notify_waiters();
    sub.abort();

    let s = seen.lock().unwrap();
    let received: BTreeSet<String> = s.counts.keys().cloned().collect();
    let lost: Vec<&String> = expected.difference(&received).collect();
    let duplicates: usize = s.counts.values().map(|n| n.saturating_sub(1)).sum();
    let id_duplicates: usize = s.by_id.values().map(|n| n.saturating_sub(1)).sum();
    let unexpected: Vec<&String> = received.difference(&expected).collect();
    println!(
        "faults: sent {} (publish {PUBLISHES}, direct {DIRECTS}) / received {} / duplicates {} / lost {} / stream reconnects {}",
        expected.len(),
        received.len(),
        duplicates,
        lost.len(),
        s.reconnects
    );
    assert!(
        lost.is_empty(),
        "lost {}: first {:?}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );
    assert_eq!(duplicates, 0, "duplicated payloads");
    assert_eq!(id_duplicates, 0, "duplicated ids");
    assert!(unexpected.is_empty(), "unexpected payloads {unexpected:?}");
    Ok(())
}
