//! The network heals by itself (REQ-SUP-5): two `hive up` hosts on
//! `/ip4/127.0.0.1/tcp/0` (the default shape: random ports), mDNS off. After
//! each fault, messages flow again both ways with no dial by the test: the
//! restarted daemon binds the port it had (kept in `<data-dir>/node-state.json`)
//! and dials the peers it knew; when its old port is taken, it listens on a
//! new one and the peers it knew are dialed by it. Each case prints how long
//! healing took (a report, never an assertion).

use std::time::{Duration, Instant};

use hive_tests::{event_bytes, signal, wait_for, EventStream, Host, HostOpts};

const TOPIC: &str = "heal";

fn opts(bootstrap: Vec<String>) -> HostOpts {
    HostOpts {
        bootstrap,
        ..Default::default()
    }
}

/// Wait for `payload` on `events` (other messages are skipped).
async fn arrives(events: &mut EventStream, payload: &[u8]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        match events.next_within(Duration::from_secs(5)).await {
            Some(ev) if ev["type"] == "message" && event_bytes(&ev)? == payload => return Ok(()),
            _ => {}
        }
    }
    anyhow::bail!("{} never arrived", String::from_utf8_lossy(payload))
}

/// Publish once each way (the host's outbox holds a publish until the
/// daemon is back and a topic peer appears) and wait for both.
async fn flows_both_ways(a: &Host, b: &Host, case: &str, since: Instant) -> anyhow::Result<()> {
    let mut a_events = a.events().await?;
    let mut b_events = b.events().await?;
    let to_b = format!("{case}: a to b").into_bytes();
    let to_a = format!("{case}: b to a").into_bytes();
    a.publish(TOPIC, to_b.clone()).await?;
    b.publish(TOPIC, to_a.clone()).await?;
    arrives(&mut b_events, &to_b).await?;
    arrives(&mut a_events, &to_a).await?;
    println!(
        "healing: {case}: messages flow both ways {:.1} s after the fault",
        since.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn replaced(host: &Host, old: i32) -> anyhow::Result<()> {
    wait_for("the daemon replaced", || async {
        let st = host.status().await.ok()?;
        let pid = st["daemon"]["pid"].as_i64()? as i32;
        (st["daemon"]["state"] == "running" && pid != old).then_some(())
    })
    .await
}

/// Stop `host` (SIGTERM, or kill -9) and start it again on its data dir.
async fn restart(
    host: Host,
    opts: HostOpts,
    kill9: bool,
    hold_port: bool,
) -> anyhow::Result<(Host, Instant)> {
    let mut host = host;
    let old_port = tcp_port(&host.first_listen_addr().await?);
    let daemon = host.running_daemon_pid().await?;
    if kill9 {
        host.kill9();
        let _ = host.child.wait().await;
    } else {
        host.terminate().await?;
    }
    let since = Instant::now();
    let orphan_gone = || async {
        wait_for("the orphaned daemon to exit", || async {
            (!hive_tests::pid_alive(daemon)).then_some(())
        })
        .await
    };
    // Another process takes the old port while the node is down (so the
    // old daemon must be gone first: it holds the port until it exits).
    let squatter = if hold_port {
        orphan_gone().await?;
        Some(std::net::TcpListener::bind(("127.0.0.1", old_port))?)
    } else {
        None
    };
    let data = std::mem::replace(&mut host.data_dir, tempfile::TempDir::new()?);
    drop(host);
    // Started again at once, as systemd would: a killed host's daemon may
    // still be on its way out (its successor waits for the data directory).
    let again = Host::start_in(opts, data).await?;
    again.wait_healthy().await?;
    // The orphaned daemon exited by itself (it watches its parent).
    orphan_gone().await?;
    let new_port = tcp_port(&again.first_listen_addr().await?);
    match squatter {
        Some(_) => assert_ne!(new_port, old_port, "the port was taken"),
        None => assert_eq!(new_port, old_port, "the node came back on another port"),
    }
    drop(squatter);
    Ok((again, since))
}

fn tcp_port(addr: &str) -> u16 {
    addr.split("/tcp/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// B bootstrapped from A: kill -9 of A's daemon, of B's, of both at once;
/// a hung (SIGSTOPped) daemon; host A stopped by SIGTERM and by kill -9 and
/// started again on its data dir, once with its old port taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heals_after_every_fault_of_the_bootstrap_node() -> anyhow::Result<()> {
    let mut a = Host::start(opts(vec![])).await?;
    a.wait_healthy().await?;
    let b_opts = opts(vec![a.first_listen_addr().await?]);
    let b = Host::start(b_opts).await?;
    b.wait_healthy().await?;
    a.subscribe(TOPIC).await?;
    b.subscribe(TOPIC).await?;
    flows_both_ways(&a, &b, "start", Instant::now()).await?;

    let old = a.running_daemon_pid().await?;
    signal(old, libc::SIGKILL);
    let since = Instant::now();
    replaced(&a, old).await?;
    flows_both_ways(&a, &b, "kill -9 of A's daemon (B's bootstrap)", since).await?;

    let old = b.running_daemon_pid().await?;
    signal(old, libc::SIGKILL);
    let since = Instant::now();
    replaced(&b, old).await?;
    flows_both_ways(&a, &b, "kill -9 of B's daemon", since).await?;

    let (old_a, old_b) = (a.running_daemon_pid().await?, b.running_daemon_pid().await?);
    signal(old_a, libc::SIGKILL);
    signal(old_b, libc::SIGKILL);
    let since = Instant::now();
    replaced(&a, old_a).await?;
    replaced(&b, old_b).await?;
    flows_both_ways(&a, &b, "kill -9 of both daemons at once", since).await?;

    let old = a.running_daemon_pid().await?;
    signal(old, libc::SIGSTOP);
    let since = Instant::now();
    replaced(&a, old).await?;
    flows_both_ways(&a, &b, "SIGSTOP of A's daemon", since).await?;

    for (kill9, hold_port, case) in [
        (false, false, "host A stopped (SIGTERM) and started again"),
        (true, false, "host A kill -9 and started again"),
        (true, true, "host A kill -9, its port taken, started again"),
    ] {
        let (again, since) = restart(a, opts(vec![]), kill9, hold_port).await?;
        a = again;
        flows_both_ways(&a, &b, case, since).await?;
    }
    Ok(())
}

/// No bootstrap edge: A dialed B through the API once. Each daemon's
/// restart, and each host's (kill -9 and SIGTERM, started again at once on
/// its data dir), must bring the link back: the peers it knew are dialed
/// (REQ-SUP-1, audit rows 1, 2 and 18).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heals_a_link_made_by_dial() -> anyhow::Result<()> {
    let mut a = Host::start(opts(vec![])).await?;
    a.wait_healthy().await?;
    let mut b = Host::start(opts(vec![])).await?;
    b.wait_healthy().await?;
    let addr = b.first_listen_addr().await?;
    a.post_json("/api/dial", &serde_json::json!({ "addr": addr }))
        .await?;
    a.subscribe(TOPIC).await?;
    b.subscribe(TOPIC).await?;
    flows_both_ways(&a, &b, "dialed once", Instant::now()).await?;

    for (host, case) in [
        (&a, "kill -9 of the dialer's daemon"),
        (&b, "kill -9 of the dialed daemon"),
    ] {
        let old = host.running_daemon_pid().await?;
        signal(old, libc::SIGKILL);
        let since = Instant::now();
        replaced(host, old).await?;
        flows_both_ways(&a, &b, case, since).await?;
    }
    for (dialer, kill9, case) in [
        (true, true, "host kill -9 of the dialer"),
        (false, true, "host kill -9 of the dialed"),
        (true, false, "host SIGTERM of the dialer"),
        (false, false, "host SIGTERM of the dialed"),
    ] {
        let since = if dialer {
            let (again, since) = restart(a, opts(vec![]), kill9, false).await?;
            a = again;
            since
        } else {
            let (again, since) = restart(b, opts(vec![]), kill9, false).await?;
            b = again;
            since
        };
        flows_both_ways(&a, &b, case, since).await?;
    }
    Ok(())
}
