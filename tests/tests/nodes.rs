//! Reproduction with real processes: a host grows a hive of nodes that join
//! one network, nodes reproduce through the IPC, every node is supervised
//! like the first, and none outlives the host. (REQ-REPRO-*)

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hive_tests::{pid_alive, pids_with_cmdline, signal, wait_for, EventStream, Host, HostOpts};
use serde_json::{json, Value};

async fn nodes(host: &Host) -> Result<Vec<Value>> {
    let v = host.get("/api/nodes").await?;
    Ok(v.as_array().context("nodes is not a list")?.clone())
}

async fn node(host: &Host, id: &str) -> Result<Value> {
    host.get(&format!("/api/nodes/{id}")).await
}

/// POST /api/nodes and return the status code with the body.
async fn spawn_raw(host: &Host, body: Value) -> Result<(u16, Value)> {
    let r = reqwest::Client::new()
        .post(host.url("/api/nodes"))
        .json(&body)
        .timeout(Duration::from_secs(180))
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await?))
}

async fn spawn(host: &Host, body: Value) -> Result<Vec<Value>> {
    let (status, v) = spawn_raw(host, body).await?;
    if status != 201 {
        bail!("spawn answered {status}: {v}");
    }
    Ok(v.as_array().context("spawn result is not a list")?.clone())
}

/// Pids of the daemons started for this host's data directory.
fn daemons_of(host: &Host) -> Vec<i32> {
    pids_with_cmdline(&host.data_dir.path().display().to_string())
        .into_iter()
        .filter(|pid| *pid != host.pid)
        .collect()
}

async fn node_events(host: &Host, id: &str) -> Result<EventStream> {
    let url = host
        .url(&format!("/api/nodes/{id}/events"))
        .replacen("http", "ws", 1);
    let (ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting {url}"))?;
    Ok(EventStream::from_ws(ws))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_join_one_network_and_all_receive_a_message() -> Result<()> {
    let host = Host::start(HostOpts::default()).await?;
    host.wait_healthy().await?;
    let children = spawn(&host, json!({"count": 20})).await?;
    assert_eq!(children.len(), 20);
    for child in &children {
        assert_eq!(child["parent"], "n0");
        assert_eq!(child["generation"], 1);
        assert_eq!(child["state"], "running", "{child}");
    }
    let all = nodes(&host).await?;
    assert_eq!(all.len(), 21);
    // `hive nodes` draws the same hive as a tree: n0 with 20 children.
    let out = std::process::Command::new(hive_tests::hive_bin())
        .args(["--api", &host.api, "nodes"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 21, "{tree}");
    assert!(lines[0].starts_with("n0 running"), "{tree}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.starts_with("├─ n") || l.starts_with("└─ n")),
        "{tree}"
    );
    assert_eq!(all[0]["id"], "n0");
    assert_eq!(all[0]["parent"], Value::Null);
    assert_eq!(all[0]["generation"], 0);

    // Every node is connected to at least one other.
    wait_for("every node to have a peer", || async {
        let all = nodes(&host).await.ok()?;
        all.iter()
            .all(|n| n["peers"].as_u64().unwrap_or(0) >= 1)
            .then_some(())
    })
    .await?;

    // A subscriber on every child, through the node-level routes.
    let mut streams = Vec::new();
    for child in &children {
        let id = child["id"].as_str().unwrap();
        host.post(&format!("/api/nodes/{id}/topics/swarm/subscribe"), vec![])
            .await?;
        streams.push((id.to_owned(), node_events(&host, id).await?));
    }
    // Published right after the subscribe calls returned, with no wait:
    // a subscription that has not spread yet must not lose the message.
    let id = host.publish("swarm", b"to every child".to_vec()).await?;

    let mut missing = Vec::new();
    for (node, stream) in &mut streams {
        let got = stream
            .collect("message", 1, Duration::from_secs(60))
            .await
            .into_iter()
            .any(|ev| ev["id"] == id.as_str() && ev["text"] == "to every child");
        if !got {
            missing.push(node.clone());
        }
    }
    assert!(missing.is_empty(), "no message on {missing:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reproduce_restart_stop_and_come_back() -> Result<()> {
    let mut host = Host::start(HostOpts {
        extra_args: vec!["--max-nodes".into(), "4".into()],
        ..Default::default()
    })
    .await?;
    host.wait_healthy().await?;
    let first = spawn(&host, json!({})).await?;
    let child = first[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(first[0]["parent"], "n0");

    // The child reproduces through its daemon's IPC `reproduce` operation.
    let r = host
        .post(&format!("/api/nodes/{child}/reproduce"), b"{}".to_vec())
        .await?;
    assert_eq!(r["delegated"], true, "{r}");
    let grandchild = wait_for("a generation-2 node", || async {
        nodes(&host)
            .await
            .ok()?
            .into_iter()
            .find(|n| n["generation"] == 2 && n["state"] == "running")
    })
    .await?;
    assert_eq!(grandchild["parent"], child.as_str());
    let grandchild_id = grandchild["id"].as_str().unwrap().to_owned();

    // kill -9 of a child's daemon: restarted with the same peer id.
    let before = node(&host, &child).await?;
    let pid = before["pid"].as_i64().context("child has no pid")? as i32;
    signal(pid, libc::SIGKILL);
    let after = wait_for("the child to be restarted", || async {
        let n = node(&host, &child).await.ok()?;
        (n["state"] == "running" && n["pid"].as_i64()? as i32 != pid).then_some(n)
    })
    .await?;
    assert_eq!(after["peer_id"], before["peer_id"]);
    assert!(after["restarts"].as_u64().unwrap() >= 1, "{after}");

    // Refusals are clear and create nothing.
    let count_before = nodes(&host).await?.len();
    for (body, status) in [
        (json!({"count": 0}), 400),
        (json!({"count": "three"}), 400),
        (json!({"count": 1, "colour": "red"}), 400),
        (json!({"parent": "n999"}), 404),
        (json!({"count": 5}), 409), // --max-nodes 4, 3 running
    ] {
        let (got, v) = spawn_raw(&host, body.clone()).await?;
        assert_eq!(got, status, "{body} -> {v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(nodes(&host).await?.len(), count_before);

    // A host restarted on its data directory brings every node back.
    let ids: BTreeMap<String, String> = nodes(&host)
        .await?
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["peer_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    host.terminate().await?;
    wait_for("no daemon left after SIGTERM", || async {
        daemons_of(&host).is_empty().then_some(())
    })
    .await?;
    let data_dir = tempfile::TempDir::new()?;
    let data_dir = std::mem::replace(&mut host.data_dir, data_dir);
    drop(host);
    let host = Host::start_in(HostOpts::default(), data_dir).await?;
    host.wait_healthy().await?;
    let back = wait_for("every node back", || async {
        let all = nodes(&host).await.ok()?;
        let running: BTreeMap<String, String> = all
            .iter()
            .filter(|n| n["state"] == "running")
            .map(|n| {
                Some((
                    n["id"].as_str()?.to_owned(),
                    n["peer_id"].as_str()?.to_owned(),
                ))
            })
            .collect::<Option<_>>()?;
        (running.len() == ids.len()).then_some(running)
    })
    .await?;
    assert_eq!(back, ids);

    // DELETE of a node with children stops the whole subtree.
    let mut pids = Vec::new();
    for id in [&child, &grandchild_id] {
        let n = node(&host, id).await?;
        pids.push(n["pid"].as_i64().context("no pid")? as i32);
    }
    let out = std::process::Command::new(hive_tests::hive_bin())
        .args(["--api", &host.api, "stop-node", &child])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stopped: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(stopped["stopped"], json!([grandchild_id, child]));
    let remaining: Vec<String> = nodes(&host)
        .await?
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(remaining, vec!["n0".to_owned()]);
    for pid in pids {
        assert!(!pid_alive(pid), "daemon {pid} of a deleted node still runs");
    }
    let r = reqwest::Client::new()
        .delete(host.url("/api/nodes/n0"))
        .send()
        .await?;
    assert_eq!(r.status(), 409);

    // kill -9 of the host while nodes of every generation run: no daemon
    // of any generation remains.
    let children = spawn(&host, json!({"count": 2})).await?;
    let parent = children[0]["id"].as_str().context("no child id")?;
    host.post(&format!("/api/nodes/{parent}/reproduce"), b"{}".to_vec())
        .await?;
    wait_for("a running generation-2 node before the kill", || async {
        nodes(&host)
            .await
            .ok()?
            .into_iter()
            .find(|n| n["generation"] == 2 && n["state"] == "running")
    })
    .await?;
    assert_eq!(daemons_of(&host).len(), 4);
    host.kill9();
    wait_for("no daemon left after kill -9 of the host", || async {
        daemons_of(&host).is_empty().then_some(())
    })
    .await?;
    Ok(())
}

/// `hive up --nodes N` grows the hive by itself once the first node runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_nodes_starts_the_whole_hive() -> Result<()> {
    let host = Host::start(HostOpts {
        extra_args: vec!["--nodes".into(), "4".into()],
        ..Default::default()
    })
    .await?;
    host.wait_healthy().await?;
    let all = wait_for("four running nodes", || async {
        let all = nodes(&host).await.ok()?;
        (all.len() == 4 && all.iter().all(|n| n["state"] == "running")).then_some(all)
    })
    .await?;
    assert!(all[1..]
        .iter()
        .all(|n| n["parent"] == "n0" && n["generation"] == 1));
    assert_eq!(daemons_of(&host).len(), 4);
    Ok(())
}
