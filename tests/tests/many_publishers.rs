//! Not the friendliest rate: 16 concurrent HTTP publishers on host A, 10,000
//! messages in all, three subscriber hosts B, C, D bootstrapped from A. Each
//! subscriber's stored history must hold every message exactly once, and
//! each publisher's messages in the order it published them.
//! (audit row 53, REQ-E2E-5)

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

/// Exactly once each, and each publisher's messages in its order.
fn check(who: &str, got: &[String]) {
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
    for m in got {
        let mut parts = m
            .split('-')
            .skip(1)
            .map(|n| n.parse::<usize>().unwrap_or(usize::MAX));
        let (p, i) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if let Some(prev) = last.insert(p, i) {
            assert!(
                i > prev,
                "{who}: publisher {p}'s {i} stored after its {prev}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_publishers_three_subscribers_all_once_in_order() -> anyhow::Result<()> {
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
        check(who, &got);
        println!(
            "{who}: {} stored, once each, per-publisher order kept",
            got.len()
        );
    }
    Ok(())
}
