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

use anyhow::Context;
use hive_tests::{wait_for, Host};
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

/// A and B, B connected to A (bootstrapped from it); with `third`, C too,
/// connected to both.
async fn hosts(third: bool) -> anyhow::Result<(Host, Host, Option<Host>)> {
    // B first: the others bootstrap from it.
    let mut hosts = hive_tests::hosts_on_topic(if third { 3 } else { 2 }, TOPIC).await?;
    let c = if third { hosts.pop() } else { None };
    let a = hosts.pop().context("no host A")?;
    let b = hosts.pop().context("no host B")?;
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
    reconciled_while_connected(true).await
}

/// Two nodes: the author is the only one that has what gossip dropped, so
/// it keeps its own messages in its history for the others to fetch (with
/// the previous binaries B ended with 8 of 300 here: A had nothing to
/// serve).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_nodes_the_author_serves_what_gossip_dropped() -> anyhow::Result<()> {
    reconciled_while_connected(false).await
}

async fn reconciled_while_connected(third: bool) -> anyhow::Result<()> {
    let (a, b, c) = hosts(third).await?;
    let daemon = b.daemon_pid().await?.expect("B's daemon pid");
    let peers_before = peer_ids(&b).await?;
    let mut b_events = b.events().await?;

    hive_tests::signal(daemon, libc::SIGSTOP);
    for i in 0..MESSAGES {
        a.publish(TOPIC, payload(i)).await?;
    }
    let all_out = wait_for("every message went out", || async {
        match &c {
            Some(c) => (stored(c).await.ok()?.len() == MESSAGES).then_some(()),
            // A's daemon took them all (B's connection is still up, so
            // gossipsub counts B as a topic peer and queues toward it).
            None => (a.counter("messages_published").await.ok()? >= MESSAGES as u64).then_some(()),
        }
    })
    .await;
    tokio::time::sleep(HELD).await;
    hive_tests::signal(daemon, libc::SIGCONT);
    all_out?;

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
    let a_id = a.peer_id().await?;
    if c.is_none() {
        assert!(
            sync["peers"].as_array().is_some_and(|p| p
                .iter()
                .any(|p| p["peer_id"] == a_id.as_str() && p["fetched"].as_u64() > Some(0))),
            "the author served them: {sync}"
        );
    }
    println!(
        "reconcile ({} nodes): B has all {MESSAGES}; {found} of them came by reconcile ({} rounds)",
        if third { 3 } else { 2 },
        sync["reconciles"]
    );
    Ok(())
}
