//! What operators and clients are told when things go wrong, checked from
//! outside with real processes: τ and /healthz while the daemon cannot run
//! (REQ-TEN-1, REQ-API-1), a child of the hive that cannot come back (REQ-TEN-1), an IPC client that never says hello (REQ-IPC-1),
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

/// The API address from the first stdout line of a `hive up` child
/// (`{"event":"listening","http":…}`); the rest of stdout is drained.
async fn listening_api(child: &mut tokio::process::Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await??
        .expect("a listening line");
    let api = serde_json::from_str::<Value>(&first)?["http"]
        .as_str()
        .expect("http in the listening line")
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(api)
}

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
    let api = listening_api(&mut child).await?;
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
/// A child of the hive that cannot come back counts in the first node's
/// tension (audit row 31): one of two children crash-looping (its identity
/// key made unreadable, then the daemon killed) gives `children_down` = 1/2,
/// as docs/01_ARCHITECTURE.md defines it (children not running over
/// children), and it goes back to 0 once the child runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_cannot_come_back_counts_in_the_hives_tension() -> anyhow::Result<()> {
    let host = hive_tests::Host::start(hive_tests::HostOpts {
        extra_args: vec!["--nodes".into(), "3".into()],
        ..Default::default()
    })
    .await?;
    host.wait_healthy().await?;
    let nodes = wait_for("three running nodes", || async {
        let all = host.get("/api/nodes").await.ok()?;
        let all = all.as_array()?.clone();
        (all.len() == 3 && all.iter().all(|n| n["state"] == "running")).then_some(all)
    })
    .await?;
    let child = nodes.iter().find(|n| n["id"] == "n1").expect("a child n1");
    let pid = child["pid"].as_i64().expect("a running child has a pid") as i32;
    let key = host.data_dir.path().join("nodes/n1/daemon/identity.key");
    let good = std::fs::read(&key)?;
    std::fs::write(&key, b"not a key")?;
    hive_tests::signal(pid, libc::SIGKILL);

    let signal = |name: &'static str| {
        let host = &host;
        async move {
            let t = host.get("/api/tension").await.ok()?;
            t["signals"][name].as_f64()
        }
    };
    wait_for("children_down at 1 of 2", || async {
        (signal("children_down").await? == 0.5).then_some(())
    })
    .await?;
    let n1 = host.get("/api/nodes/n1").await?;
    assert_ne!(n1["state"], "running", "{n1}");

    std::fs::write(&key, good)?;
    wait_for("children_down back at 0", || async {
        (signal("children_down").await? == 0.0).then_some(())
    })
    .await?;
    Ok(())
}

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
    ws.send(ask(
        json!({"op": "send", "args": {"peer_id": a.peer_id(), "data": "aGk="}}),
    ))
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

/// Lines of `child`'s stderr, gathered in the background.
fn gather_stderr(
    child: &mut tokio::process::Child,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    if let Some(stderr) = child.stderr.take() {
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
    }
    lines
}

/// The `trace` field of the daemon's `ipc_request` spans, from its JSON log.
fn traces_logged(lines: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
    let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            v["spans"].as_array()?.iter().find_map(|s| {
                (s["name"] == "ipc_request").then(|| s["trace"].as_str().map(str::to_owned))?
            })
        })
        .collect()
}

/// REQ-OBS-3: the id of an HTTP request reaches the daemon's log (the
/// `ipc_request` span, JSON logs), and a trace id an IPC client sends is cut
/// to 64 printable characters there, whatever it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_reach_the_daemons_log_cut_and_printable() -> anyhow::Result<()> {
    let dir = tempfile::TempDir::new()?;
    let mut child = Command::new(hive_bin())
        .args(["--log-format", "json", "up", "--data-dir"])
        .arg(dir.path())
        .args(["--http", "127.0.0.1:0", "--no-mdns"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .arg("--daemon-bin")
        .arg(hive_tests::daemon_bin())
        .env("RUST_LOG", "warn,hive_p2pd=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let logged = gather_stderr(&mut child);
    let api = listening_api(&mut child).await?;
    let http = reqwest::Client::new();
    wait_for("host healthy", || async {
        let r = http.get(format!("{api}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await?;

    let r = http
        .get(format!("{api}/api/peers"))
        .header("x-request-id", "follow-me-42")
        .send()
        .await?;
    assert!(r.status().is_success());
    wait_for("the request id in the daemon's log", || async {
        traces_logged(&logged)
            .iter()
            .any(|t| t == "follow-me-42")
            .then_some(())
    })
    .await?;

    // A raw IPC client with an unruly trace id: the daemon's data dir holds
    // no token for us, so start a second, bare daemon with a known one.
    let bare = tempfile::TempDir::new()?;
    let mut d = Command::new(hive_tests::daemon_bin())
        .args(["--log-format", "json", "--data-dir"])
        .arg(bare.path())
        .args([
            "--ipc",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
        ])
        .env(hive_proto::ENV_IPC_TOKEN, TOKEN)
        .env("RUST_LOG", "warn,hive_p2pd=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let bare_log = gather_stderr(&mut d);
    let out = d.stdout.take().expect("piped stdout");
    let ready_line = BufReader::new(out)
        .lines()
        .next_line()
        .await?
        .expect("ready line");
    let ready: Value = serde_json::from_str(&ready_line)?;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(ready["ipc"].as_str().expect("ipc url")).await?;
    let hello = json!({"type": "hello", "version": PROTOCOL_VERSION, "token": TOKEN});
    ws.send(Message::text(hello.to_string())).await?;
    let unruly = format!("ab\ncd\"{}", "x".repeat(200));
    let req = json!({"type": "request", "id": 1, "trace": unruly, "op": "status"});
    ws.send(Message::text(req.to_string())).await?;
    let seen = wait_for("the cut trace id in the bare daemon's log", || async {
        traces_logged(&bare_log).into_iter().next()
    })
    .await?;
    assert!(seen.starts_with("abcd"), "{seen:?}");
    assert!(seen.len() <= 64, "{} characters: {seen:?}", seen.len());
    assert!(seen.chars().all(|c| c.is_ascii_graphic()), "{seen:?}");
    let _ = child.kill().await;
    let _ = d.kill().await;
    Ok(())
}
