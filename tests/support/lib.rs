//! Support for Hive's end-to-end tests: start real `hive` hosts and real
//! `hive-p2pd` daemons on loopback, talk to them over their real sockets, and
//! look at real processes in `/proc`.
//!
//! Nothing here is a mock. Waiting is done with generous deadlines that only
//! bound how long a broken build can hang a test; no test asserts how fast
//! anything happened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

pub mod api;
pub mod flood;
pub mod nat;
pub mod netns;

/// How long any single wait may take before the test gives up. Deliberately
/// large: it is a hang guard for a 2-core CI machine, not a performance claim.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Log filter for the processes a test starts: quiet unless asked
/// (`HIVE_TEST_LOG=debug cargo test ...`).
fn child_log_filter() -> String {
    std::env::var("HIVE_TEST_LOG").unwrap_or_else(|_| "warn".to_string())
}

/// Directory holding the built `hive` and `hive-p2pd` binaries.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HIVE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile)
}

pub fn hive_bin() -> PathBuf {
    bin_dir().join("hive")
}

pub fn daemon_bin() -> PathBuf {
    bin_dir().join("hive-p2pd")
}

/// Poll `check` until it returns `Some`, or fail after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > DEADLINE {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state is the first field after the parenthesised command.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

/// Pids of live processes whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && pid_alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// Send `sig` to `pid`. For SIGSTOP, return only once every thread of the
/// process has stopped: kill(2) only queues the signal, and a process whose
/// signalled thread sits in an uninterruptible wait (a page fault on a slow
/// disk, an fsync) keeps running until that wait ends. A test that means
/// "this peer is hung" must not start while it still answers.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
    if sig == libc::SIGSTOP {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(
                Instant::now() < deadline,
                "process {pid} did not stop within 10 s of SIGSTOP"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Whether the kernel reports every thread of `pid` stopped (state T or t).
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            return false;
        };
        // The state follows the command name, which is in parentheses and
        // may itself hold spaces.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if !matches!(state, Some("T" | "t")) {
            return false;
        }
        any = true;
    }
    any
}

/// Options for one host.
#[derive(Debug, Clone, Default)]
pub struct HostOpts {
    pub bootstrap: Vec<String>,
    pub mdns: bool,
    /// Listen addresses for the daemon; loopback TCP when empty.
    pub listen: Vec<String>,
    /// Pass no `--listen` at all: the product's defaults (every interface,
    /// TCP and QUIC), as a user who sets nothing gets them.
    pub default_listen: bool,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<String>,
    pub extra_args: Vec<String>,
    /// Another daemon binary than the workspace's `hive-p2pd` (`--daemon-bin`).
    pub daemon_bin: Option<PathBuf>,
    /// Run `hive` under this command (e.g. `strace -f -o FILE`); the host's
    /// `pid` is then the wrapper's.
    pub wrapper: Vec<String>,
}

/// A running `hive up` process with its own data directory.
pub struct Host {
    pub child: Child,
    pub pid: i32,
    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:41234`.
    pub api: String,
    pub data_dir: tempfile::TempDir,
    pub netns: Option<String>,
    http: reqwest::Client,
}

impl Host {
    pub async fn start(opts: HostOpts) -> Result<Host> {
        let data_dir = tempfile::Builder::new().prefix("hive-test-").tempdir()?;
        Self::start_in(opts, data_dir).await
    }

    /// Start a host on an existing data directory (to test restarts).
    pub async fn start_in(opts: HostOpts, data_dir: tempfile::TempDir) -> Result<Host> {
        let hive = hive_bin();
        if !hive.exists() {
            bail!(
                "{} not built; run `cargo build --workspace` first",
                hive.display()
            );
        }
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&hive);
                c
            }
            None => match opts.wrapper.split_first() {
                Some((prog, args)) => {
                    let mut c = Command::new(prog);
                    c.args(args).arg(&hive);
                    c
                }
                None => Command::new(&hive),
            },
        };
        cmd.arg("up")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--http", "127.0.0.1:0"])
            .arg("--daemon-bin")
            .arg(opts.daemon_bin.clone().unwrap_or_else(daemon_bin));
        let listen = if opts.default_listen {
            Vec::new()
        } else if opts.listen.is_empty() {
            vec!["/ip4/127.0.0.1/tcp/0".to_string()]
        } else {
            opts.listen.clone()
        };
        for l in &listen {
            cmd.args(["--listen", l]);
        }
        for b in &opts.bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        if !opts.mdns {
            cmd.arg("--no-mdns");
        }
        cmd.args(&opts.extra_args);
        cmd.env("RUST_LOG", child_log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("spawning hive up")?;
        let pid = child.id().ok_or_else(|| anyhow!("hive exited at once"))? as i32;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .context("hive printed no listening line in time")??
            .ok_or_else(|| anyhow!("hive closed stdout without a listening line"))?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("hive's first stdout line is not JSON: {line:?}"))?;
        let api = v["http"]
            .as_str()
            .ok_or_else(|| anyhow!("listening line without http: {line}"))?
            .to_string();
        // Keep draining stdout so the host never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let host = Host {
            child,
            pid,
            api,
            data_dir,
            netns: opts.netns.clone(),
            http,
        };
        Ok(host)
    }

    /// Wait until `/healthz` says the daemon is running.
    pub async fn wait_healthy(&self) -> Result<()> {
        wait_for("host healthy", || async {
            match self.http.get(self.url("/healthz")).send().await {
                Ok(r) if r.status().is_success() => Some(()),
                _ => None,
            }
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.api, path)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let r = self.http.get(self.url(path)).send().await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<Value> {
        let r = self.http.post(self.url(path)).body(body).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self.http.post(self.url(path)).json(body).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("POST {path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    pub async fn status(&self) -> Result<Value> {
        self.get("/api/status").await
    }

    pub async fn peer_id(&self) -> Result<String> {
        Ok(self.status().await?["peer_id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The daemon's first listen address (a full multiaddr with `/p2p/`).
    pub async fn first_listen_addr(&self) -> Result<String> {
        let st = self.status().await?;
        st["listen_addrs"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no listen addrs in {st}"))
    }

    pub async fn daemon_pid(&self) -> Result<Option<i32>> {
        Ok(self.status().await?["daemon"]["pid"]
            .as_i64()
            .map(|p| p as i32))
    }

    /// The pid of this host's daemon once it is running (waited for: it
    /// may be restarting).
    pub async fn running_daemon_pid(&self) -> Result<i32> {
        wait_for("a running daemon", || async {
            let st = self.status().await.ok()?;
            (st["daemon"]["state"] == "running")
                .then(|| st["daemon"]["pid"].as_i64())
                .flatten()
        })
        .await
        .map(|pid| pid as i32)
    }

    pub async fn subscribe(&self, topic: &str) -> Result<()> {
        self.post(&format!("/api/topics/{topic}/subscribe"), Vec::new())
            .await?;
        Ok(())
    }

    pub async fn publish(&self, topic: &str, data: Vec<u8>) -> Result<String> {
        let v = self
            .post(&format!("/api/topics/{topic}/publish"), data)
            .await?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("publish answered without id: {v}"))
    }

    /// Number of remote peers the host sees in `topic`.
    pub async fn topic_peers(&self, topic: &str) -> Result<u64> {
        let topics = self.get("/api/topics").await?;
        Ok(topics
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["topic"] == topic)
            .and_then(|t| t["peers"].as_u64())
            .unwrap_or(0))
    }

    /// Wait until both this host and the daemon mesh see another peer in the topic.
    pub async fn wait_topic_peers(&self, topic: &str, n: u64) -> Result<()> {
        wait_for(&format!("{n} peer(s) in topic {topic}"), || async {
            match self.topic_peers(topic).await {
                Ok(p) if p >= n => Some(()),
                _ => None,
            }
        })
        .await
    }

    /// Open the `/api/events` WebSocket.
    pub async fn events(&self) -> Result<EventStream> {
        self.events_at("/api/events").await
    }

    /// `/api/events?after=CURSOR`: what a client resuming with its last
    /// cursor connects to.
    pub async fn events_after(&self, cursor: u64) -> Result<EventStream> {
        self.events_at(&format!("/api/events?after={cursor}")).await
    }

    async fn events_at(&self, path: &str) -> Result<EventStream> {
        let url = self.url(path).replacen("http", "ws", 1);
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .with_context(|| format!("connecting {url}"))?;
        Ok(EventStream { ws })
    }

    /// The `/api/events` WebSocket, also of a host inside a network
    /// namespace (connected from inside it).
    pub async fn events_anywhere(&self) -> Result<EventStream> {
        let Some(ns) = &self.netns else {
            return self.events().await;
        };
        let addr: std::net::SocketAddr = self
            .api
            .trim_start_matches("http://")
            .parse()
            .context("the API address")?;
        let tcp = netns::connect_in(ns, addr)?;
        tcp.set_nonblocking(true)?;
        let tcp = tokio::net::TcpStream::from_std(tcp)?;
        let url = format!("{}/api/events", self.api.replacen("http", "ws", 1));
        let (ws, _) =
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
                .await
                .context("WebSocket handshake")?;
        Ok(EventStream { ws })
    }

    /// The payloads (as text) of every message of `topic` the host stored,
    /// in stored order, read through `/api/messages` a page at a time.
    pub async fn stored_payloads(&self, topic: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut after = 0u64;
        loop {
            let page = self
                .get(&format!(
                    "/api/messages?topic={topic}&after={after}&limit=1000"
                ))
                .await?;
            let rows = page["messages"].as_array().cloned().unwrap_or_default();
            for row in &rows {
                out.push(String::from_utf8(event_bytes(row)?)?);
            }
            after = page["cursor"].as_u64().unwrap_or(after);
            if rows.len() < 1000 {
                return Ok(out);
            }
        }
    }

    /// The value of counter `hive_<name>_total` in the host's `/metrics`.
    pub async fn counter(&self, name: &str) -> Result<u64> {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let metric = format!("hive_{name}_total ");
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(&metric))
            .ok_or_else(|| anyhow!("no {metric}in /metrics"))?;
        Ok(value.trim().parse()?)
    }

    /// Send SIGKILL to the host process only (its daemon must notice by itself).
    pub fn kill9(&self) {
        signal(self.pid, libc::SIGKILL);
    }

    /// Send SIGTERM and wait for the host to exit.
    pub async fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        signal(self.pid, libc::SIGTERM);
        Ok(tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .context("host did not exit after SIGTERM")??)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // A polite stop so that each test leaves no daemon behind; the
        // `kill_on_drop` SIGKILL follows if the host is still there.
        if pid_alive(self.pid) {
            signal(self.pid, libc::SIGTERM);
            let start = Instant::now();
            while pid_alive(self.pid) && start.elapsed() < Duration::from_secs(10) {
                let _ = self.child.try_wait();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Host A on `opts`, and host B on the same options bootstrapped from the
/// first address A reports; both healthy.
pub async fn two_connected_hosts(opts: HostOpts) -> Result<(Host, Host)> {
    let a = Host::start(opts.clone()).await?;
    a.wait_healthy().await?;
    let b = Host::start(HostOpts {
        bootstrap: vec![a.first_listen_addr().await?],
        ..opts
    })
    .await?;
    b.wait_healthy().await?;
    Ok((a, b))
}

/// `count` hosts on default options, in start order, each bootstrapped
/// from all the ones before it, all subscribed to `topic` and each seeing
/// the others on it.
pub async fn hosts_on_topic(count: usize, topic: &str) -> Result<Vec<Host>> {
    let mut hosts: Vec<Host> = Vec::with_capacity(count);
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count {
        let host = Host::start(HostOpts {
            bootstrap: addrs.clone(),
            ..Default::default()
        })
        .await?;
        host.wait_healthy().await?;
        addrs.push(host.first_listen_addr().await?);
        hosts.push(host);
    }
    for host in &hosts {
        host.subscribe(topic).await?;
    }
    for host in &hosts {
        host.wait_topic_peers(topic, count as u64 - 1).await?;
    }
    Ok(hosts)
}

/// The `/api/events` WebSocket of a host.
pub struct EventStream {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl EventStream {
    /// Wrap a WebSocket opened by the test itself (e.g. with `?after=`).
    pub fn from_ws(
        ws: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) -> Self {
        EventStream { ws }
    }

    /// Next JSON event, or `None` when the deadline passes or the stream ends.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??
                .ok()?;
            match msg {
                Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Collect events of `kind` until `count` were seen or the deadline passes.
    pub async fn collect(&mut self, kind: &str, count: usize, limit: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        while out.len() < count {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.next_within(left).await {
                Some(ev) if ev["type"] == kind => out.push(ev),
                Some(_) => {}
                None => break,
            }
        }
        out
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Decode the base64 `data` field of an event.
pub fn event_bytes(ev: &Value) -> Result<Vec<u8>> {
    let data = ev["data"]
        .as_str()
        .ok_or_else(|| anyhow!("event without data: {ev}"))?;
    Ok(B64.decode(data)?)
}

/// Count occurrences of each value, to find duplicates.
pub fn histogram<I: IntoIterator<Item = String>>(items: I) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for i in items {
        *h.entry(i).or_insert(0) += 1;
    }
    h
}

/// A `hive-p2pd` started directly (no host), with a known IPC token.
pub struct Daemon {
    pub child: Child,
    pub ready: Value,
    pub token: String,
    pub data_dir: PathBuf,
    /// Lines the daemon wrote to stdout after its ready line (must stay empty).
    pub extra_stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    pub async fn start(data_dir: &Path, token: &str, extra: &[&str]) -> Result<Daemon> {
        let mut child = Command::new(daemon_bin())
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--ipc",
                "127.0.0.1:0",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
            ])
            .args(extra)
            .env(hive_proto::ENV_IPC_TOKEN, token)
            .env("RUST_LOG", child_log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning hive-p2pd")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .context("daemon not ready in time")??
            .ok_or_else(|| anyhow!("daemon closed stdout before ready"))?;
        let ready: Value = serde_json::from_str(&line)
            .with_context(|| format!("ready line is not JSON: {line:?}"))?;
        // The daemon promised stdout carries nothing but the ready line:
        // keep whatever else appears, for tests to check.
        let extra_stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = extra_stdout.clone();
        tokio::spawn(async move {
            while let Ok(Some(extra)) = lines.next_line().await {
                if let Ok(mut lines) = sink.lock() {
                    lines.push(extra);
                }
            }
        });
        Ok(Daemon {
            child,
            ready,
            token: token.to_string(),
            data_dir: data_dir.to_path_buf(),
            extra_stdout,
        })
    }

    pub fn ipc_url(&self) -> String {
        self.ready["ipc"].as_str().unwrap_or_default().to_string()
    }

    /// Lines written to stdout after the ready line so far.
    pub fn stdout_after_ready(&self) -> Vec<String> {
        self.extra_stdout
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    pub fn peer_id(&self) -> String {
        self.ready["peer_id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// An IPC connection past its handshake (frames up to 64 MiB).
    pub async fn ipc(&self) -> Result<IpcWs> {
        use futures::SinkExt;
        let mut cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        cfg.max_message_size = Some(64 << 20);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(self.ipc_url(), Some(cfg), false).await?;
        let hello = serde_json::json!({"type": "hello",
            "version": hive_proto::PROTOCOL_VERSION, "token": self.token});
        ws.send(Message::text(hello.to_string())).await?;
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            bail!("no welcome from the daemon");
        };
        let v: Value = serde_json::from_str(t.as_str())?;
        anyhow::ensure!(v["type"] == "welcome", "{v}");
        Ok(ws)
    }
}

/// A client's WebSocket to a daemon's IPC.
pub type IpcWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The value of one sample (name with its labels) in a Prometheus text page.
pub fn metric_sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

impl Host {
    /// Run a `hive` CLI client command against this host (inside its network
    /// namespace if it has one) and parse its stdout as JSON.
    pub async fn cli_json(&self, args: &[&str]) -> Result<Value> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(hive_bin());
                c
            }
            None => Command::new(hive_bin()),
        };
        let out = cmd
            .args(args)
            .args(["--api", &self.api])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running the hive CLI")?;
        if !out.status.success() {
            bail!(
                "hive {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "hive {} printed no JSON: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}
