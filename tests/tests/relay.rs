//! Circuit relay v2 between hosts: a host started with `--relay R` keeps a
//! slot on relay host R (`--relay-service`), shows the relayed address in its
//! status, and a third host reaches it through R: it dials that address, the
//! hidden host sees it arrive through R, and a direct message gets across
//! (over the relayed connection, or the direct one DCUtR may have made from
//! it by then). (REQ-NET-2)

use std::time::Duration;

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
    caller
        .post(&format!("/api/peers/{hidden_peer}/send"), payload.clone())
        .await?;
    let got = events.collect("direct", 1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1, "no direct message arrived through the relay");
    assert_eq!(event_bytes(&got[0])?, payload);
    Ok(())
}
