//! Two hosts on loopback, the second bootstrapped from the first: pubsub
//! delivery with nothing lost or duplicated, and a direct message that arrives
//! with its exact bytes. (REQ-E2E-1, REQ-E2E-2)

use std::collections::BTreeSet;
use std::time::Duration;

use hive_tests::{event_bytes, histogram, two_connected_hosts, HostOpts};

const TOPIC: &str = "e2e-pubsub";
const MESSAGES: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_pubsub_messages_none_lost_none_duplicated() -> anyhow::Result<()> {
    let (a, b) = two_connected_hosts(HostOpts::default()).await?;
    let mut events = b.events().await?;
    a.subscribe(TOPIC).await?;
    b.subscribe(TOPIC).await?;
    a.wait_topic_peers(TOPIC, 1).await?;
    b.wait_topic_peers(TOPIC, 1).await?;

    let a_peer = a.peer_id().await?;
    let mut sent_ids = BTreeSet::new();
    for i in 0..MESSAGES {
        let id = a
            .publish(TOPIC, format!("message {i}").into_bytes())
            .await?;
        assert!(sent_ids.insert(id), "publish returned a repeated id");
    }

    let got = events
        .collect("message", MESSAGES, Duration::from_secs(120))
        .await;
    // Give duplicates a moment to show up if there were going to be any.
    let extra = events.collect("message", 1, Duration::from_secs(2)).await;
    let all: Vec<_> = got.iter().chain(extra.iter()).collect();

    let payloads = histogram(
        all.iter()
            .map(|ev| String::from_utf8(event_bytes(ev).unwrap()).unwrap()),
    );
    let dupes: Vec<_> = payloads.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "duplicated payloads: {dupes:?}");
    let expected: BTreeSet<String> = (0..MESSAGES).map(|i| format!("message {i}")).collect();
    let received: BTreeSet<String> = payloads.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&received).take(10).collect();
    assert!(
        missing.is_empty(),
        "{} lost, e.g. {missing:?}",
        expected.len() - received.len()
    );
    assert_eq!(received, expected);
    // Published one after another over one link: received in that order
    // (the outbox hands messages to the daemon in order; nothing overtakes).
    let order: Vec<String> = got
        .iter()
        .map(|ev| String::from_utf8(event_bytes(ev).unwrap_or_default()).unwrap_or_default())
        .collect();
    let in_order: Vec<String> = (0..MESSAGES).map(|i| format!("message {i}")).collect();
    if let Some(at) = order.iter().zip(&in_order).position(|(g, w)| g != w) {
        panic!(
            "out of publish order at {at}: got {:?}, expected {:?}",
            &order[at..(at + 3).min(order.len())],
            &in_order[at..(at + 3).min(in_order.len())]
        );
    }

    for ev in &all {
        assert_eq!(ev["topic"], TOPIC);
        assert_eq!(ev["from"], a_peer.as_str());
        assert!(
            sent_ids.contains(ev["id"].as_str().unwrap_or("")),
            "unknown id in {ev}"
        );
        // Text payloads are also given as text.
        assert_eq!(
            ev["text"].as_str(),
            Some(String::from_utf8(event_bytes(ev)?)?.as_str())
        );
    }
    let ids = histogram(
        all.iter()
            .map(|ev| ev["id"].as_str().unwrap_or("").to_string()),
    );
    assert_eq!(ids.len(), MESSAGES);
    events.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_message_arrives_with_exact_bytes() -> anyhow::Result<()> {
    let (a, b) = two_connected_hosts(HostOpts::default()).await?;
    let mut events = b.events().await?;
    let b_peer = b.peer_id().await?;
    let a_peer = a.peer_id().await?;

    // Every byte value, including invalid UTF-8, twice over.
    let payload: Vec<u8> = (0..512u32).map(|i| (i % 256) as u8).collect();
    let answer = a
        .post(&format!("/api/peers/{b_peer}/send"), payload.clone())
        .await?;
    let id = answer["id"]
        .as_str()
        .expect("send returns an id")
        .to_string();
    // 200 once B's daemon acknowledged it, as the README says (a 202 with
    // acknowledged: false would mean it is only queued).
    assert_eq!(answer["acknowledged"], true, "{answer}");

    let got = events.collect("direct", 1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1, "no direct event arrived");
    let ev = &got[0];
    assert_eq!(event_bytes(ev)?, payload);
    assert_eq!(ev["from"], a_peer.as_str());
    assert_eq!(ev["id"], id.as_str());
    assert!(
        ev.get("text").is_none() || ev["text"].is_null(),
        "binary payload must not carry text"
    );
    Ok(())
}

/// Direct messages queued without waiting (`?wait=0`) go one at a time per
/// peer: they arrive in the order they were sent, none overtaking another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_queued_without_waiting_arrive_in_order() -> anyhow::Result<()> {
    const SENT: usize = 300;
    let (a, b) = two_connected_hosts(HostOpts::default()).await?;
    let mut events = b.events().await?;
    let b_peer = b.peer_id().await?;
    for i in 0..SENT {
        a.post(
            &format!("/api/peers/{b_peer}/send?wait=0"),
            format!("direct {i}").into_bytes(),
        )
        .await?;
    }
    let got = events
        .collect("direct", SENT, Duration::from_secs(120))
        .await;
    let order: Vec<String> = got
        .iter()
        .map(|ev| String::from_utf8(event_bytes(ev).unwrap_or_default()).unwrap_or_default())
        .collect();
    let in_order: Vec<String> = (0..SENT).map(|i| format!("direct {i}")).collect();
    assert_eq!(order, in_order, "direct messages lost or out of order");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_publish_and_subscribe_between_hosts() -> anyhow::Result<()> {
    let (a, b) = two_connected_hosts(HostOpts::default()).await?;
    let topic = "cli-topic";
    a.subscribe(topic).await?;
    // `hive subscribe` opens the event stream, subscribes, prints JSON lines.
    let sub = tokio::process::Command::new(hive_tests::hive_bin())
        .args(["subscribe", topic, "--count", "3", "--api", &b.api])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    b.wait_topic_peers(topic, 1).await?;
    a.wait_topic_peers(topic, 1).await?;
    for i in 0..3 {
        let out = a
            .cli_json(&["publish", topic, &format!("hello {i}")])
            .await?;
        assert!(out["id"].is_string(), "{out}");
    }
    let out = tokio::time::timeout(Duration::from_secs(60), sub.wait_with_output()).await??;
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let texts: BTreeSet<String> = lines
        .iter()
        .map(|l| String::from_utf8(event_bytes(l).unwrap()).unwrap())
        .collect();
    assert_eq!(
        texts,
        (0..3)
            .map(|i| format!("hello {i}"))
            .collect::<BTreeSet<_>>()
    );
    let status = b.cli_json(&["status"]).await?;
    assert_eq!(status["daemon"]["state"], "running");
    let peers = b.cli_json(&["peers"]).await?;
    assert!(peers.as_array().is_some_and(|p| !p.is_empty()), "{peers}");
    Ok(())
}
