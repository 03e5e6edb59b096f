//! Not the friendliest rate: 16 concurrent HTTP publishers on host A, 10,000
//! messages in all, three subscriber hosts B, C, D bootstrapped from A. Each
//! subscriber's stored history must hold every message exactly once.
//! (audit row 53, REQ-E2E-5)
//!
//! Order: host A hands each topic's messages to its daemon in publish order
//! (the second test: a message queued while nobody listened is not
//! overtaken by later ones), and messages that travel one path arrive in
//! that order. Gossipsub does not order across paths: when the queue
//! toward one subscriber is full, gossipsub drops the message for that peer
//! only, and it reaches it later from another peer (or the reconcile). So
//! the first test counts such late arrivals and prints them; it does not
//! fail on them (it did, under load, on every build: `D: publisher 11's 353
//! stored after its 355`, while B and C had them in order).

use std::collections::HashMap;
use std::sync::Arc;

use hive_tests::{wait_for, Host, HostOpts};

const TOPIC: &str = "many";
const PUBLISHERS: usize = 16;
const EACH: usize = 625;

/// Every stored message of `TOPIC` on `host`, in stored order.
async fn stored(host: &Host) -> anyhow::Result<Vec<String>> {
    host.stored_payloads(TOPIC).await
}

/// Exactly once each; returns how many messages came after a later one of
/// their publisher.
fn check(who: &str, got: &[String]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for m in got {
        *counts.entry(m.as_str()).or_default() += 1;
    }
    let duplicates = counts.values().filter(|n| **n > 1).count();
    assert_eq!(duplicates, 0, "{who}: messages stored twice");
    assert_eq!(
        got.len(),
        PUBLISHERS * EACH,
        "{who}: stored {} of {}",
        got.len(),
        PUBLISHERS * EACH
    );
    let mut last: HashMap<usize, usize> = HashMap::new();
    let mut late = 0;
    for m in got {
        let mut parts = m
            .split('-')
            .skip(1)
            .map(|n| n.parse::<usize>().unwrap_or(usize::MAX));
        let (p, i) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        let prev = last.entry(p).or_insert(i);
        if i < *prev {
            late += 1;
        }
        *prev = (*prev).max(i);
    }
    late
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_publishers_three_subscribers_all_once() -> anyhow::Result<()> {
    let a = Arc::new(Host::start(HostOpts::default()).await?);
    a.wait_healthy().await?;
    let a_addr = a.first_listen_addr().await?;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let h = Host::start(HostOpts {
            bootstrap: vec![a_addr.clone()],
            ..Default::default()
        })
        .await?;
        h.wait_healthy().await?;
        h.subscribe(TOPIC).await?;
        subs.push(h);
    }
    a.subscribe(TOPIC).await?;
    a.wait_topic_peers(TOPIC, 3).await?;

    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                a.publish(TOPIC, format!("m-{p}-{i}").into_bytes()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    for (who, h) in ["B", "C", "D"].iter().zip(&subs) {
        let got = wait_for("every message stored", || async {
            let got = stored(h).await.ok()?;
            (got.len() >= PUBLISHERS * EACH).then_some(got)
        })
        .await;
        let got = match got {
            Ok(g) => g,
            Err(e) => stored(h).await.map_err(|_| e)?,
        };
        let late = check(who, &got);
        println!(
            "{who}: {} stored, once each; {late} after a later one of their publisher",
            got.len()
        );
    }
    Ok(())
}

/// A user publishes before anyone listens (the messages wait in A's outbox,
/// retried with backoff), then a subscriber comes and the user publishes
/// more at once: B must get the first ones first. (Before, the later
/// messages were due at once while the first waited out their backoff, so
/// B stored them first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_while_nobody_listened_stay_ahead_of_later_ones() -> anyhow::Result<()> {
    const EARLY: usize = 5;
    const LATER: usize = 20;
    let a = Host::start(HostOpts::default()).await?;
    a.wait_healthy().await?;
    a.subscribe("queued").await?;
    for i in 0..EARLY {
        a.publish("queued", format!("m-0-{i}").into_bytes()).await?;
    }
    let b = Host::start(HostOpts {
        bootstrap: vec![a.first_listen_addr().await?],
        ..Default::default()
    })
    .await?;
    b.wait_healthy().await?;
    b.subscribe("queued").await?;
    a.wait_topic_peers("queued", 1).await?;
    for i in EARLY..EARLY + LATER {
        a.publish("queued", format!("m-0-{i}").into_bytes()).await?;
    }
    let got = wait_for("every message at B", || async {
        let got = b.stored_payloads("queued").await.ok()?;
        (got.len() >= EARLY + LATER).then_some(got)
    })
    .await?;
    let want: Vec<String> = (0..EARLY + LATER).map(|i| format!("m-0-{i}")).collect();
    assert_eq!(got, want, "B's history, in stored order");
    Ok(())
}
