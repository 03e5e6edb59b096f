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
