//! The host supervises its daemon: restarts after `kill -9` with the same
//! identity and subscriptions; leaves nothing running after SIGTERM; and a
//! daemon whose host was `kill -9`ed exits by itself. (REQ-SUP-1..4)

use std::time::Duration;

use hive_tests::{event_bytes, pid_alive, pids_with_cmdline, signal, wait_for, Host, HostOpts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_daemon_is_restarted_with_same_identity_and_topics() -> anyhow::Result<()> {
    let topic = "restart-topic";
    let a = Host::start(HostOpts::default()).await?;
    a.wait_healthy().await?;
    let b = Host::start(HostOpts {
        bootstrap: vec![a.first_listen_addr().await?],
        ..Default::default()
    })
    .await?;
    b.wait_healthy().await?;
    a.subscribe(topic).await?;
    b.subscribe(topic).await?;
    a.wait_topic_peers(topic, 1).await?;

    let before = a.status().await?;
    let old_pid = a.daemon_pid().await?.expect("daemon pid");
    let peer_id = before["peer_id"].as_str().unwrap().to_string();
    assert_eq!(before["daemon"]["restarts"], 0);

    let mut a_events = a.events().await?;
    signal(old_pid, libc::SIGKILL);

    // The host notices, restarts the daemon, and reports it.
    let after = wait_for("daemon restarted", || async {
        let st = a.status().await.ok()?;
        let pid = st["daemon"]["pid"].as_i64()? as i32;
        (st["daemon"]["state"] == "running" && pid != old_pid).then_some(st)
    })
    .await?;
    assert!(!pid_alive(old_pid));
    assert_eq!(
        after["peer_id"],
        peer_id.as_str(),
        "identity changed on restart"
    );
    assert!(after["daemon"]["restarts"].as_u64().unwrap_or(0) >= 1);
    assert!(
        after["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == topic),
        "topic not re-subscribed: {after}"
    );

    // The event stream told its client about the restart.
    let mut states = Vec::new();
    while let Some(ev) = a_events.next_within(Duration::from_secs(5)).await {
        if ev["type"] == "daemon" {
            states.push(ev["state"].as_str().unwrap_or("").to_string());
            if states.iter().any(|s| s == "restarting") && ev["state"] == "running" {
                break;
            }
        }
    }
    assert!(
        states.iter().any(|s| s == "restarting"),
        "states seen: {states:?}"
    );

    // Messages published after the restart arrive, both ways.
    a.wait_topic_peers(topic, 1).await?;
    b.wait_topic_peers(topic, 1).await?;
    let mut b_events = b.events().await?;
    a.publish(topic, b"after restart from a".to_vec()).await?;
    let got = b_events
        .collect("message", 1, Duration::from_secs(60))
        .await;
    assert_eq!(got.len(), 1);
    assert_eq!(event_bytes(&got[0])?, b"after restart from a");

    b.publish(topic, b"after restart from b".to_vec()).await?;
    let got = a_events
        .collect("message", 1, Duration::from_secs(60))
        .await;
    assert_eq!(got.len(), 1);
    assert_eq!(event_bytes(&got[0])?, b"after restart from b");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_host_leaves_no_daemon_running() -> anyhow::Result<()> {
    let mut host = Host::start(HostOpts::default()).await?;
    host.wait_healthy().await?;
    let daemon = host.daemon_pid().await?.expect("daemon pid");
    assert!(pid_alive(daemon));
    let dir = host.data_dir.path().to_string_lossy().to_string();
    assert!(!pids_with_cmdline(&dir).is_empty());

    let status = host.terminate().await?;
    assert!(status.success(), "host exit status {status}");
    // By the time the host has exited, its daemon must be gone already.
    assert!(!pid_alive(daemon), "daemon {daemon} outlived its host");
    assert_eq!(pids_with_cmdline(&dir), Vec::<i32>::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_exits_after_kill_9_of_its_host() -> anyhow::Result<()> {
    let host = Host::start(HostOpts::default()).await?;
    host.wait_healthy().await?;
    let daemon = host.daemon_pid().await?.expect("daemon pid");
    host.kill9();
    wait_for("orphaned daemon to exit", || async {
        (!pid_alive(daemon)).then_some(())
    })
    .await?;
    let dir = host.data_dir.path().to_string_lossy().to_string();
    assert_eq!(pids_with_cmdline(&dir), Vec::<i32>::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_restart_on_same_data_dir_keeps_peer_id() -> anyhow::Result<()> {
    let mut host = Host::start(HostOpts::default()).await?;
    host.wait_healthy().await?;
    let first = host.peer_id().await?;
    host.subscribe("kept").await?;
    host.subscribe("dropped").await?;
    host.post("/api/topics/dropped/unsubscribe", vec![]).await?;
    host.terminate().await?;
    let dir = tempfile::TempDir::new()?;
    // Move the data dir out of the old host so it can be reused.
    let data = std::mem::replace(&mut host.data_dir, dir);
    drop(host);
    let again = Host::start_in(HostOpts::default(), data).await?;
    again.wait_healthy().await?;
    assert_eq!(again.peer_id().await?, first);
    // Subscriptions outlive the host too; the new daemon has them.
    let topics = wait_for("the subscription restored", || async {
        let topics = again.get("/api/topics").await.ok()?;
        let names: Vec<String> = topics
            .as_array()?
            .iter()
            .filter_map(|t| t["topic"].as_str().map(str::to_owned))
            .collect();
        names.contains(&"kept".to_owned()).then_some(names)
    })
    .await?;
    assert!(!topics.contains(&"dropped".to_owned()), "{topics:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_daemon_is_killed_and_replaced() -> anyhow::Result<()> {
    let host = Host::start(HostOpts::default()).await?;
    host.wait_healthy().await?;
    let peer_id = host.peer_id().await?;
    let hung = host.daemon_pid().await?.expect("daemon pid");
    // SIGSTOP: the process is alive but answers nothing, like a deadlock.
    signal(hung, libc::SIGSTOP);
    let after = wait_for("hung daemon replaced", || async {
        let st = host.status().await.ok()?;
        let pid = st["daemon"]["pid"].as_i64()? as i32;
        (st["daemon"]["state"] == "running" && pid != hung).then_some(st)
    })
    .await?;
    assert!(!pid_alive(hung), "the hung daemon was not killed");
    assert_eq!(after["peer_id"], peer_id.as_str());
    assert!(after["daemon"]["restarts"].as_u64().unwrap_or(0) >= 1);
    Ok(())
}
