//! Direct messages survive a network partition: two hosts in network
//! namespaces joined by a bridge; the test takes host A's link down for 10 s,
//! sends direct messages during the cut, restores the link, and expects
//! every one delivered. The namespaces are the test's own; it needs root.
//! (REQ-LOSS-3)

use std::time::Duration;

use hive_tests::netns::Lan;
use hive_tests::{wait_for, Host, HostOpts};

const MESSAGES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_sent_during_a_cut_arrive_after_it_heals() -> anyhow::Result<()> {
    assert!(
        Lan::available(),
        "this test needs root and iproute2 to build its private network namespaces"
    );
    let lan = Lan::new(2)?;
    let a = Host::start(HostOpts {
        netns: Some(lan.hosts[0].clone()),
        listen: vec![format!("/ip4/{}/tcp/4101", lan.addr(0))],
        ..Default::default()
    })
    .await?;
    let a_status = wait_for("host A running", || async {
        let st = a.cli_json(&["status"]).await.ok()?;
        (st["daemon"]["state"] == "running").then_some(st)
    })
    .await?;
    let a_addr = a_status["listen_addrs"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let b = Host::start(HostOpts {
        netns: Some(lan.hosts[1].clone()),
        listen: vec![format!("/ip4/{}/tcp/4102", lan.addr(1))],
        bootstrap: vec![a_addr],
        ..Default::default()
    })
    .await?;
    let b_peer = wait_for("host B connected to A", || async {
        let st = b.cli_json(&["status"]).await.ok()?;
        (st["daemon"]["state"] == "running" && st["peers"].as_u64()? >= 1)
            .then(|| st["peer_id"].as_str().map(str::to_owned))
            .flatten()
    })
    .await?;
    // B's event stream from before the cut: the inbox is unique by id, so
    // only the stream can show a message delivered twice (audit row 58).
    let mut events = b.events_anywhere().await?;
    // One message before the cut proves the path works.
    let before = a.cli_json(&["send", &b_peer, "before the cut"]).await?;
    assert_eq!(before["acknowledged"], true, "{before}");

    lan.set_link(0, false)?;
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        // Queued: accepted at once, not acknowledged (B is unreachable).
        let answer = a
            .cli_json(&[
                "send",
                &b_peer,
                &format!("during the cut {i}"),
                "--wait",
                "0",
            ])
            .await?;
        ids.push(answer["id"].as_str().unwrap_or_default().to_string());
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let queued = a.cli_json(&["status"]).await?;
    // Nothing crossed the cut: B has only the message from before it.
    let during = b
        .cli_json(&["messages", "--kind", "direct", "--limit", "1000"])
        .await?;
    assert_eq!(
        during["messages"].as_array().map(Vec::len),
        Some(1),
        "messages crossed a cut link: {during}"
    );
    lan.set_link(0, true)?;

    let received = wait_for("every direct message delivered after the cut", || async {
        let page = b
            .cli_json(&["messages", "--kind", "direct", "--limit", "1000"])
            .await
            .ok()?;
        let texts: Vec<String> = page["messages"]
            .as_array()?
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect();
        (texts.len() > MESSAGES).then_some(texts)
    })
    .await;
    let received = match received {
        Ok(r) => r,
        Err(e) => {
            let outbox = a.cli_json(&["status"]).await.ok();
            panic!("{e}; A's status before healing: {queued}; now: {outbox:?}");
        }
    };
    for i in 0..MESSAGES {
        let want = format!("during the cut {i}");
        assert_eq!(
            received.iter().filter(|t| **t == want).count(),
            1,
            "{want:?} not delivered exactly once"
        );
    }
    assert_eq!(ids.iter().filter(|i| i.is_empty()).count(), 0);
    let streamed = events
        .collect("direct", MESSAGES + 1, Duration::from_secs(60))
        .await;
    // Anything delivered twice would follow the originals.
    let extra = events.collect("direct", 1, Duration::from_secs(3)).await;
    let all: Vec<&serde_json::Value> = streamed.iter().chain(&extra).collect();
    let by_id = hive_tests::histogram(
        all.iter()
            .filter_map(|e| e["id"].as_str().map(str::to_owned)),
    );
    assert_eq!(
        by_id.len(),
        MESSAGES + 1,
        "direct events on B's stream: {by_id:?}"
    );
    assert!(
        by_id.values().all(|n| *n == 1),
        "a direct event twice on B's stream: {by_id:?}"
    );
    for id in &ids {
        assert!(by_id.contains_key(id), "{id} never streamed");
    }
    drop((a, b));
    drop(lan);
    Ok(())
}

/// The cut kills the connection (audit row 17): A, the sender, dialed B (B
/// has no bootstrap edge to A, so only A can bring the link back); while
/// A's link is down its TCP connections to B are killed (`ss -K`), so the
/// old connection cannot carry the queued requests once the link is back.
/// A's outbox must retry and A must dial B again by itself; every message
/// arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_survive_a_cut_that_kills_the_connection() -> anyhow::Result<()> {
    assert!(Lan::available(), "this test needs root and iproute2");
    let lan = Lan::new(2)?;
    let b = Host::start(HostOpts {
        netns: Some(lan.hosts[1].clone()),
        listen: vec![format!("/ip4/{}/tcp/4112", lan.addr(1))],
        ..Default::default()
    })
    .await?;
    let b_status = wait_for("host B running", || async {
        let st = b.cli_json(&["status"]).await.ok()?;
        (st["daemon"]["state"] == "running").then_some(st)
    })
    .await?;
    let b_addr = b_status["listen_addrs"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let b_peer = b_status["peer_id"].as_str().unwrap_or_default().to_string();
    let a = Host::start(HostOpts {
        netns: Some(lan.hosts[0].clone()),
        listen: vec![format!("/ip4/{}/tcp/4111", lan.addr(0))],
        bootstrap: vec![b_addr],
        ..Default::default()
    })
    .await?;
    let before = wait_for("A reaches B", || async {
        let r = a
            .cli_json(&["send", &b_peer, "before the cut"])
            .await
            .ok()?;
        (r["acknowledged"] == true).then_some(r)
    })
    .await?;
    assert_eq!(before["acknowledged"], true);
    let mut events = b.events_anywhere().await?;

    lan.set_link(0, false)?;
    lan.kill_connections(0, &lan.addr(1))?;
    for i in 0..MESSAGES {
        a.cli_json(&[
            "send",
            &b_peer,
            &format!("after the kill {i}"),
            "--wait",
            "0",
        ])
        .await?;
    }
    lan.set_link(0, true)?;

    let got = events
        .collect("direct", MESSAGES, Duration::from_secs(120))
        .await;
    let extra = events.collect("direct", 1, Duration::from_secs(3)).await;
    let texts = hive_tests::histogram(got.iter().chain(&extra).map(|e| {
        String::from_utf8(hive_tests::event_bytes(e).unwrap_or_default()).unwrap_or_default()
    }));
    for i in 0..MESSAGES {
        let want = format!("after the kill {i}");
        assert_eq!(
            texts.get(&want),
            Some(&1),
            "{want:?} not streamed exactly once: {texts:?}"
        );
    }
    assert_eq!(texts.len(), MESSAGES, "nothing else: {texts:?}");
    Ok(())
}
