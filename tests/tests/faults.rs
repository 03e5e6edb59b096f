//! Nothing lost under faults on both sides, with real processes. Hosts A, B
//! and C share a topic (B and C bootstrapped from A, every node on
//! `/ip4/127.0.0.1/tcp/0`). A publishes 10,000 messages as fast as its API
//! accepts them and direct-sends 1,000 to B, straight through every fault:
//! the test `kill -9`s A's daemon three times and host A once (the sender),
//! and B's daemon twice and host B once (the receiver), restarting each host
//! on its data directory as a supervisor would. Nobody dials. B's and C's
//! subscribers, resuming from their cursors whenever a stream closes, must
//! end with every message exactly once: B every publish and every direct
//! message, C every publish. (REQ-LOSS-1, audit rows 7, 22, 23)

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hive_tests::{event_bytes, signal, Host, HostOpts};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const TOPIC: &str = "faults";
const PUBLISHES: usize = 10_000;
const DIRECTS: usize = 1_000;
/// After how many accepted publishes each fault strikes. The receiver's
/// last faults come after the sender's last: a sender's restart sends its
/// last seconds of publishes again (the crash window), which would also
/// cover a receiver that happened to be down then; after it, only the
/// receiver's own repair (its daemon catching up from its peers, its host
/// from its daemon) can fill B's gaps.
const A_DAEMON_KILLS_AT: [usize; 3] = [1_000, 3_000, 5_000];
const A_HOST_KILL_AT: usize = 4_000;
const B_DAEMON_KILLS_AT: [usize; 2] = [2_500, 7_000];
const B_HOST_KILL_AT: usize = 8_500;
/// How long one request may go on failing because its host is down (a
/// hang guard: restarts take well under a second).
const HOST_DOWN_LIMIT: Duration = Duration::from_secs(120);

/// Everything one subscriber saw: payload -> how many times, plus the cursor.
#[derive(Default)]
struct Seen {
    counts: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    cursor: u64,
    reconnects: usize,
}

/// A host's API address, replaced when the host is restarted.
type Api = Arc<Mutex<String>>;

fn api_of(api: &Api) -> String {
    api.lock().unwrap().clone()
}

/// A subscriber: follows `/api/events`, reconnecting with `?after=` when the
/// stream ends (its host may have been killed), as a real client would.
async fn subscriber(api: Api, seen: Arc<Mutex<Seen>>, stop: Arc<tokio::sync::Notify>) {
    loop {
        let after = seen.lock().unwrap().cursor;
        let url = format!(
            "{}/api/events?after={after}",
            api_of(&api).replacen("http", "ws", 1)
        );
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
            count(&seen, &ev);
        }
        seen.lock().unwrap().reconnects += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(seen: &Mutex<Seen>, ev: &Value) {
    let kind = ev["type"].as_str().unwrap_or("");
    if kind != "message" && kind != "direct" {
        return;
    }
    let payload = String::from_utf8(event_bytes(ev).unwrap_or_default()).unwrap_or_default();
    let mut s = seen.lock().unwrap();
    *s.counts.entry(payload).or_default() += 1;
    *s.by_id
        .entry(format!("{kind}/{}", ev["id"].as_str().unwrap_or("")))
        .or_default() += 1;
    if let Some(c) = ev["cursor"].as_u64() {
        s.cursor = s.cursor.max(c);
    }
}

/// POST until the host accepts; returns the id. Only what a client is meant
/// to retry is retried: no answer at all (the host is down: it is being
/// restarted) and 503 with its `Retry-After`. Any other answer fails the
/// test. The idempotency key makes the retry of a request whose answer was
/// lost (the host died mid-request) harmless.
async fn accept(
    client: &reqwest::Client,
    api: &Api,
    path: &str,
    key: &str,
    body: Vec<u8>,
) -> String {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < HOST_DOWN_LIMIT,
            "POST {path} ({key}) got no answer for {HOST_DOWN_LIMIT:?}"
        );
        let request = client
            .post(format!("{}{path}", api_of(api)))
            .header("Idempotency-Key", key)
            .body(body.clone());
        let response = match request.send().await {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let status = response.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            let wait = retry_after(&response).unwrap_or(Duration::from_secs(1));
            tokio::time::sleep(wait).await;
            continue;
        }
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path} ({key}): {status} {text}");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST {path} ({key}): not JSON ({e}): {text}"));
        return v["id"]
            .as_str()
            .unwrap_or_else(|| panic!("POST {path} ({key}): no id in {text}"))
            .to_string();
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let secs = response.headers().get("retry-after")?.to_str().ok()?;
    Some(Duration::from_secs(secs.trim().parse().ok()?))
}

/// `kill -9` the host's daemon and go on at once: the host restarts it, and
/// publishes keep being accepted into its outbox meanwhile.
async fn kill_daemon(host: &Host) -> anyhow::Result<()> {
    signal(host.running_daemon_pid().await?, libc::SIGKILL);
    Ok(())
}

/// `kill -9` the host (its daemon must follow by itself) and start a new
/// one on the same data directory, as its supervisor (systemd) would.
async fn kill_and_restart(host: Host, opts: &HostOpts, api: &Api) -> anyhow::Result<Host> {
    let mut host = host;
    host.kill9();
    let _ = host.child.wait().await;
    let data = std::mem::replace(&mut host.data_dir, tempfile::TempDir::new()?);
    drop(host);
    let host = Host::start_in(opts.clone(), data).await?;
    *api.lock().unwrap() = host.api.clone();
    Ok(host)
}

/// Wait until `seen` holds every payload of `expected` (a hang guard, not a
/// speed claim).
async fn wait_all(seen: &Mutex<Seen>, expected: &BTreeSet<String>) {
    let _ = tokio::time::timeout(Duration::from_secs(300), async {
        while !expected
            .iter()
            .all(|p| seen.lock().unwrap().counts.contains_key(p))
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
}

/// Every payload of `expected` exactly once, nothing else, no id twice.
fn check(who: &str, seen: &Mutex<Seen>, expected: &BTreeSet<String>) {
    let s = seen.lock().unwrap();
    let received: BTreeSet<String> = s.counts.keys().cloned().collect();
    let lost: Vec<&String> = expected.difference(&received).collect();
    let duplicates: usize = s.counts.values().map(|n| n.saturating_sub(1)).sum();
    let id_duplicates: usize = s.by_id.values().map(|n| n.saturating_sub(1)).sum();
    let unexpected: Vec<&String> = received.difference(expected).collect();
    println!(
        "faults, {who}: expected {} / received {} / duplicates {} / lost {} / stream reconnects {}",
        expected.len(),
        received.len(),
        duplicates,
        lost.len(),
        s.reconnects
    );
    assert!(
        lost.is_empty(),
        "{who} lost {}: first {:?}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );
    assert_eq!(duplicates, 0, "{who}: duplicated payloads");
    assert_eq!(id_duplicates, 0, "{who}: duplicated ids");
    assert!(
        unexpected.is_empty(),
        "{who}: unexpected payloads {unexpected:?}"
    );
}

/// One subscriber per host API, counting what it sees.
fn follow(api: &Api, stop: &Arc<tokio::sync::Notify>) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(subscriber(api.clone(), seen.clone(), stop.clone()));
    seen
}

/// Direct messages from A to B, in parallel with the publishes.
fn send_directs(
    client: &reqwest::Client,
    a_api: &Api,
    b_peer: &str,
) -> tokio::task::JoinHandle<Vec<String>> {
    let (client, a_api) = (client.clone(), a_api.clone());
    let path = format!("/api/peers/{b_peer}/send");
    tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..DIRECTS {
            let key = format!("d-{i}");
            ids.push(accept(&client, &a_api, &path, &key, key.clone().into_bytes()).await);
        }
        ids
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_through_crashes_of_sender_and_receiver() -> anyhow::Result<()> {
    let opts = HostOpts {
        listen: vec!["/ip4/127.0.0.1/tcp/0".to_owned()],
        ..Default::default()
    };
    let mut a = Host::start(opts.clone()).await?;
    a.wait_healthy().await?;
    let peer_opts = HostOpts {
        bootstrap: vec![a.first_listen_addr().await?],
        ..opts.clone()
    };
    let mut b = Host::start(peer_opts.clone()).await?;
    let c = Host::start(peer_opts.clone()).await?;
    for h in [&b, &c] {
        h.wait_healthy().await?;
        h.subscribe(TOPIC).await?;
    }
    let b_peer = b.peer_id().await?;
    a.subscribe(TOPIC).await?;
    a.wait_topic_peers(TOPIC, 2).await?;

    let stop = Arc::new(tokio::sync::Notify::new());
    let (a_api, b_api) = (
        Arc::new(Mutex::new(a.api.clone())),
        Arc::new(Mutex::new(b.api.clone())),
    );
    let c_api = Arc::new(Mutex::new(c.api.clone()));
    let (b_seen, c_seen) = (follow(&b_api, &stop), follow(&c_api, &stop));
    let client = reqwest::Client::new();
    let directs = send_directs(&client, &a_api, &b_peer);

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
        let n = i + 1;
        if A_DAEMON_KILLS_AT.contains(&n) {
            kill_daemon(&a).await?;
        }
        if B_DAEMON_KILLS_AT.contains(&n) {
            kill_daemon(&b).await?;
        }
        if n == A_HOST_KILL_AT {
            a = kill_and_restart(a, &opts, &a_api).await?;
        }
        if n == B_HOST_KILL_AT {
            b = kill_and_restart(b, &peer_opts, &b_api).await?;
        }
    }
    assert_eq!(directs.await?.len(), DIRECTS);

    let publishes: BTreeSet<String> = (0..PUBLISHES).map(|i| format!("m-{i}")).collect();
    let mut to_b = publishes.clone();
    to_b.extend((0..DIRECTS).map(|i| format!("d-{i}")));
    wait_all(&b_seen, &to_b).await;
    wait_all(&c_seen, &publishes).await;
    // Duplicates would arrive after the originals: give them a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.notify_waiters();
    check("B (receiver, killed)", &b_seen, &to_b);
    check("C (third subscriber)", &c_seen, &publishes);
    drop((a, b, c));
    Ok(())
}
