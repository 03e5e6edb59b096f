//! What operators and clients are told when things go wrong, checked from
//! outside with real processes: τ and /healthz while the daemon cannot run
//! (REQ-TEN-1, REQ-API-1), an IPC client that never says hello (REQ-IPC-1),
//! and a daemon's stdout holding nothing but its ready line (REQ-RDY-1).

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hive_proto::{close, PROTOCOL_VERSION};
use hive_tests::{hive_bin, wait_for, Daemon};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "observability-token-0123456789";

/// `hive up` whose daemon binary exits at once: the host keeps serving and
/// says exactly how bad it is. Expected values come from the documented
/// weights (docs/01_ARCHITECTURE.md, tension.rs): a down daemon has weight 1,
/// so τ is 1; `restarts` is restarts in the window over 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_cannot_start_shows_in_tension_and_health() -> anyhow::Result<()> {
    let dir = tempfile::TempDir::new()?;
    let fake = dir.path().join("crashing-daemon");
    std::fs::write(&fake, "#!/bin/sh\necho 'cannot start' >&2\nexit 1\n")?;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
    let data = dir.path().join("data");
    let mut child = Command::new(hive_bin())
        .arg("up")
        .arg("--data-dir")
        .arg(&data)
        .args(["--http", "127.0.0.1:0", "--no-mdns"])
        .arg("--daemon-bin")
        .arg(&fake)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await??
        .expect("a listening line");
    let listening: Value = serde_json::from_str(&first)?;
    let api = listening["http"].as_str().expect("http in the listening line");
    let http = reqwest::Client::new();

    // Two restarts at least (250 ms, then 500 ms of backoff).
    let tension: Value = wait_for("two restarts counted in tension", || async {
        let t: Value = http
            .get(format!("{api}/api/tension"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (t["signals"]["restarts"].as_f64()? >= 0.4).then_some(t)
    })
    .await?;
    assert_eq!(tension["value"].as_f64(), Some(1.0), "{tension}");
    assert_eq!(tension["signals"]["daemon_down"].as_f64(), Some(1.0));

    let health = http.get(format!("{api}/healthz")).send().await?;
    assert_eq!(health.status(), 503);
    let status: Value = http
        .get(format!("{api}/api/status"))
        .send()
        .await?
        .json()
        .await?;
    assert_ne!(status["daemon"]["state"], "running", "{status}");
    assert!(
        status["daemon"]["restarts"].as_u64().unwrap_or(0) >= 2,
        "{status}"
    );
    // The host itself is still alive and serving.
    assert!(child.try_wait()?.is_none());
    let _ = child.kill().await;
    Ok(())
}

/// A client that connects to the IPC and sends nothing is closed with 4003
/// and a reason, not left holding a connection open forever.
#[tokio::test]
async fn an_ipc_client_that_never_says_hello_is_closed_with_4003() -> anyhow::Result<()> {
    let dir = tempfile::TempDir::new()?;
    let d = Daemon::start(dir.path(), TOKEN, &[]).await?;
    let (mut ws, _) = tokio_tungstenite::connect_async(d.ipc_url()).await?;
    let frame = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await?
    .expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), close::HANDSHAKE_FAILED);
    assert!(frame.reason.contains("hello"), "reason: {}", frame.reason);
    Ok(())
}

/// REQ-RDY-1: after the ready line, stdout stays empty while the daemon
/// works (subscribe, publish, a peer connecting, a direct message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_stdout_holds_only_the_ready_line() -> anyhow::Result<()> {
    let da = tempfile::TempDir::new()?;
    let db = tempfile::TempDir::new()?;
    let a = Daemon::start(da.path(), TOKEN, &[]).await?;
    let first = a.ready["listen_addrs"][0]
        .as_str()
        .expect("a listen address")
        .to_string();
    let b = Daemon::start(db.path(), TOKEN, &["--bootstrap", &first]).await?;

    let (mut ws, _) = tokio_tungstenite::connect_async(b.ipc_url()).await?;
    let hello = json!({"type": "hello", "version": PROTOCOL_VERSION, "token": TOKEN});
    ws.send(Message::text(hello.to_string())).await?;
    let mut id = 0u64;
    let mut ask = |op: Value| {
        id += 1;
        let mut frame = json!({"type": "request", "id": id});
        if let (Some(f), Some(o)) = (frame.as_object_mut(), op.as_object()) {
            f.extend(o.clone());
        }
        Message::text(frame.to_string())
    };
    ws.send(ask(json!({"op": "subscribe", "args": {"topic": "quiet"}})))
        .await?;
    ws.send(ask(json!({"op": "send", "args": {"peer_id": a.peer_id(), "data": "aGk="}})))
        .await?;
    ws.send(ask(json!({"op": "peers"}))).await?;
    // Wait for the three answers (the send one proves B reached A).
    let mut answered = 0;
    while answered < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await?
            .expect("open IPC")?;
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str())?;
            if v["type"] == "response" {
                assert!(v.get("error").is_none_or(Value::is_null), "{v}");
                answered += 1;
            }
        }
    }
    assert_eq!(a.stdout_after_ready(), Vec::<String>::new());
    assert_eq!(b.stdout_after_ready(), Vec::<String>::new());
    Ok(())
}
