//! A daemon that cannot start says why and what to do (issue 15), instead
//! of go-libp2p-daemon's "failed to start in 15 s": a data directory that
//! cannot be created, a listen port another process holds, an identity file
//! that is not a key. Each exits non-zero at once with the cause and the fix.

use hive_tests::daemon_bin;

async fn start_fails(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(daemon_bin())
        .args(args)
        .args(["--no-mdns", "--ipc", "127.0.0.1:0"])
        .env(hive_proto::ENV_IPC_TOKEN, "startup-errors")
        .env("RUST_LOG", "off")
        .output()
        .await?;
    assert!(!out.status.success(), "started anyway: {args:?}");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn start_up_errors_name_the_cause_and_the_fix() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"")?;
    let under_file = file.join("data");
    let err = start_fails(&["--data-dir", &under_file.to_string_lossy()]).await?;
    assert!(
        err.contains("cannot create the data directory") && err.contains("--data-dir"),
        "{err}"
    );

    let held = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = held.local_addr()?.port();
    let data = dir.path().join("d1");
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let err = start_fails(&["--data-dir", &data.to_string_lossy(), "--listen", &listen]).await?;
    assert!(err.contains("another process holds this port"), "{err}");

    let data = dir.path().join("d2");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("identity.key"), b"not a key")?;
    let err = start_fails(&["--data-dir", &data.to_string_lossy()]).await?;
    assert!(
        err.contains("not a libp2p private key") && err.contains("move it away"),
        "{err}"
    );
    Ok(())
}

/// Some peer id that no daemon here has.
const NOBODY: &str = "12D3KooWAxMFWbZ8HCQDGvx43uuac9mLskM5BvUp9GhRVS45tV3j";

/// The first warning line of a daemon bootstrapped from `bootstrap` that
/// contains `want` (the daemon keeps running: a bootstrap peer may come).
async fn bootstrap_warning(bootstrap: &str, want: &str) -> anyhow::Result<String> {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(daemon_bin())
        .args([
            "--data-dir",
            &dir.path().to_string_lossy(),
            "--no-mdns",
            "--ipc",
            "127.0.0.1:0",
        ])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", bootstrap])
        .env(hive_proto::ENV_IPC_TOKEN, "startup-errors")
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if line.contains(want) {
                return anyhow::Ok(line);
            }
        }
        anyhow::bail!("stderr ended without {want:?}")
    })
    .await??;
    assert!(child.try_wait()?.is_none(), "the daemon keeps running");
    Ok(found)
}

/// An unreachable bootstrap peer, and one whose address another node
/// answers at: each a warning with the cause and the fix (issue 15).
#[tokio::test]
async fn bootstrap_problems_are_explained() -> anyhow::Result<()> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let line = bootstrap_warning(
        &format!("/ip4/127.0.0.1/tcp/{closed}/p2p/{NOBODY}"),
        "cannot reach bootstrap peer",
    )
    .await?;
    assert!(line.contains("hive doctor --bootstrap"), "{line}");

    let dir = tempfile::tempdir()?;
    let other = hive_tests::Daemon::start(dir.path(), "startup-errors", &[]).await?;
    let addr = other.ready["listen_addrs"][0].as_str().unwrap_or_default();
    let elsewhere = format!(
        "{}/p2p/{NOBODY}",
        addr.rsplit_once("/p2p/").map_or(addr, |(a, _)| a)
    );
    let line = bootstrap_warning(&elsewhere, "another node answers at its address").await?;
    assert!(line.contains(&other.peer_id()), "names who answers: {line}");
    Ok(())
}
