//! The listen addresses a user gets, not the harness's: two hosts started
//! with no `--listen` at all (the product's default: every interface, TCP
//! and QUIC), and two on QUIC alone. Each time B is bootstrapped from the
//! first address A reports, and a publish and a direct message must arrive;
//! on QUIC the connection must really be QUIC. (audit row 46, REQ-E2E-4)

use std::time::Duration;

use hive_tests::{event_bytes, two_connected_hosts, wait_for, Host, HostOpts};
use serde_json::Value;

const TOPIC: &str = "transports";
const MESSAGES: usize = 50;

/// Publishes and one direct message from A reach B, exactly once each.
async fn delivers(a: &Host, b: &Host) -> anyhow::Result<()> {
    let mut events = b.events().await?;
    for h in [a, b] {
        h.subscribe(TOPIC).await?;
    }
    a.wait_topic_peers(TOPIC, 1).await?;
    for i in 0..MESSAGES {
        a.publish(TOPIC, format!("m{i}").into_bytes()).await?;
    }
    let b_peer = b.peer_id().await?;
    let sent = a
        .post(&format!("/api/peers/{b_peer}/send"), b"direct".to_vec())
        .await?;
    assert_eq!(sent["acknowledged"], true, "{sent}");
    let got = events
        .collect("message", MESSAGES, Duration::from_secs(60))
        .await;
    let mut payloads: Vec<String> = got
        .iter()
        .map(|ev| String::from_utf8(event_bytes(ev).unwrap_or_default()).unwrap_or_default())
        .collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(
        payloads.len(),
        MESSAGES,
        "B got {} distinct of {MESSAGES}",
        got.len()
    );
    let direct = events.collect("direct", 1, Duration::from_secs(30)).await;
    assert_eq!(direct.len(), 1, "the direct message reached B's stream");
    Ok(())
}

/// B's connections to A (remote addresses).
async fn connections_to(b: &Host, a_peer: &str) -> anyhow::Result<Vec<String>> {
    let peers = b.get("/api/peers").await?;
    Ok(peers
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["peer_id"] == a_peer)
        .flat_map(|p| p["connections"].as_array().cloned().unwrap_or_default())
        .filter_map(|c: Value| c.as_str().map(str::to_owned))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_on_the_default_listen_addresses_deliver() -> anyhow::Result<()> {
    let (a, b) = two_connected_hosts(HostOpts {
        default_listen: true,
        ..Default::default()
    })
    .await?;
    let st = a.status().await?;
    let addrs: Vec<&str> = st["listen_addrs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        addrs.iter().any(|a| a.contains("/tcp/")),
        "TCP by default: {addrs:?}"
    );
    assert!(
        addrs.iter().any(|a| a.contains("/quic-v1")),
        "QUIC by default: {addrs:?}"
    );
    assert!(
        addrs.iter().all(|a| !a.contains("/0.0.0.0/")),
        "the unspecified address is never reported as one to dial: {addrs:?}"
    );
    delivers(&a, &b).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_on_quic_alone_connect_over_quic_and_deliver() -> anyhow::Result<()> {
    let (a, b) = two_connected_hosts(HostOpts {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".to_owned()],
        ..Default::default()
    })
    .await?;
    let a_peer = a.peer_id().await?;
    let conns = wait_for("B connected to A", || async {
        let c = connections_to(&b, &a_peer).await.ok()?;
        (!c.is_empty()).then_some(c)
    })
    .await?;
    assert!(
        conns.iter().all(|c| c.contains("/quic-v1")),
        "every connection to A is QUIC: {conns:?}"
    );
    delivers(&a, &b).await
}
