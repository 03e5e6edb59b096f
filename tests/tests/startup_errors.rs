//! A daemon that cannot start says why and what to do (issue 15), instead
//! of go-libp2p-daemon's "failed to start in 15 s": a data directory that
//! cannot be created, a listen port another process holds, an identity file
//! that is not a key. Each exits non-zero at once with the cause and the fix.
//! A data directory another daemon is using is waited for (a stopping
//! predecessor lets go within seconds), then refused with that daemon's pid.

use hive_tests::{daemon_bin, Daemon};

/// Start a daemon that must fail; one that is still running after a minute
/// (it started anyway) fails the test instead of hanging it.
async fn start_fails(args: &[&str]) -> anyhow::Result<String> {
    let run = tokio::process::Command::new(daemon_bin())
        .args(args)
        .args(["--no-mdns", "--ipc", "127.0.0.1:0"])
        .env(hive_proto::ENV_IPC_TOKEN, "startup-errors")
        .env("RUST_LOG", "off")
        .kill_on_drop(true)
        .output();
    let Ok(out) = tokio::time::timeout(std::time::Duration::from_secs(60), run).await else {
        anyhow::bail!("still running a minute later, started anyway: {args:?}");
    };
    let out = out?;
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

/// Two daemons on one data directory would be one identity twice and two
/// writers of one history (whose second writer's transactions fail with
/// "database is locked", losing what they carried). The second waits for
/// the first to exit, is refused with its pid when it does not, and the
/// first goes on unharmed.
#[tokio::test]
async fn a_data_directory_in_use_is_refused_and_its_user_keeps_running() -> anyhow::Result<()> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir()?;
    let first = Daemon::start(dir.path(), "startup-errors", &[]).await?;
    let pid = first.child.id().unwrap_or_default();
    let err = start_fails(&["--data-dir", &dir.path().to_string_lossy()]).await?;
    assert!(
        err.contains("is in use by another hive-p2pd")
            && err.contains(&format!("(pid {pid})"))
            && err.contains("--data-dir"),
        "{err}"
    );
    let mut ipc = first.ipc().await?;
    let req = serde_json::json!({"type": "request", "id": 1, "op": "status"});
    ipc.send(Message::text(req.to_string())).await?;
    let answer = loop {
        let Some(Ok(Message::Text(text))) = ipc.next().await else {
            anyhow::bail!("the first daemon did not answer after the refusal");
        };
        let v: serde_json::Value = serde_json::from_str(text.as_str())?;
        if v["type"] == "response" {
            break v;
        }
    };
    assert_eq!(
        answer["result"]["peer_id"],
        first.peer_id().as_str(),
        "{answer}"
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
