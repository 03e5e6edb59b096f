//! `hive up --durability fsync`: the API answers a publish only after the
//! WAL frames holding its outbox row were fsynced; in the default mode
//! (`normal`) no fsync lies between the row's write and the answer. Seen
//! from outside: a real host runs under `strace -f`, which records the
//! host's writes, fsyncs and socket writes in the order they happened.
//! (REQ-LOSS-10)
//!
//! Why strace's order is the order that matters: the HTTP answer is written
//! by a task that the writer thread wakes after its commit (and the commit's
//! fsync) returned, so the fsync's exit is reported before the answer's
//! `writev` is entered, whichever threads run them.
//!
//! The host's daemons follow its `--durability` for their history: with
//! `fsync`, a direct message a peer sent is fsynced in the daemon's
//! `history.db` before the daemon pushes it to its host (and acknowledges
//! it to the sender: both wait for the same commit). strace `-f` traces the
//! host's daemon too; the push is the daemon's IPC socket write holding the
//! message's payload in base64.

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use hive_tests::{pid_alive, signal, Daemon, Host, HostOpts, DEADLINE};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The syscalls that write data, sync it, or send the answer.
const TRACED: &str = "trace=write,pwrite64,pwritev,pwritev2,writev,sendto,sendmsg,fsync,fdatasync";

/// What the trace of one publish shows.
#[derive(Debug)]
struct Publish {
    /// Line of the WAL write holding the row (its payload).
    row_written: usize,
    /// Line of the first socket write of the 200 answer.
    answered: usize,
    /// Lines where an fsync or fdatasync of the WAL returned.
    wal_synced: Vec<usize>,
}

impl Publish {
    fn syncs_before_answer(&self) -> usize {
        self.wal_synced
            .iter()
            .filter(|&&l| l > self.row_written && l < self.answered)
            .count()
    }
}

fn strace() -> Result<()> {
    let ok = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!("strace is not installed (scripts/test installs it with apt-get)");
    }
    Ok(())
}

/// The pid of `hive` itself: the only child of the strace process.
fn traced_child(strace_pid: i32) -> Result<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children"))?;
    children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .context("strace has no child process")
}

/// Start a host under strace in `mode`, publish one message, stop the host,
/// and read the trace.
async fn traced_publish(mode: &str) -> Result<Publish> {
    strace()?;
    let trace_dir = tempfile::tempdir()?;
    let trace = trace_dir.path().join("trace");
    let mut host = Host::start(HostOpts {
        wrapper: vec![
            "strace".into(),
            "-f".into(),
            "-y".into(),
            "-s".into(),
            "8192".into(),
            "-e".into(),
            TRACED.into(),
            "-o".into(),
            trace.display().to_string(),
        ],
        extra_args: vec!["--durability".into(), mode.into()],
        ..Default::default()
    })
    .await?;
    let hive_pid = traced_child(host.pid)?;
    let stop = StopOnDrop(hive_pid);
    host.wait_healthy().await?;
    let key = format!("probe-{mode}-{}", std::process::id());
    let payload = format!("durable-payload-{key}");
    let answer = reqwest::Client::new()
        .post(host.url("/api/topics/durability/publish"))
        .header("Idempotency-Key", &key)
        .body(payload.clone())
        .send()
        .await?;
    assert_eq!(answer.status(), 200, "publish answered {}", answer.status());
    let body: serde_json::Value = answer.json().await?;
    assert_eq!(body["id"], key.as_str());
    // Stop the host; strace ends with it and has written everything.
    drop(stop);
    tokio::time::timeout(DEADLINE, host.child.wait())
        .await
        .context("strace did not end with the host")??;
    let wal = format!("{}/hive.db-wal>", host.data_dir.path().display());
    let text = std::fs::read_to_string(&trace)?;
    parse(&text, &wal, &payload, &["HTTP/1.1 200", &key])
}

/// SIGTERM to the traced host when the test ends, however it ends.
struct StopOnDrop(i32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if pid_alive(self.0) {
            signal(self.0, libc::SIGTERM);
        }
    }
}

/// Find the row's WAL write, the answer (the first socket write holding
/// every one of `answer`), and every completed WAL sync.
fn parse(text: &str, wal: &str, payload: &str, answer: &[&str]) -> Result<Publish> {
    let mut row_written = None;
    let mut answered = None;
    let mut wal_synced = Vec::new();
    // Threads with a WAL sync entered but not yet returned.
    let mut syncing = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let Some((pid, call)) = line.split_once(' ') else {
            continue;
        };
        let call = call.trim_start();
        let is_sync = call.starts_with("fsync(") || call.starts_with("fdatasync(");
        if is_sync && call.contains(wal) {
            if call.contains("<unfinished ...>") {
                syncing.insert(pid.to_owned());
            } else if call.ends_with("= 0") {
                wal_synced.push(i);
            }
        } else if (call.starts_with("<... fsync resumed>")
            || call.starts_with("<... fdatasync resumed>"))
            && syncing.remove(pid)
            && call.ends_with("= 0")
        {
            wal_synced.push(i);
        } else if row_written.is_none()
            && call.starts_with("pwrite")
            && call.contains(wal)
            && call.contains(payload)
        {
            row_written = Some(i);
        } else if answered.is_none()
            && ["writev(", "write(", "sendto(", "sendmsg("]
                .iter()
                .any(|c| call.starts_with(c))
            && call.contains("socket:")
            && answer.iter().all(|a| call.contains(a))
        {
            answered = Some(i);
        }
    }
    let row_written = row_written.context("no WAL write with the payload in the trace")?;
    let answered = answered.context("no answer on a socket in the trace")?;
    if answered < row_written {
        bail!("the answer (line {answered}) came before the row was written (line {row_written})");
    }
    Ok(Publish {
        row_written,
        answered,
        wal_synced,
    })
}

#[tokio::test]
async fn with_fsync_the_wal_is_synced_before_the_publish_is_answered() -> Result<()> {
    let p = traced_publish("fsync").await?;
    println!("fsync mode: {p:?}");
    assert!(
        p.syncs_before_answer() >= 1,
        "no fsync of the WAL between the row's write and the answer: {p:?}"
    );
    Ok(())
}

#[tokio::test]
async fn by_default_the_publish_is_answered_without_an_fsync() -> Result<()> {
    let p = traced_publish("normal").await?;
    println!("normal mode: {p:?}");
    // The same trace and parser find no sync here: the fsync test's
    // finding is the flag's doing, not strace's or the parser's.
    assert_eq!(p.syncs_before_answer(), 0, "{p:?}");
    Ok(())
}

/// Start host B under strace in `mode`, have a bare daemon A send B one
/// direct message, stop B, and read the trace of B's daemon's history.
async fn traced_direct(mode: &str) -> Result<Publish> {
    use base64::Engine;
    strace()?;
    let trace_dir = tempfile::tempdir()?;
    let trace = trace_dir.path().join("trace");
    let mut host = Host::start(HostOpts {
        wrapper: vec![
            "strace".into(),
            "-f".into(),
            "-y".into(),
            "-s".into(),
            "8192".into(),
            "-e".into(),
            TRACED.into(),
            "-o".into(),
            trace.display().to_string(),
        ],
        extra_args: vec!["--durability".into(), mode.into()],
        ..Default::default()
    })
    .await?;
    let hive_pid = traced_child(host.pid)?;
    let stop = StopOnDrop(hive_pid);
    host.wait_healthy().await?;
    let b_addr = host.first_listen_addr().await?;
    let b_id = host.peer_id().await?;
    let dir = tempfile::tempdir()?;
    let a = Daemon::start(dir.path(), "durability-token", &["--bootstrap", &b_addr]).await?;
    let mut ws = a.ipc().await?;
    let payload = format!("durable-direct-{mode}-{}", std::process::id());
    let data = base64::engine::general_purpose::STANDARD.encode(&payload);
    let req = json!({"type": "request", "id": 1, "op": "send",
        "args": {"peer_id": b_id, "data": data, "id": format!("direct-{mode}")}});
    ws.send(Message::text(req.to_string())).await?;
    // A's answer: B acknowledged, so B's daemon has the message.
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .context("no answer to the send")?
            .context("A's IPC closed")??;
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str())?;
        if v["type"] == "response" && v["id"] == 1 {
            anyhow::ensure!(v["error"].is_null(), "send refused: {v}");
            break;
        }
    }
    drop(stop);
    tokio::time::timeout(DEADLINE, host.child.wait())
        .await
        .context("strace did not end with the host")??;
    let text = std::fs::read_to_string(&trace)?;
    parse(&text, "history.db-wal>", &payload, &[&data])
}

#[tokio::test]
async fn with_fsync_the_daemons_history_is_synced_before_a_message_is_pushed() -> Result<()> {
    let p = traced_direct("fsync").await?;
    println!("fsync mode, daemon history: {p:?}");
    assert!(
        p.syncs_before_answer() >= 1,
        "no fsync of history.db's WAL between the message's write and its push: {p:?}"
    );
    Ok(())
}

#[tokio::test]
async fn by_default_the_daemons_history_pushes_without_an_fsync() -> Result<()> {
    let p = traced_direct("normal").await?;
    println!("normal mode, daemon history: {p:?}");
    assert_eq!(p.syncs_before_answer(), 0, "{p:?}");
    Ok(())
}
