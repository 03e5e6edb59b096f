//! Circuit relay v2 between hosts: a host started with `--relay R` keeps a
//! slot on relay host R (`--relay-service`), shows the relayed address in its
//! status, and a third host reaches it through R: it dials that address, the
//! hidden host sees it arrive through R, and a direct message gets across
//! (over the relayed connection, or the direct one DCUtR may have made from
//! it by then). (REQ-NET-2)

use std::time::Duration;

use hive_tests::nat::TwoNats;
use hive_tests::netns::{Lan, Split};
use hive_tests::{event_bytes, wait_for, Host, HostOpts};
use serde_json::{json, Value};

fn circuit_addr(status: &Value) -> Option<String> {
    status["listen_addrs"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.contains("/p2p-circuit"))
        .map(str::to_owned)
}

/// `hive doctor --json` against a running host.
async fn doctor_report(api: &str) -> anyhow::Result<serde_json::Value> {
    let out = tokio::process::Command::new(hive_tests::hive_bin())
        .args(["doctor", "--json", "--api", api])
        .output()
        .await?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_is_reached_through_its_relay() -> anyhow::Result<()> {
    let relay = Host::start(HostOpts {
        extra_args: vec!["--relay-service".into()],
        ..Default::default()
    })
    .await?;
    relay.wait_healthy().await?;
    let relay_addr = relay.first_listen_addr().await?;
    let relay_peer = relay.peer_id().await?;

    let hidden = Host::start(HostOpts {
        extra_args: vec!["--relay".into(), relay_addr.clone()],
        ..Default::default()
    })
    .await?;
    hidden.wait_healthy().await?;
    let hidden_peer = hidden.peer_id().await?;
    let addr = wait_for("the relayed address in the host's status", || async {
        circuit_addr(&hidden.status().await.ok()?)
    })
    .await?;
    assert!(
        addr.starts_with(&format!("{relay_addr}/p2p-circuit")),
        "{addr} is not through {relay_addr}"
    );
    assert!(addr.ends_with(&format!("/p2p/{hidden_peer}")), "{addr}");
    // Its status and `hive doctor` say how it is reachable: through R.
    let reach = hidden.status().await?["reach"].clone();
    assert_eq!(
        reach["relays"][0]["peer_id"],
        relay_peer.as_str(),
        "{reach}"
    );
    assert_eq!(reach["relays"][0]["state"], "reserved", "{reach}");
    let report = doctor_report(&hidden.api).await?;
    let named = |prefix: &str| {
        report["checks"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {prefix} check in {report}"))
    };
    let reachability = named("reachability");
    assert_eq!(reachability["status"], "ok", "{reachability}");
    assert!(
        reachability["detail"]
            .as_str()
            .unwrap_or("")
            .contains("through"),
        "{reachability}"
    );
    assert_eq!(named("relay slot")["status"], "ok", "{report}");

    let caller = Host::start(HostOpts::default()).await?;
    caller.wait_healthy().await?;
    let caller_peer = caller.peer_id().await?;
    let mut events = hidden.events().await?;
    let dialed = caller
        .post_json("/api/dial", &json!({ "addr": addr }))
        .await?;
    assert_eq!(dialed["peer_id"], hidden_peer.as_str(), "{dialed}");

    // The hidden host sees the caller arrive through the relay.
    let connected = events
        .collect("peer_connected", 1, Duration::from_secs(30))
        .await;
    let arrival = connected
        .iter()
        .find(|ev| ev["peer_id"] == caller_peer.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    let via = arrival["addr"].as_str().unwrap_or_default();
    assert!(
        via.contains("/p2p-circuit") && via.contains(&relay_peer),
        "the caller did not arrive through the relay: {arrival}"
    );

    let payload = b"through the relay".to_vec();
    let sent = caller
        .post(&format!("/api/peers/{hidden_peer}/send"), payload.clone())
        .await?;
    assert_eq!(sent["acknowledged"], true, "{sent}");
    let got = events.collect("direct", 1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1, "no direct message arrived through the relay");
    assert_eq!(event_bytes(&got[0])?, payload);
    Ok(())
}

/// The same through a relay that is the only way between the two: the
/// hidden host and the caller sit on two links that meet only at the relay
/// (network namespaces, no forwarding), so nothing but the relay's data path
/// can carry the message, and the connection stays a circuit.
/// Three hosts on a [`Split`]: the relay in the middle (`--relay-service`
/// and `relay_args`), the hidden host on the left keeping a slot on it, the
/// caller on the right; the two sides meet only at the relay.
struct AcrossTheRelay {
    /// Kept running for the test's length.
    _relay: Host,
    hidden: Host,
    hidden_peer: String,
    caller: Host,
    /// When the hidden host's slot was first seen.
    granted: std::time::Instant,
    /// The hidden host's relayed address as the caller reaches it (the
    /// relay's address on the caller's side).
    through: String,
}

async fn across_the_relay(net: &Split, relay_args: &[&str]) -> anyhow::Result<AcrossTheRelay> {
    let mut extra_args = vec!["--relay-service".to_owned()];
    extra_args.extend(relay_args.iter().map(|a| a.to_string()));
    let relay = Host::start(HostOpts {
        netns: Some(net.middle.clone()),
        listen: vec![
            format!("/ip4/{}/tcp/4201", net.middle_left()),
            format!("/ip4/{}/tcp/4202", net.middle_right()),
        ],
        extra_args,
        ..Default::default()
    })
    .await?;
    let relay_peer = running_peer_id(&relay, "the relay running").await?;
    let hidden = Host::start(HostOpts {
        netns: Some(net.left.clone()),
        listen: vec![format!("/ip4/{}/tcp/4203", net.left_addr())],
        extra_args: vec![
            "--relay".into(),
            format!("/ip4/{}/tcp/4201/p2p/{relay_peer}", net.middle_left()),
        ],
        ..Default::default()
    })
    .await?;
    let hidden_peer = wait_for("a slot on the relay", || async {
        let st = hidden.cli_json(&["status"]).await.ok()?;
        circuit_addr(&st)?;
        st["peer_id"].as_str().map(str::to_owned)
    })
    .await?;
    let granted = std::time::Instant::now();
    let caller = Host::start(HostOpts {
        netns: Some(net.right.clone()),
        listen: vec![format!("/ip4/{}/tcp/4204", net.right_addr())],
        ..Default::default()
    })
    .await?;
    wait_for("the caller running", || async {
        let st = caller.cli_json(&["status"]).await.ok()?;
        (st["daemon"]["state"] == "running").then_some(())
    })
    .await?;
    let through = format!(
        "/ip4/{}/tcp/4202/p2p/{relay_peer}/p2p-circuit/p2p/{hidden_peer}",
        net.middle_right()
    );
    Ok(AcrossTheRelay {
        _relay: relay,
        hidden,
        hidden_peer,
        caller,
        granted,
        through,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_nobody_can_dial_is_reached_only_through_its_relay() -> anyhow::Result<()> {
    assert!(
        Lan::available(),
        "this test needs root and iproute2 to build its private network namespaces"
    );
    let net = Split::new()?;
    let AcrossTheRelay {
        _relay,
        hidden,
        hidden_peer,
        caller,
        through,
        ..
    } = across_the_relay(&net, &[]).await?;
    let dialed = caller.cli_json(&["dial", &through]).await?;
    assert_eq!(dialed["peer_id"], hidden_peer.as_str(), "{dialed}");

    let sent = caller
        .cli_json(&["send", &hidden_peer, "only the relay carries this"])
        .await?;
    assert_eq!(sent["acknowledged"], true, "{sent}");
    let got = wait_for("the message in the hidden host's history", || async {
        let page = hidden
            .cli_json(&["messages", "--kind", "direct"])
            .await
            .ok()?;
        let rows = page["messages"].as_array()?.clone();
        (!rows.is_empty()).then_some(rows)
    })
    .await?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0]["text"], "only the relay carries this",
        "{:?}",
        got[0]
    );

    // Every connection between the two is still a circuit through the relay.
    let addrs = connections_to(&caller, &hidden_peer).await?;
    assert!(!addrs.is_empty(), "no connection to the hidden host");
    assert!(
        addrs.iter().all(|a| a.contains("/p2p-circuit")),
        "a direct connection to a host with no route to it: {addrs:?}"
    );
    Ok(())
}

/// A slot outlives its reservation's lifetime because its holder renews it
/// before the end (audit row 49), end to end: the relay grants slots of
/// 35 s (`--relay-reservation-secs 35`; an hour by default), the hidden host
/// renews after 30 s (a minute before the end, or 30 s at the soonest), and
/// 45 s after the slot was granted, past the first grant's end, a caller on
/// another link reaches the hidden host through the relay, which carries a
/// circuit only to a peer with a live slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_slot_is_renewed_before_it_ends() -> anyhow::Result<()> {
    assert!(
        Lan::available(),
        "this test needs root and iproute2 to build its private network namespaces"
    );
    let net = Split::new()?;
    let AcrossTheRelay {
        _relay,
        hidden,
        hidden_peer,
        caller,
        granted,
        through,
    } = across_the_relay(&net, &["--relay-reservation-secs", "35"]).await?;
    // Past the first grant's end (35 s); nobody touches the slot meanwhile.
    tokio::time::sleep(Duration::from_secs(45).saturating_sub(granted.elapsed())).await;
    let st = hidden.cli_json(&["status"]).await?;
    assert_eq!(st["reach"]["relays"][0]["state"], "reserved", "{st}");
    let dialed = caller.cli_json(&["dial", &through]).await?;
    assert_eq!(dialed["peer_id"], hidden_peer.as_str(), "{dialed}");
    let sent = caller
        .cli_json(&["send", &hidden_peer, "through a renewed slot"])
        .await?;
    assert_eq!(sent["acknowledged"], true, "{sent}");
    Ok(())
}

/// The peer id of `host` once its daemon runs (asked through `hive
/// status`, which also reaches a host inside a network namespace).
async fn running_peer_id(host: &Host, what: &str) -> anyhow::Result<String> {
    wait_for(what, || async {
        let st = host.cli_json(&["status"]).await.ok()?;
        (st["daemon"]["state"] == "running")
            .then(|| st["peer_id"].as_str().map(str::to_owned))
            .flatten()
    })
    .await
}

/// The addresses of `host`'s connections to `peer` (`hive peers`).
async fn connections_to(host: &Host, peer: &str) -> anyhow::Result<Vec<String>> {
    let peers = host.cli_json(&["peers"]).await?;
    Ok(peers
        .as_array()
        .and_then(|p| p.iter().find(|p| p["peer_id"] == peer))
        .and_then(|p| p["connections"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// Hole punching (DCUtR) where nothing else can join the two (audit row
/// 28): hosts A and B each behind a NAT that drops whatever nobody inside
/// asked for ([`TwoNats`]), the relay on the internet between them. B keeps
/// a slot on the relay; A dials B's relayed address, as a user who only
/// knows that address does. The two then punch through both NATs: A ends
/// with a direct connection to B's public (NAT) address, the relayed one
/// is closed, and a direct message goes over the punched connection.
/// Before, B could be reached only through the relay: a plain connection
/// from A's side to B's public address is dropped by B's NAT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_behind_nats_punch_a_hole_and_leave_the_relay() -> anyhow::Result<()> {
    assert!(
        TwoNats::available(),
        "this test needs root, iproute2 and nftables to build its NATs"
    );
    let net = TwoNats::new()?;
    let relay = Host::start(HostOpts {
        netns: Some(net.internet.clone()),
        listen: vec![
            format!("/ip4/{}/tcp/4201", net.internet_a()),
            format!("/ip4/{}/tcp/4202", net.internet_b()),
        ],
        extra_args: vec!["--relay-service".into()],
        ..Default::default()
    })
    .await?;
    let relay_peer = running_peer_id(&relay, "the relay running").await?;
    // Both on the product's default listen addresses (TCP and QUIC on
    // every interface).
    let b = Host::start(HostOpts {
        netns: Some(net.inside_b.clone()),
        default_listen: true,
        extra_args: vec![
            "--relay".into(),
            format!("/ip4/{}/tcp/4202/p2p/{relay_peer}", net.internet_b()),
        ],
        ..Default::default()
    })
    .await?;
    let (b_peer, b_tcp_port) = wait_for("B's slot on the relay", || async {
        let st = b.cli_json(&["status"]).await.ok()?;
        circuit_addr(&st)?;
        let port = st["listen_addrs"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .find_map(|a| a.strip_prefix("/ip4/10.221.")?.split("/tcp/").nth(1))?
            .split('/')
            .next()?
            .to_owned();
        Some((st["peer_id"].as_str()?.to_owned(), port))
    })
    .await?;
    let a = Host::start(HostOpts {
        netns: Some(net.inside_a.clone()),
        default_listen: true,
        ..Default::default()
    })
    .await?;
    let a_peer = running_peer_id(&a, "A running").await?;

    // B's NAT lets nothing in that B did not ask for: from A's side a TCP
    // connection to B's public address and port gets no answer at all.
    let probe = std::process::Command::new("ip")
        .args(["netns", "exec", &net.inside_a, "timeout", "3", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{}/{b_tcp_port}", net.public_b()))
        .status()?;
    assert!(!probe.success(), "B's NAT let an unsolicited connection in");

    let through = format!(
        "/ip4/{}/tcp/4201/p2p/{relay_peer}/p2p-circuit/p2p/{b_peer}",
        net.internet_a()
    );
    let dialed = a.cli_json(&["dial", &through]).await?;
    assert_eq!(dialed["peer_id"], b_peer.as_str(), "{dialed}");

    // The punched connection replaces the relayed one, on both sides.
    let public_b = format!("/ip4/{}/", net.public_b());
    let public_a = format!("/ip4/{}/", net.public_a());
    for (host, peer, public, whose) in [
        (&a, b_peer.clone(), &public_b, "A's to B"),
        (&b, a_peer.clone(), &public_a, "B's to A"),
    ] {
        let conns = wait_for(&format!("{whose}: only a direct connection"), || async {
            let conns = connections_to(host, &peer).await.ok()?;
            (!conns.is_empty() && conns.iter().all(|c| !c.contains("/p2p-circuit")))
                .then_some(conns)
        })
        .await?;
        assert!(
            conns.iter().all(|c| c.starts_with(public.as_str())),
            "{whose} connection is not to the NAT's public address: {conns:?}"
        );
    }

    let sent = a
        .cli_json(&["send", &b_peer, "through the punched hole"])
        .await?;
    assert_eq!(sent["acknowledged"], true, "{sent}");
    let got = wait_for("the message in B's history", || async {
        let page = b.cli_json(&["messages", "--kind", "direct"]).await.ok()?;
        let rows = page["messages"].as_array()?.clone();
        (!rows.is_empty()).then_some(rows)
    })
    .await?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["text"], "through the punched hole", "{:?}", got[0]);
    let after = connections_to(&a, &b_peer).await?;
    assert!(
        !after.is_empty() && after.iter().all(|c| !c.contains("/p2p-circuit")),
        "{after:?}"
    );
    Ok(())
}
