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
