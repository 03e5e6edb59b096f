//! Three hosts find each other by mDNS alone, with no bootstrap address.
//!
//! Multicast must not leave the machine, so the hosts run in network
//! namespaces joined by a bridge that this test creates (and removes). This
//! needs root; CI runs as root. Checks go through the `hive` CLI run inside
//! each namespace, since the hosts' loopback APIs live there. (REQ-NET-1)

use hive_tests::netns::Lan;
use hive_tests::{wait_for, Host, HostOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_discover_each_other_by_mdns() -> anyhow::Result<()> {
    assert!(
        Lan::available(),
        "this test needs root and iproute2 to build its private network namespaces"
    );
    let lan = Lan::new(3)?;
    let mut hosts = Vec::new();
    for ns in &lan.hosts {
        let host = Host::start(HostOpts {
            mdns: true,
            netns: Some(ns.clone()),
            listen: vec!["/ip4/0.0.0.0/tcp/0".into()],
            ..Default::default()
        })
        .await?;
        hosts.push(host);
    }
    let mut peer_ids = Vec::new();
    for host in &hosts {
        let st = wait_for("host running in its namespace", || async {
            let st = host.cli_json(&["status"]).await.ok()?;
            (st["daemon"]["state"] == "running").then_some(st)
        })
        .await?;
        peer_ids.push(st["peer_id"].as_str().unwrap_or_default().to_string());
    }
    for (i, host) in hosts.iter().enumerate() {
        let peers = wait_for("every host to see the two others", || async {
            let peers = host.cli_json(&["peers"]).await.ok()?;
            let ids: Vec<String> = peers
                .as_array()?
                .iter()
                .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
                .collect();
            let others: Vec<&String> = peer_ids
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| p)
                .collect();
            others.iter().all(|p| ids.contains(p)).then_some(ids)
        })
        .await?;
        assert!(peers.len() >= 2);
    }
    drop(hosts);
    drop(lan);
    Ok(())
}
