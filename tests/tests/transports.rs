//! The listen addresses a user gets, not the harness's: two hosts started
//! with no `--listen` at all (the product's default: every interface, TCP
//! and QUIC), and two on QUIC alone. Each time B is bootstrapped from the
//! first address A reports, and a publish and a direct message must arrive;
//! on QUIC the connection must really be QUIC. (audit row 46, REQ-E2E-4)
//! webrtc-direct (REQ-GO-14): alone, dialed from a host that does not listen
//! on it, across a restart on `udp/0`, and refused to a wrong certificate.

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
    // Both kinds from one pass over the stream: the direct message may
    // overtake the gossip, and a pass for one kind skips the other.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (mut payloads, mut got, mut direct) = (Vec::new(), 0, 0);
    while payloads.len() < MESSAGES || direct == 0 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(ev) = events.next_within(left).await else {
            break;
        };
        match ev["type"].as_str() {
            Some("message") => {
                got += 1;
                payloads.push(String::from_utf8(event_bytes(&ev)?)?);
                payloads.sort();
                payloads.dedup();
            }
            Some("direct") => direct += 1,
            _ => {}
        }
    }
    assert_eq!(
        payloads.len(),
        MESSAGES,
        "B got {got} messages, {} distinct of {MESSAGES}",
        payloads.len()
    );
    assert_eq!(direct, 1, "the direct message reached B's stream");
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

/// The `/certhash/…` part of a webrtc-direct address.
fn certhash(addr: &str) -> &str {
    addr.split("/certhash/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
}

/// The webrtc-direct addresses a host reports.
async fn webrtc_addrs(host: &Host) -> anyhow::Result<Vec<String>> {
    let st = host.status().await?;
    Ok(st["listen_addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|a| a.contains("/webrtc-direct"))
        .map(str::to_owned)
        .collect())
}

fn on_webrtc_direct() -> HostOpts {
    HostOpts {
        listen: vec!["/ip4/127.0.0.1/udp/0/webrtc-direct".to_owned()],
        ..Default::default()
    }
}

/// Wait until `from` has a connection to `to` and return its addresses,
/// asserting they are all webrtc-direct.
async fn connected_over_webrtc(from: &Host, to: &Host) -> anyhow::Result<()> {
    let to_peer = to.peer_id().await?;
    let conns = wait_for("a connection over webrtc-direct", || async {
        let c = connections_to(from, &to_peer).await.ok()?;
        (!c.is_empty()).then_some(c)
    })
    .await?;
    assert!(
        conns.iter().all(|c| c.contains("/webrtc-direct")),
        "every connection is webrtc-direct: {conns:?}"
    );
    Ok(())
}

/// REQ-GO-14: two hosts on webrtc-direct alone, B bootstrapped from the
/// address A reports (with its certhash): the connection is webrtc-direct,
/// and gossip and a direct message cross it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_on_webrtc_direct_alone_connect_over_it_and_deliver() -> anyhow::Result<()> {
    let (a, b) = two_connected_hosts(on_webrtc_direct()).await?;
    let addr = a.first_listen_addr().await?;
    assert!(
        addr.contains("/webrtc-direct/certhash/"),
        "a dialable webrtc-direct address: {addr}"
    );
    connected_over_webrtc(&b, &a).await?;
    delivers(&a, &b).await
}

/// The dialer listens on TCP only (rust-libp2p's WebRTC transport dials
/// only through a listener's socket): it still dials A's webrtc-direct
/// address, and the socket it dials from is not announced as its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_on_tcp_alone_dials_webrtc_direct() -> anyhow::Result<()> {
    let a = Host::start(on_webrtc_direct()).await?;
    a.wait_healthy().await?;
    let b = Host::start(HostOpts {
        bootstrap: vec![a.first_listen_addr().await?],
        ..Default::default()
    })
    .await?;
    b.wait_healthy().await?;
    connected_over_webrtc(&b, &a).await?;
    assert_eq!(
        webrtc_addrs(&b).await?,
        Vec::<String>::new(),
        "the dialing socket is announced"
    );
    delivers(&a, &b).await
}

/// A restart on `udp/0` (SIGTERM, then kill -9) comes back on the same
/// address, certhash included (the certificate is kept in the data
/// directory, readable by its owner only), and gossip and a direct message
/// flow again with no dial by the test. B still holds a session with A's
/// former self, which rust-libp2p's WebRTC connection never reports dead:
/// the node's pings have to find it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_keeps_its_webrtc_direct_address_and_heals() -> anyhow::Result<()> {
    let (mut a, b) = two_connected_hosts(on_webrtc_direct()).await?;
    connected_over_webrtc(&b, &a).await?;
    let before = a.first_listen_addr().await?;
    for kill9 in [false, true] {
        if kill9 {
            a.kill9();
            let _ = a.child.wait().await;
        } else {
            a.terminate().await?;
        }
        let data = std::mem::replace(&mut a.data_dir, tempfile::TempDir::new()?);
        drop(a);
        let cert = data.path().join("daemon").join("webrtc-certificate.pem");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cert)?.permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} is readable by others", cert.display());
        }
        a = Host::start_in(on_webrtc_direct(), data).await?;
        a.wait_healthy().await?;
        assert_eq!(a.first_listen_addr().await?, before, "the address changed");
        delivers(&a, &b).await?;
        connected_over_webrtc(&b, &a).await?;
    }
    Ok(())
}

/// The certhash is what authenticates the listener before Noise: B dials
/// A's address with an impostor's certhash (A's certificate does not match),
/// and the impostor's address as A's (Noise shows another peer id). Both
/// dials fail with an error, and B is connected to neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_direct_dial_to_the_wrong_certificate_is_refused() -> anyhow::Result<()> {
    let a = Host::start(on_webrtc_direct()).await?;
    let impostor = Host::start(on_webrtc_direct()).await?;
    let b = Host::start(on_webrtc_direct()).await?;
    for h in [&a, &impostor, &b] {
        h.wait_healthy().await?;
    }
    let a_addr = a.first_listen_addr().await?;
    let m_addr = impostor.first_listen_addr().await?;
    let (a_peer, m_peer) = (a.peer_id().await?, impostor.peer_id().await?);
    assert_ne!(certhash(&a_addr), certhash(&m_addr));
    let wrong_hash = a_addr.replace(certhash(&a_addr), certhash(&m_addr));
    let wrong_peer = m_addr.replace(&m_peer, &a_peer);
    for addr in [wrong_hash, wrong_peer] {
        let answer = b
            .post_json("/api/dial", &serde_json::json!({ "addr": addr }))
            .await;
        assert!(answer.is_err(), "dial of {addr} succeeded: {answer:?}");
    }
    for peer in [&a_peer, &m_peer] {
        assert_eq!(
            connections_to(&b, peer).await?,
            Vec::<String>::new(),
            "B is connected to {peer}"
        );
    }
    Ok(())
}
