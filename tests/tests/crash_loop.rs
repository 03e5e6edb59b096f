//! Supervision when the daemon misbehaves in ways a kill -9 does not show
//! (audit row 45): a daemon binary that exits at once, over and over (a bad
//! install, a broken data directory), and a daemon hung when its host is
//! asked to stop. The host must keep serving, say what is going on, and stop
//! cleanly, leaving nothing behind.

use std::os::unix::fs::PermissionsExt;

use hive_tests::{pid_alive, pids_with_cmdline, signal, wait_for, Host, HostOpts};

/// A "daemon" that fails at start, as a broken install would.
fn failing_daemon(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("hive-p2pd-broken");
    std::fs::write(
        &path,
        "#!/bin/sh\necho 'cannot start: broken on purpose' >&2\nexit 3\n",
    )?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_exits_at_start_keeps_the_host_serving_and_stoppable() -> anyhow::Result<()> {
    let bin_dir = tempfile::tempdir()?;
    let mut host = Host::start(HostOpts {
        daemon_bin: Some(failing_daemon(bin_dir.path())?),
        ..Default::default()
    })
    .await?;
    // The host answers while its daemon cannot start, and says so.
    let st = wait_for("three failed starts", || async {
        let st = host.status().await.ok()?;
        (st["daemon"]["restarts"].as_u64()? >= 3).then_some(st)
    })
    .await?;
    assert_eq!(st["daemon"]["state"], "restarting", "{st}");
    assert!(st["daemon"]["pid"].is_null(), "{st}");
    assert_eq!(
        st["tension"], 1.0,
        "a host without a daemon is broken: {st}"
    );
    assert_eq!(st["signals"]["daemon_down"], 1.0, "{st}");
    let health = reqwest::get(format!("{}/healthz", host.api)).await?;
    assert_eq!(health.status(), 503, "healthz while the daemon is down");
    // A publish is accepted into the outbox meanwhile (nothing lost).
    host.publish("loop", b"kept for later".to_vec()).await?;
    // Stopping in the middle of a crash loop is prompt and clean.
    let status = host.terminate().await?;
    assert!(status.success(), "host exit status {status}");
    Ok(())
}

/// The next `count` `restarting` states on `events`: each one's announced
/// backoff (ms) and when it arrived.
async fn restart_delays(
    events: &mut hive_tests::EventStream,
    count: usize,
) -> anyhow::Result<Vec<(u64, std::time::Instant)>> {
    let mut seen = Vec::new();
    while seen.len() < count {
        let ev = events
            .next_within(std::time::Duration::from_secs(120))
            .await
            .ok_or_else(|| anyhow::anyhow!("no restart within 2 minutes after {seen:?}"))?;
        // `restarting` with a pid is the replacement starting: its wait
        // was announced before it, without one.
        if ev["type"] == "daemon" && ev["state"] == "restarting" && ev["pid"].is_null() {
            let ms = ev["restart_delay_ms"]
                .as_u64()
                .ok_or_else(|| anyhow::anyhow!("restarting without its delay: {ev}"))?;
            seen.push((ms, std::time::Instant::now()));
        }
    }
    Ok(seen)
}

/// The crash-loop backoff, end to end (audit row 45): while starts keep
/// failing each restart waits twice the one before, from 250 ms, as
/// announced on the event stream; and the host really waits at least that
/// long before the next start (a lower bound: it never restarts early).
/// The cap (30 s) is the backoff's unit test; reaching it here would take
/// a minute of failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_backs_off_doubling_from_a_quarter_second() -> anyhow::Result<()> {
    let bin_dir = tempfile::tempdir()?;
    let host = Host::start(HostOpts {
        daemon_bin: Some(failing_daemon(bin_dir.path())?),
        ..Default::default()
    })
    .await?;
    let mut events = host.events().await?;
    // The first restart may have been announced before the stream opened:
    // from the next one on, every one is seen.
    let seen = restart_delays(&mut events, 5).await?;
    let delays: Vec<u64> = seen.iter().map(|(ms, _)| *ms).collect();
    let first = delays[0];
    assert!(first >= 250, "{delays:?}");
    let doubled: Vec<u64> = (0..5).map(|k| (first << k).min(30_000)).collect();
    assert_eq!(delays, doubled, "each wait twice the one before");
    // Seen from here, each gap is the wait plus a failed start, less
    // however much later the first of the two events reached this client
    // than the second (CI measured a 250 ms wait as 248 ms): a tenth of the
    // wait is left for that. A restart without the wait (a failed start
    // takes milliseconds) still fails this.
    for pair in seen.windows(2) {
        let waited = pair[1].1.duration_since(pair[0].1);
        assert!(
            waited.as_millis() as u64 >= pair[0].0 * 9 / 10,
            "restarted after {waited:?}, announced {} ms: {delays:?}",
            pair[0].0
        );
    }
    Ok(())
}

/// After a daemon that ran for a minute, the backoff is back at its start
/// (audit row 45): three kills in a row grow it, then a minute of running
/// resets it to 250 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_ran_a_minute_restarts_after_the_shortest_wait() -> anyhow::Result<()> {
    let host = Host::start(HostOpts::default()).await?;
    host.wait_healthy().await?;
    let mut events = host.events().await?;
    let mut delays = Vec::new();
    for _ in 0..3 {
        let pid = host.running_daemon_pid().await?;
        signal(pid, libc::SIGKILL);
        delays.push(restart_delays(&mut events, 1).await?[0].0);
    }
    assert_eq!(delays, [250, 500, 1000], "kills in a row back off");
    let pid = host.running_daemon_pid().await?;
    // Past HEALTHY_AFTER (60 s) of running; a hang guard would be shorter.
    tokio::time::sleep(std::time::Duration::from_secs(62)).await;
    signal(pid, libc::SIGKILL);
    let after = restart_delays(&mut events, 1).await?[0].0;
    assert_eq!(after, 250, "a minute of running resets the backoff");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_stopped_while_its_daemon_hangs_leaves_no_process() -> anyhow::Result<()> {
    let mut host = Host::start(HostOpts::default()).await?;
    host.wait_healthy().await?;
    let daemon = host.daemon_pid().await?.expect("daemon pid");
    let dir = host.data_dir.path().to_string_lossy().to_string();
    // Hung: alive, deaf to SIGTERM until continued, answering nothing.
    signal(daemon, libc::SIGSTOP);
    let status = host.terminate().await?;
    assert!(status.success(), "host exit status {status}");
    // By the time the host has exited, its daemon is gone (SIGKILL after
    // the stop grace), not left stopped for ever.
    assert!(!pid_alive(daemon), "hung daemon {daemon} outlived its host");
    assert_eq!(pids_with_cmdline(&dir), Vec::<i32>::new());
    Ok(())
}
