//! Supervision of the one `hive-p2pd` daemon the host owns.
//!
//! The daemon is the only thing touching the network; the host keeps the
//! *intent* of its API clients (which topics they subscribed) so that a
//! crashed or hung daemon can be replaced by a new one that looks the same
//! from outside. The rest of coming back as the same node is the daemon's
//! own (one restart policy for every supervisor): same data dir and so the
//! same identity; and in it `node-state.json`, from which the new daemon
//! binds the ports it had and dials the peers it knew (see
//! `hive_node::memory`).
//!
//! States: `starting` → `running` → `restarting` → `running` … → `stopped`.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hive_proto::{Event, Op, ReadyLine, StatusResult, ENV_EXIT_WITH_PARENT, ENV_IPC_TOKEN};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::broadcast;

use crate::inbound::{Inbound, InboundStats};
use tokio_util::sync::CancellationToken;

use crate::ipc_client::{IpcClient, IpcStats};
use crate::metrics::Metrics;
use crate::state::{DaemonSnapshot, DaemonState, HostEvent, HostStatus};
use crate::store::Store;
use crate::tension::{self, Tension};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive failed health pings after which the daemon counts as hung.
const HEALTH_FAILURES: u32 = 3;
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A daemon that ran this long resets the backoff.
const HEALTHY_RESET: Duration = Duration::from_secs(60);
/// How long a daemon whose IPC link closed may take to exit by itself.
const LINK_LOSS_GRACE: Duration = Duration::from_secs(3);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const RESUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Capacity of the host event channel fanned out to WebSocket clients.
pub const HOST_EVENT_CAPACITY: usize = 16_384;

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub daemon: DaemonSettings,
    /// The daemon's own data dir (`<host data dir>/daemon`).
    pub data_dir: PathBuf,
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
    /// Secret for the IPC hello, handed over in the environment.
    pub token: String,
}

/// How a host starts its daemons: the same for the first node and every
/// child, so that a spawned node behaves like the first.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub daemon_bin: PathBuf,
    pub no_mdns: bool,
    pub log_format: String,
    /// Connected peers below which the `peers_below_target` signal rises.
    pub peer_target: usize,
    /// Relays each daemon keeps a slot on (`--relay`), for nodes that
    /// others cannot dial.
    pub relays: Vec<String>,
    /// Each daemon also serves as a relay (`--relay-service`).
    pub relay_service: bool,
    /// The connection manager's watermarks (`--conn-low`, `--conn-high`);
    /// `None`: the daemon's defaults.
    pub conn_low: Option<usize>,
    pub conn_high: Option<usize>,
}

/// How much τ history each node keeps: 15 minutes at one sample per 5 s.
pub const TENSION_HISTORY_LEN: usize = 180;

#[derive(Debug)]
struct Status {
    state: DaemonState,
    pid: Option<u32>,
    restarts: u64,
    restart_times: VecDeque<Instant>,
    peer_id: String,
    listen_addrs: Vec<String>,
    peers: usize,
    daemon_version: Option<String>,
    /// When event-stream clients were dropped for falling behind.
    drop_times: VecDeque<Instant>,
    /// When the current daemon became ready.
    running_since: Option<Instant>,
    /// `(unix ms, τ)` samples, oldest first.
    tension_history: VecDeque<(u64, f64)>,
}

impl Status {
    fn uptime_secs(&self) -> Option<f64> {
        self.running_since.map(|t| t.elapsed().as_secs_f64())
    }
}

struct Shared {
    config: SupervisorConfig,
    status: Mutex<Status>,
    /// Present only while the daemon is running.
    client: Mutex<Option<IpcClient>>,
    /// Topics the API subscribed; replayed on every new daemon.
    topics: Mutex<BTreeSet<String>>,
    events: broadcast::Sender<HostEvent>,
    /// Where received messages are stored (deduplicated) before they are
    /// broadcast.
    store: Store,
    stats: Arc<IpcStats>,
    metrics: Arc<Metrics>,
    /// How the host keeps up with the daemon's history.
    inbound: Arc<InboundStats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why one start attempt failed.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot spawn {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error("daemon did not print its ready line within {0:?}")]
    ReadyTimeout(Duration),
    #[error("daemon exited before it was ready ({0})")]
    ExitedEarly(String),
    #[error("cannot read the daemon's stdout: {0}")]
    Stdout(std::io::Error),
    #[error(transparent)]
    Ipc(#[from] crate::ipc_client::IpcError),
}

/// How a running daemon stopped being supervised.
enum Outcome {
    Exited(std::io::Result<ExitStatus>),
    Hung,
    Shutdown,
}

/// Handle on the supervisor; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

impl Supervisor {
    pub fn new(
        config: SupervisorConfig,
        store: Store,
        stats: Arc<IpcStats>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (events, _) = broadcast::channel(HOST_EVENT_CAPACITY);
        // Subscriptions outlive the host: a restarted host re-subscribes.
        let topics: BTreeSet<String> = match store.wanted_topics() {
            Ok(topics) => topics.into_iter().collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stored subscriptions");
                BTreeSet::new()
            }
        };
        metrics.set_state(DaemonState::Starting);
        Supervisor {
            shared: Arc::new(Shared {
                config,
                status: Mutex::new(Status {
                    state: DaemonState::Starting,
                    pid: None,
                    restarts: 0,
                    restart_times: VecDeque::new(),
                    peer_id: String::new(),
                    listen_addrs: Vec::new(),
                    peers: 0,
                    daemon_version: None,
                    drop_times: VecDeque::new(),
                    running_since: None,
                    tension_history: VecDeque::with_capacity(TENSION_HISTORY_LEN),
                }),
                client: Mutex::new(None),
                topics: Mutex::new(topics),
                events,
                store,
                stats,
                metrics,
                inbound: Arc::default(),
            }),
        }
    }

    /// The IPC link, when the daemon is running.
    pub fn client(&self) -> Option<IpcClient> {
        lock(&self.shared.client)
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    pub fn snapshot(&self) -> DaemonSnapshot {
        let s = lock(&self.shared.status);
        DaemonSnapshot {
            state: s.state,
            pid: s.pid,
            restarts: s.restarts,
            uptime_secs: s.uptime_secs(),
        }
    }

    pub fn status(&self) -> HostStatus {
        let s = lock(&self.shared.status);
        HostStatus {
            daemon: DaemonSnapshot {
                state: s.state,
                pid: s.pid,
                restarts: s.restarts,
                uptime_secs: s.uptime_secs(),
            },
            peer_id: s.peer_id.clone(),
            listen_addrs: s.listen_addrs.clone(),
            peers: s.peers,
            daemon_version: s.daemon_version.clone(),
        }
    }

    /// Broadcast an event of the host's own (an undeliverable message).
    pub fn publish_event(&self, event: HostEvent) {
        let _ = self.shared.events.send(event);
    }

    /// `/api/status`'s `inbound` field.
    pub fn inbound_stats(&self) -> serde_json::Value {
        self.shared.inbound.snapshot()
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<HostEvent> {
        self.shared.events.subscribe()
    }

    /// Topics the API wants subscribed.
    pub fn desired_topics(&self) -> Vec<String> {
        lock(&self.shared.topics).iter().cloned().collect()
    }

    /// Remember a topic as wanted; returns whether it already was.
    /// Record a subscription (in memory and in the store); true if it was
    /// already wanted.
    pub async fn want_topic(&self, topic: &str) -> bool {
        let already = !lock(&self.shared.topics).insert(topic.to_owned());
        if !already {
            if let Err(e) = self
                .shared
                .store
                .set_topic_wanted(topic.to_owned(), true)
                .await
            {
                tracing::warn!(%topic, error = %e, "cannot store the subscription");
            }
        }
        already
    }

    /// Forget a topic; returns whether it was wanted.
    /// Forget a subscription; true if it was wanted.
    pub async fn unwant_topic(&self, topic: &str) -> bool {
        let removed = lock(&self.shared.topics).remove(topic);
        if let Err(e) = self
            .shared
            .store
            .set_topic_wanted(topic.to_owned(), false)
            .await
        {
            tracing::warn!(%topic, error = %e, "cannot forget the stored subscription");
        }
        removed
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Current tension, computed from the live signals.
    pub fn tension(&self) -> Tension {
        self.tension_with_children(0, 0)
    }

    /// An event-stream client was dropped for falling behind.
    pub fn note_client_dropped(&self) {
        self.shared.metrics.slow_clients_dropped.inc();
        lock(&self.shared.status)
            .drop_times
            .push_back(Instant::now());
    }

    /// Keep one τ sample for the history (called every few seconds).
    pub fn record_tension(&self, value: f64) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut s = lock(&self.shared.status);
        if s.tension_history.len() == TENSION_HISTORY_LEN {
            s.tension_history.pop_front();
        }
        s.tension_history.push_back((now_ms, value));
    }

    /// τ samples of the last 15 minutes, oldest first.
    pub fn tension_history(&self) -> Vec<(u64, f64)> {
        lock(&self.shared.status)
            .tension_history
            .iter()
            .copied()
            .collect()
    }

    /// τ of this node, counting `children_down` of its `children` nodes.
    pub fn tension_with_children(&self, children: usize, children_down: usize) -> Tension {
        let (running, recent_restarts, dropped_clients, peers) = {
            let mut s = lock(&self.shared.status);
            let window = Duration::from_secs(tension::RESTART_WINDOW_SECS);
            while s
                .restart_times
                .front()
                .is_some_and(|t| t.elapsed() > window)
            {
                s.restart_times.pop_front();
            }
            let drop_window = Duration::from_secs(tension::DROP_WINDOW_SECS);
            while s
                .drop_times
                .front()
                .is_some_and(|t| t.elapsed() > drop_window)
            {
                s.drop_times.pop_front();
            }
            (
                s.state == DaemonState::Running,
                s.restart_times.len(),
                s.drop_times.len(),
                s.peers,
            )
        };
        let latencies = self.shared.stats.recent_latencies_ms();
        tension::compute(&tension::Inputs {
            daemon_running: running,
            recent_restarts,
            latencies_ms: &latencies,
            in_flight: self.shared.stats.in_flight(),
            outbox_depth: self.shared.metrics.outbox_depth.get().max(0) as u64,
            dropped_clients,
            peers,
            peer_target: self.shared.config.daemon.peer_target,
            children,
            children_down,
        })
    }

    fn set_state(&self, state: DaemonState, pid: Option<u32>) {
        let snapshot = {
            let mut s = lock(&self.shared.status);
            s.state = state;
            s.pid = pid;
            s.running_since = (state == DaemonState::Running).then(Instant::now);
            DaemonSnapshot {
                state,
                pid,
                restarts: s.restarts,
                uptime_secs: s.uptime_secs(),
            }
        };
        self.shared.metrics.set_state(state);
        tracing::info!(state = ?snapshot.state, pid = snapshot.pid, restarts = snapshot.restarts, "daemon state");
        let _ = self.shared.events.send(HostEvent::State(snapshot));
    }

    fn count_restart(&self) {
        let mut s = lock(&self.shared.status);
        s.restarts += 1;
        s.restart_times.push_back(Instant::now());
        if s.restart_times.len() > 1024 {
            s.restart_times.pop_front();
        }
        self.shared.metrics.restarts.inc();
    }

    /// Run the daemon until `shutdown` fires, restarting it as needed. On
    /// return no daemon process is left.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let state = if first {
                DaemonState::Starting
            } else {
                DaemonState::Restarting
            };
            first = false;
            // The configured addresses every time: the daemon itself binds
            // the ports it had before when they are free.
            match self.spawn(&self.shared.config.listen) {
                Err(e) => {
                    tracing::error!(error = %e, "daemon start failed");
                }
                Ok(mut child) => {
                    self.set_state(state, child.id());
                    let started = tokio::select! {
                        r = self.await_ready(&mut child) => Some(r),
                        _ = shutdown.cancelled() => None,
                    };
                    match started {
                        None => {
                            kill_and_reap(&mut child).await;
                            break;
                        }
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "daemon start failed");
                            kill_and_reap(&mut child).await;
                        }
                        Some(Ok((client, events, _ready))) => {
                            let since = Instant::now();
                            self.on_ready(&client).await;
                            self.set_state(DaemonState::Running, child.id());
                            let outcome =
                                self.supervise(&mut child, &client, events, &shutdown).await;
                            *lock(&self.shared.client) = None;
                            lock(&self.shared.status).peers = 0;
                            self.shared.metrics.peers.set(0);
                            match outcome {
                                Outcome::Shutdown => {
                                    self.stop_daemon(&mut child, &client).await;
                                    break;
                                }
                                Outcome::Exited(status) => {
                                    client.close();
                                    match status {
                                        Ok(status) => tracing::warn!(%status, "daemon exited"),
                                        Err(e) => tracing::warn!(error = %e, "daemon lost"),
                                    }
                                }
                                Outcome::Hung => {
                                    client.close();
                                    tracing::error!(
                                        "daemon failed {HEALTH_FAILURES} health checks in a row; killing it"
                                    );
                                    kill_and_reap(&mut child).await;
                                }
                            }
                            if since.elapsed() >= HEALTHY_RESET {
                                backoff = BACKOFF_MIN;
                            }
                        }
                    }
                }
            }

            if shutdown.is_cancelled() {
                break;
            }
            self.count_restart();
            self.set_state(DaemonState::Restarting, None);
            tracing::info!(delay = ?backoff, "restarting the daemon");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        *lock(&self.shared.client) = None;
        self.set_state(DaemonState::Stopped, None);
    }

    fn spawn(&self, listen: &[String]) -> Result<Child, StartError> {
        let cfg = &self.shared.config;
        let settings = &cfg.daemon;
        let mut cmd = Command::new(&settings.daemon_bin);
        cmd.arg("--data-dir")
            .arg(&cfg.data_dir)
            .args(["--ipc", "127.0.0.1:0"])
            .args(["--log-format", &settings.log_format])
            // Every node of a host is the host's to supervise.
            .arg("--children-via-host");
        for addr in listen {
            cmd.args(["--listen", addr]);
        }
        for addr in &cfg.bootstrap {
            cmd.args(["--bootstrap", addr]);
        }
        if settings.no_mdns {
            cmd.arg("--no-mdns");
        }
        for relay in &settings.relays {
            cmd.args(["--relay", relay]);
        }
        if settings.relay_service {
            cmd.arg("--relay-service");
        }
        if let Some(n) = settings.conn_low {
            cmd.args(["--conn-low", &n.to_string()]);
        }
        if let Some(n) = settings.conn_high {
            cmd.args(["--conn-high", &n.to_string()]);
        }
        // The token goes through the environment, never argv (visible in ps).
        cmd.env(ENV_IPC_TOKEN, &cfg.token)
            .env(ENV_EXIT_WITH_PARENT, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        tracing::info!(bin = %settings.daemon_bin.display(), ?listen, "spawning daemon");
        cmd.spawn().map_err(|source| StartError::Spawn {
            bin: settings.daemon_bin.display().to_string(),
            source,
        })
    }

    /// Read the ready line and connect the IPC link.
    async fn await_ready(
        &self,
        child: &mut Child,
    ) -> Result<(IpcClient, broadcast::Receiver<Event>, ReadyLine), StartError> {
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| StartError::ExitedEarly("no stdout pipe".to_owned()))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = match tokio::time::timeout(READY_TIMEOUT, read_ready(&mut lines)).await {
            Err(_) => return Err(StartError::ReadyTimeout(READY_TIMEOUT)),
            Ok(Err(e)) => return Err(StartError::Stdout(e)),
            Ok(Ok(None)) => {
                let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await
                {
                    Ok(Ok(status)) => status.to_string(),
                    _ => "stdout closed".to_owned(),
                };
                return Err(StartError::ExitedEarly(status));
            }
            Ok(Ok(Some(ready))) => ready,
        };
        // The daemon should print nothing more; drain anyway so that a stray
        // write can never block it on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "hive_p2pd", stdout = %line, "unexpected daemon stdout");
            }
        });
        tracing::info!(ipc = %ready.ipc, peer_id = %ready.peer_id, pid = ready.pid, "daemon ready");
        let (client, welcome, events) = IpcClient::connect(
            &ready.ipc,
            &self.shared.config.token,
            self.shared.stats.clone(),
        )
        .await?;
        let mut s = lock(&self.shared.status);
        s.daemon_version = Some(welcome.daemon_version);
        s.peer_id = welcome.peer_id;
        s.listen_addrs = ready.listen_addrs.clone();
        s.peers = 0;
        Ok((client, events, ready))
    }

    /// Make the new daemon look like the old one to API clients: their
    /// subscriptions. (Peers and ports the daemon restores itself.)
    async fn on_ready(&self, client: &IpcClient) {
        // Pipelined: one round trip for all topics, not one per topic.
        let resubscribes = self.desired_topics().into_iter().map(|topic| async move {
            let op = Op::Subscribe {
                topic: topic.clone(),
            };
            if let Err(e) = client.request(op, RESUBSCRIBE_TIMEOUT).await {
                tracing::warn!(%topic, error = %e, "re-subscribe failed");
            }
        });
        futures::future::join_all(resubscribes).await;
        *lock(&self.shared.client) = Some(client.clone());
    }

    async fn supervise(
        &self,
        child: &mut Child,
        client: &IpcClient,
        events: broadcast::Receiver<Event>,
        shutdown: &CancellationToken,
    ) -> Outcome {
        tokio::select! {
            status = child.wait() => Outcome::Exited(status),
            reason = client.closed() => {
                // Usually the daemon is exiting; give it a moment to do so,
                // otherwise it lives without a usable link: treat as hung.
                tracing::warn!(%reason, "IPC link to the daemon closed");
                match tokio::time::timeout(LINK_LOSS_GRACE, child.wait()).await {
                    Ok(status) => Outcome::Exited(status),
                    Err(_) => Outcome::Hung,
                }
            }
            _ = self.health_loop(client) => Outcome::Hung,
            _ = self.forward_events(events, client) => Outcome::Hung,
            _ = shutdown.cancelled() => Outcome::Shutdown,
        }
    }

    /// Returns only when the daemon is considered hung.
    async fn health_loop(&self, client: &IpcClient) {
        let mut tick = tokio::time::interval(HEALTH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failures = 0;
        loop {
            tick.tick().await;
            match client
                .request_typed::<StatusResult>(Op::Status, HEALTH_TIMEOUT)
                .await
            {
                Ok(st) => {
                    failures = 0;
                    {
                        let mut s = lock(&self.shared.status);
                        s.peer_id = st.peer_id;
                        s.listen_addrs = st.listen_addrs;
                        s.peers = st.peers;
                        s.daemon_version = Some(st.daemon_version);
                    }
                    self.shared.metrics.peers.set(st.peers as i64);
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "daemon health check failed");
                    if failures >= HEALTH_FAILURES {
                        return;
                    }
                }
            }
        }
    }

    /// Store the daemon's messages and re-broadcast its events to host
    /// subscribers. Returns only if the store fails for good (then the
    /// daemon is restarted and the host resumes from its stored position).
    ///
    /// `client` is the link these events arrive on, also used to fetch from
    /// the daemon's history what did not arrive (see `inbound`).
    async fn forward_events(&self, mut events: broadcast::Receiver<Event>, client: &IpcClient) {
        let connected = Inbound::connect(
            self.shared.store.clone(),
            client.clone(),
            self.shared.events.clone(),
            self.shared.metrics.clone(),
            self.shared.inbound.clone(),
        )
        .await;
        let mut inbound = match connected {
            Ok(inbound) => inbound,
            Err(e) => {
                tracing::error!(error = %e, "cannot resume from the daemon's history");
                return;
            }
        };
        loop {
            // Whatever is queued goes into one batch (one transaction).
            let mut batch = Vec::new();
            let mut lagged = false;
            let mut next = match events.recv().await {
                Ok(event) => Some(event),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    lagged = true;
                    None
                }
                // The link is gone; the health loop notices and decides.
                Err(broadcast::error::RecvError::Closed) => {
                    return futures::future::pending().await;
                }
            };
            while batch.len() < crate::inbound::MAX_BATCH {
                match next.take() {
                    Some(Event::Lagged { missed }) => {
                        tracing::debug!(missed, "daemon dropped events for the host; repairing");
                        lagged = true;
                    }
                    Some(event @ (Event::Message { .. } | Event::Direct { .. })) => {
                        batch.push(event)
                    }
                    Some(event) => self.on_daemon_event(event),
                    None => {}
                }
                next = match events.try_recv() {
                    Ok(event) => Some(event),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        lagged = true;
                        continue;
                    }
                    Err(_) => break,
                };
            }
            if let Some(event) = next {
                self.on_daemon_event(event);
            }
            if let Err(e) = inbound.absorb(batch, lagged).await {
                tracing::error!(error = %e, "cannot store inbound messages; reconnecting to resume");
                return;
            }
        }
    }

    /// A daemon event that is not a message: status kept up to date, then
    /// re-broadcast.
    fn on_daemon_event(&self, event: Event) {
        let m = &self.shared.metrics;
        match &event {
            Event::PeerConnected { .. } => {
                let mut s = lock(&self.shared.status);
                s.peers += 1;
                m.peers.set(s.peers as i64);
            }
            Event::PeerDisconnected { .. } => {
                let mut s = lock(&self.shared.status);
                s.peers = s.peers.saturating_sub(1);
                m.peers.set(s.peers as i64);
            }
            Event::NewListenAddr { addr } => {
                let mut s = lock(&self.shared.status);
                if !s.listen_addrs.contains(addr) {
                    s.listen_addrs.push(addr.clone());
                }
            }
            Event::ExpiredListenAddr { addr } => {
                lock(&self.shared.status).listen_addrs.retain(|a| a != addr);
            }
            _ => {}
        }
        let _ = self.shared.events.send(HostEvent::Daemon(event));
    }

    /// Ask the daemon to stop, then make sure it did: one deadline covers
    /// both the request and the exit, past it the daemon is killed.
    async fn stop_daemon(&self, child: &mut Child, client: &IpcClient) {
        tracing::info!("stopping the daemon");
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        match tokio::time::timeout_at(deadline, client.request(Op::Shutdown, SHUTDOWN_GRACE)).await
        {
            Ok(Err(e)) => tracing::debug!(error = %e, "shutdown request"),
            Err(_) => tracing::debug!("shutdown request unanswered"),
            Ok(Ok(_)) => {}
        }
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(Ok(status)) => tracing::info!(%status, "daemon stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "waiting for the daemon"),
            Err(_) => {
                tracing::warn!("daemon did not stop within {SHUTDOWN_GRACE:?}; killing it");
                kill_and_reap(child).await;
            }
        }
        client.close();
    }
}

/// SIGKILL and wait, so that no zombie or orphan is left.
async fn kill_and_reap(child: &mut Child) {
    if let Err(e) = child.kill().await {
        tracing::debug!(error = %e, "kill daemon");
    }
}

async fn read_ready(
    lines: &mut Lines<BufReader<ChildStdout>>,
) -> std::io::Result<Option<ReadyLine>> {
    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<ReadyLine>(&line) {
            Ok(ready) if ready.event == "ready" => return Ok(Some(ready)),
            _ => tracing::warn!(line = %line, "ignoring daemon stdout line before ready"),
        }
    }
    Ok(None)
}
