//! A message missed while connected is repaired (issue 13, REQ-LOSS-15):
//! hosts A (the publisher), B and C share a topic, B connected to both.
//! B's daemon is stopped (SIGSTOP) while A publishes, so the gossipsub
//! queues toward B overflow and time out while its connections stay up;
//! then it runs on (SIGCONT). Nothing reconnects, so the catch-up a node
//! runs when it meets a peer never runs: only the periodic reconcile of
//! `/hive/sync/1.0.0` can bring what gossip dropped. B must end with every
//! message once, on the same daemon and the same connections, and its
//! `status.sync` must show what the reconcile found.

use std::collections::BTreeMap;
use std::time::Duration;

use hive_tests::{wait_for, Host, HostOpts};
use serde_json::Value;

const TOPIC: &str = "while-connected";
/// Enough bytes that the TCP and yamux buffers toward a stopped daemon fill
/// and gossipsub's own queues (5 s for a publish, 1 s for a forward) drop
/// the rest.
const MESSAGES: usize = 300;
const SIZE: usize = 32 * 1024;
/// How long B stays stopped once the others have every message: past
/// gossipsub's queue timeouts and its gossip window (IHAVE for the last
/// 3 heartbeats), short of B's host giving up on its daemon (3 failed
/// health checks of 5 s).
const HELD: Duration = Duration::from_secs(6);

fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("while B was stopped {i} ").into_bytes();
    p.resize(SIZE, b'.');
    p
}

/// Stored messages of `TOPIC` on `host`, by their number: count.
async fn stored(host: &Host) -> anyhow::Result<BTreeMap<usize, usize>> {
    let mut counts = BTreeMap::new();
    for text in host.stored_payloads(TOPIC).await? {
        let n = text
            .strip_prefix("while B was stopped ")
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok());
        if let Some(n) = n {
            *counts.entry(n).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

async fn three_hosts() -> anyhow::Result<(Host, Host, Host)> {
    let b = Host::start(HostOpts::default()).await?;
    b.wait_healthy().await?;
    let b_addr = b.first_listen_addr().await?;
    let a = Host::start(HostOpts {
        bootstrap: vec![b_addr.clone()],
        ..Default::default()
    })
    .await?;
    a.wait_healthy().await?;
    let c = Host::start(HostOpts {
        bootstrap: vec![b_addr, a.first_listen_addr().await?],
        ..Default::default()
    })
    .await?;
    c.wait_healthy().await?;
    for host in [&a, &b, &c] {
        host.subscribe(TOPIC).await?;
    }
    a.wait_topic_peers(TOPIC, 2).await?;
    b.wait_topic_peers(TOPIC, 2).await?;
    Ok((a, b, c))
}

/// B's peers as its daemon lists them.
async fn peer_ids(host: &Host) -> anyhow::Result<Vec<String>> {
    let peers = host.get("/api/peers").await?;
    let list = peers["peers"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<String> = list
        .iter()
        .filter_map(|p| p["peer_id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_gossip_dropped_while_connected_is_reconciled() -> anyhow::Result<()> {
    let (a, b, c) = three_hosts().await?;
    let daemon = b.daemon_pid().await?.expect("B's daemon pid");
    let peers_before = peer_ids(&b).await?;
    let mut b_events = b.events().await?;

    hive_tests::signal(daemon, libc::SIGSTOP);
    for i in 0..MESSAGES {
        a.publish(TOPIC, payload(i)).await?;
    }
    let c_has_all = wait_for("C stored every message", || async {
        (stored(&c).await.ok()?.len() == MESSAGES).then_some(())
    })
    .await;
    tokio::time::sleep(HELD).await;
    hive_tests::signal(daemon, libc::SIGCONT);
    c_has_all?;

    let got = wait_for("B has every message", || async {
        let counts = stored(&b).await.ok()?;
        (counts.len() == MESSAGES).then_some(counts)
    })
    .await;
    let counts = match got {
        Ok(counts) => counts,
        Err(e) => {
            let n = stored(&b).await?.len();
            let sync = &b.status().await?["sync"];
            anyhow::bail!("{e}: B has {n} of {MESSAGES}; B's sync: {sync}");
        }
    };
    assert!(counts.values().all(|n| *n == 1), "B stored one twice");

    // The same daemon on the same connections: no restart, no reconnect.
    assert_eq!(b.daemon_pid().await?, Some(daemon), "B's daemon restarted");
    let mut disconnects = Vec::new();
    while let Some(ev) = b_events.next_within(Duration::from_millis(200)).await {
        if ev["type"] == "peer_disconnected" {
            disconnects.push(ev);
        }
    }
    assert!(disconnects.is_empty(), "B lost a peer: {disconnects:?}");
    assert_eq!(peer_ids(&b).await?, peers_before, "B's peers changed");

    let sync: Value = b.status().await?["sync"].clone();
    let found = sync["reconciled"].as_u64().unwrap_or(0);
    assert!(found >= 1, "B's status shows no reconcile: {sync}");
    assert_eq!(sync["rejected"], 0, "honest peers: {sync}");
    wait_for("B's metrics count what the reconcile found", || async {
        (b.counter("sync_reconciled").await.ok()? >= found).then_some(())
    })
    .await?;
    println!(
        "reconcile: B has all {MESSAGES}; {found} of them came by reconcile ({} rounds)",
        sync["reconciles"]
    );
    Ok(())
}
