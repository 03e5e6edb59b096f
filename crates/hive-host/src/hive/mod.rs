//! The hive: every node a host supervises, and their lineage.
//!
//! The first node (`n0`) is the one the host starts with. Each further node
//! is one more `hive-p2pd` with its own data directory (so its own identity,
//! kept across restarts), message store and outbox, bootstrapped from its
//! parent's addresses so that it joins the same network. Every node runs on
//! the same code path as the first: a [`Supervisor`] (readiness, health,
//! restart with backoff) and an [`Outbox`], each stopped by its own
//! cancellation token, a child of the host's. The list of nodes is kept in
//! `<data dir>/nodes.json` so that a restarted host brings every node back.
//!
//! Nodes ask for children themselves too: a daemon under a host answers the
//! IPC `reproduce` operation by pushing a `reproduce` event, which the watcher
//! here turns into [`Hive::spawn`].

mod stored;
mod tree;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_proto::Event;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ipc_stats::IpcStats;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::state::{DaemonState, HostEvent};
use crate::store::Store;
use crate::supervisor::{DaemonSettings, HealthPace, Supervisor, SupervisorConfig};
use crate::tension::Tension;
use hive_proto::sync::lock;

/// The id of the node a host starts with.
pub const ROOT_ID: &str = "n0";
/// Most nodes one spawn request may ask for.
pub const MAX_COUNT: u32 = 64;
/// How long a spawn waits for each new node to be running.
const READY_WAIT: Duration = Duration::from_secs(60);
/// Memory a new node is expected to take (a daemon with its connections
/// bounded, about 10 MB resident in release builds), and what the machine
/// keeps spare.
const NODE_MEMORY: u64 = 16 * 1024 * 1024;
const MEMORY_RESERVE: u64 = 256 * 1024 * 1024;
/// How often τ is sampled for its history.
const TENSION_SAMPLE: Duration = Duration::from_secs(5);

/// Why a spawn or a delete was refused.
#[derive(Debug, thiserror::Error)]
pub enum HiveError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no node {0:?}")]
    UnknownNode(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NoMemory(String),
    #[error("{0}")]
    Io(String),
}

/// What is stored of a node (and its lineage).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    pub id: String,
    pub parent: Option<String>,
    pub generation: u32,
}

/// A node as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    pub id: String,
    pub peer_id: String,
    pub parent: Option<String>,
    pub generation: u32,
    /// `starting`, `running`, `restarting` or `stopped`.
    pub state: String,
    pub pid: Option<u32>,
    pub restarts: u64,
    pub peers: usize,
    pub tension: f64,
}

/// One supervised node.
pub struct NodeRuntime {
    pub record: NodeRecord,
    pub supervisor: Supervisor,
    pub outbox: Outbox,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What every node is started with.
#[derive(Debug, Clone)]
pub struct NodeTemplate {
    /// How every daemon is started.
    pub daemon: DaemonSettings,
    /// The host's data directory.
    pub data_dir: PathBuf,
    /// The first node's listen addresses; children get the same with port 0.
    pub listen: Vec<String>,
    /// Bootstrap peers of the first node.
    pub bootstrap: Vec<String>,
    pub retention: Duration,
    pub retention_count: u64,
    /// `--durability`: when an accepted message is on disk.
    pub durability: crate::store::Durability,
}

/// Every node of this host. Cheap to clone.
#[derive(Clone)]
pub struct Hive {
    inner: Arc<Inner>,
}

struct Inner {
    template: NodeTemplate,
    max_nodes: usize,
    shutdown: CancellationToken,
    nodes: Mutex<Vec<Arc<NodeRuntime>>>,
    /// How many of `nodes` are children: their health checks share a pace.
    children: Arc<AtomicUsize>,
    next_id: AtomicU64,
    /// Spawns and deletes one at a time, so that limits and the stored list
    /// stay consistent.
    changes: tokio::sync::Mutex<()>,
}

/// How many new nodes `hive up --nodes` starts at once: their daemons
/// start in parallel, 16 per core (a starting daemon mostly waits on its
/// binds and its first dials), at most [`MAX_COUNT`].
pub fn start_window() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 16).clamp(8, MAX_COUNT as usize)
}

/// A default for `--max-nodes`: what the machine's memory holds at
/// [`NODE_MEMORY`] a node after the reserve, between 4 and 256.
pub fn default_max_nodes() -> usize {
    max_nodes_for(meminfo("MemTotal:").unwrap_or(4 * 1024 * 1024 * 1024))
}

/// How many nodes `total` bytes of memory hold, as [`default_max_nodes`]
/// counts them.
fn max_nodes_for(total: u64) -> usize {
    (total.saturating_sub(MEMORY_RESERVE) / NODE_MEMORY).clamp(4, 256) as usize
}

/// A field of /proc/meminfo, in bytes.
fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `/ip4/1.2.3.4/tcp/7000` → `/ip4/1.2.3.4/tcp/0`: a child listens like its
/// ancestor, on ports of its own.
fn any_port(addr: &str) -> String {
    let parts: Vec<&str> = addr.split('/').collect();
    let mut out = Vec::with_capacity(parts.len());
    let mut i = 0;
    while i < parts.len() {
        out.push(parts[i].to_owned());
        if matches!(parts[i], "tcp" | "udp") && i + 1 < parts.len() {
            out.push("0".to_owned());
            i += 2;
            continue;
        }
        i += 1;
    }
    out.join("/")
}

impl Hive {
    pub fn new(template: NodeTemplate, max_nodes: usize, shutdown: CancellationToken) -> Self {
        Hive {
            inner: Arc::new(Inner {
                template,
                max_nodes: max_nodes.max(1),
                shutdown,
                nodes: Mutex::new(Vec::new()),
                children: Arc::new(AtomicUsize::new(0)),
                next_id: AtomicU64::new(1),
                changes: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Where a node keeps its daemon's data and its message store. The first
    /// node keeps the layout of a single-node host.
    fn node_dirs(&self, id: &str) -> (PathBuf, PathBuf) {
        let base = &self.inner.template.data_dir;
        if id == ROOT_ID {
            (base.join("daemon"), base.join("hive.db"))
        } else {
            let dir = base.join("nodes").join(id);
            (dir.join("daemon"), dir.join("hive.db"))
        }
    }

    /// Start the first node. Called once, before the API serves.
    pub fn start_root(&self) -> Result<Arc<NodeRuntime>, HiveError> {
        let record = NodeRecord {
            id: ROOT_ID.to_owned(),
            parent: None,
            generation: 0,
        };
        let t = &self.inner.template;
        let node = self.start_node(
            record,
            t.daemon.clone(),
            t.listen.clone(),
            t.bootstrap.clone(),
            new_token(),
        )?;
        tokio::spawn(self.clone().sample_tension());
        Ok(node)
    }

    fn start_child(
        &self,
        record: NodeRecord,
        bootstrap: Vec<String>,
    ) -> Result<Arc<NodeRuntime>, HiveError> {
        let listen = self
            .inner
            .template
            .listen
            .iter()
            .map(|a| any_port(a))
            .collect();
        // One runtime thread per child: the nodes of a hive share the
        // machine's cores, and each thread beside the first doubled an idle
        // daemon's wake-ups (100 nodes, idle: 39 % of a core for all
        // daemons with two threads each, 22 % with one). The first node,
        // the one applications use, keeps one per core.
        let daemon = DaemonSettings {
            worker_threads: Some(1),
            ..self.inner.template.daemon.clone()
        };
        self.start_node(record, daemon, listen, bootstrap, new_token())
    }

    fn start_node(
        &self,
        record: NodeRecord,
        daemon: DaemonSettings,
        listen: Vec<String>,
        bootstrap: Vec<String>,
        token: String,
    ) -> Result<Arc<NodeRuntime>, HiveError> {
        let t = &self.inner.template;
        let (daemon_dir, db_path) = self.node_dirs(&record.id);
        std::fs::create_dir_all(&daemon_dir)
            .map_err(|e| HiveError::Io(format!("cannot create {}: {e}", daemon_dir.display())))?;
        let store = Store::open_with(&db_path, t.durability).map_err(|e| {
            HiveError::Io(format!("cannot open the store {}: {e}", db_path.display()))
        })?;
        let stats = Arc::new(IpcStats::default());
        let metrics = Arc::new(Metrics::new(&stats));
        let supervisor = Supervisor::new(
            SupervisorConfig {
                daemon,
                data_dir: daemon_dir,
                listen,
                bootstrap,
                token,
                durability: t.durability,
                health: if record.id == ROOT_ID {
                    HealthPace::default()
                } else {
                    HealthPace::shared(self.inner.children.clone())
                },
            },
            store.clone(),
            stats,
            metrics,
        );
        let outbox = Outbox::new(store.clone(), supervisor.clone());
        let cancel = self.inner.shutdown.child_token();
        let span = tracing::info_span!("node", id = %record.id);
        let tasks = vec![
            tokio::spawn(outbox.clone().run(cancel.clone())),
            tokio::spawn(crate::inbox::retain(
                store,
                t.retention,
                t.retention_count,
                cancel.clone(),
            )),
            tokio::spawn(tracing::Instrument::instrument(
                supervisor.clone().run(cancel.clone()),
                span,
            )),
            tokio::spawn(self.clone().watch_reproduce(
                record.id.clone(),
                supervisor.subscribe_events(),
                cancel.clone(),
            )),
        ];
        let node = Arc::new(NodeRuntime {
            record,
            supervisor,
            outbox,
            cancel,
            tasks: Mutex::new(tasks),
        });
        let mut nodes = lock(&self.inner.nodes);
        nodes.push(node.clone());
        self.count_children(&nodes);
        Ok(node)
    }

    fn count_children(&self, nodes: &[Arc<NodeRuntime>]) {
        let children = nodes.iter().filter(|n| n.record.id != ROOT_ID).count();
        self.inner.children.store(children, Ordering::Relaxed);
    }

    /// A node by id.
    pub fn get(&self, id: &str) -> Option<Arc<NodeRuntime>> {
        lock(&self.inner.nodes)
            .iter()
            .find(|n| n.record.id == id)
            .cloned()
    }

    fn all(&self) -> Vec<Arc<NodeRuntime>> {
        lock(&self.inner.nodes).clone()
    }

    /// Ids of `id` and every node descending from it, deepest first.
    fn subtree(&self, id: &str) -> Vec<String> {
        let nodes = self.all();
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for n in &nodes {
            if let Some(parent) = n.record.parent.as_deref() {
                children.entry(parent).or_default().push(&n.record.id);
            }
        }
        // Parents before children, then reversed: deepest first.
        let mut order = Vec::new();
        let mut stack = vec![id];
        while let Some(next) = stack.pop() {
            order.push(next.to_owned());
            stack.extend(children.get(next).into_iter().flatten().copied());
        }
        order.reverse();
        order
    }

    /// What lies below each of `nodes` (same order), in one pass.
    fn below_each(nodes: &[Arc<NodeRuntime>]) -> Vec<tree::Below> {
        let entries: Vec<tree::Entry> = nodes
            .iter()
            .map(|n| tree::Entry {
                id: &n.record.id,
                parent: n.record.parent.as_deref(),
                running: n.supervisor.snapshot().state == DaemonState::Running,
            })
            .collect();
        tree::below(&entries)
    }

    /// τ of a node, counting the health of every node below it.
    pub fn tension(&self, node: &NodeRuntime) -> Tension {
        let nodes = self.all();
        let below = Self::below_each(&nodes)
            .into_iter()
            .zip(&nodes)
            .find(|(_, n)| n.record.id == node.record.id)
            .map(|(b, _)| b)
            .unwrap_or_default();
        node.supervisor
            .tension_with_children(below.nodes, below.down)
    }

    /// Every node with its τ (counting the nodes below it).
    fn with_tension(&self) -> Vec<(Arc<NodeRuntime>, Tension)> {
        let nodes = self.all();
        let below = Self::below_each(&nodes);
        nodes
            .into_iter()
            .zip(below)
            .map(|(n, b)| {
                let t = n.supervisor.tension_with_children(b.nodes, b.down);
                (n, t)
            })
            .collect()
    }

    pub fn view(&self, node: &NodeRuntime) -> NodeView {
        self.view_with(node, self.tension(node))
    }

    fn view_with(&self, node: &NodeRuntime, tension: Tension) -> NodeView {
        let status = node.supervisor.status();
        NodeView {
            id: node.record.id.clone(),
            peer_id: status.peer_id,
            parent: node.record.parent.clone(),
            generation: node.record.generation,
            state: status.daemon.state.as_str().to_owned(),
            pid: status.daemon.pid,
            restarts: status.daemon.restarts,
            peers: status.peers,
            tension: tension.value,
        }
    }

    pub fn views(&self) -> Vec<NodeView> {
        self.with_tension()
            .into_iter()
            .map(|(n, t)| self.view_with(&n, t))
            .collect()
    }

    /// Start `count` children of `parent` (default: the first node) and wait
    /// until each runs. Everything is checked before anything is started, so
    /// a refused request leaves nothing behind.
    pub async fn spawn(
        &self,
        parent: Option<&str>,
        count: Option<u32>,
    ) -> Result<Vec<NodeView>, HiveError> {
        let count = count.unwrap_or(1);
        if count == 0 || count > MAX_COUNT {
            return Err(HiveError::BadRequest(format!(
                "count must be 1 to {MAX_COUNT}, not {count}"
            )));
        }
        let parent_id = parent.unwrap_or(ROOT_ID);
        let _one_at_a_time = self.inner.changes.lock().await;
        let parent = self
            .get(parent_id)
            .ok_or_else(|| HiveError::UnknownNode(parent_id.to_owned()))?;
        let existing = lock(&self.inner.nodes).len();
        if existing + count as usize > self.inner.max_nodes {
            return Err(HiveError::Conflict(format!(
                "this host runs {existing} nodes and allows {} (--max-nodes); {count} more would pass it",
                self.inner.max_nodes
            )));
        }
        if let Some(available) = meminfo("MemAvailable:") {
            let needed = NODE_MEMORY * u64::from(count) + MEMORY_RESERVE;
            if available < needed {
                return Err(HiveError::NoMemory(format!(
                    "the machine has {} MiB available; {count} more nodes need about {} MiB",
                    available / (1024 * 1024),
                    needed / (1024 * 1024)
                )));
            }
        }
        if parent.supervisor.snapshot().state != DaemonState::Running {
            return Err(HiveError::Conflict(format!(
                "node {parent_id} is not running; its children could not join through it"
            )));
        }
        let bootstrap = parent.supervisor.status().listen_addrs;
        let mut started = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let id = format!("n{}", self.inner.next_id.fetch_add(1, Ordering::SeqCst));
            let record = NodeRecord {
                id,
                parent: Some(parent_id.to_owned()),
                generation: parent.record.generation + 1,
            };
            match self.start_child(record, bootstrap.clone()) {
                Ok(node) => started.push(node),
                Err(e) => {
                    // Nothing half-created: stop what this request started.
                    for node in started {
                        self.stop_and_forget(&node).await;
                    }
                    return Err(e);
                }
            }
        }
        self.persist()?;
        drop(_one_at_a_time);
        for node in &started {
            if !self.wait_running(node).await {
                tracing::warn!(id = %node.record.id, "new node not running after {READY_WAIT:?}; still trying");
            }
        }
        Ok(started.iter().map(|n| self.view(n)).collect())
    }

    /// Stop a node and every node below it, and forget them (their data
    /// directories go too: a forgotten node's identity is not reused).
    pub async fn delete(&self, id: &str) -> Result<Vec<String>, HiveError> {
        if id == ROOT_ID {
            return Err(HiveError::Conflict(
                "the first node lives as long as the host; stop the host instead".into(),
            ));
        }
        let _one_at_a_time = self.inner.changes.lock().await;
        if self.get(id).is_none() {
            return Err(HiveError::UnknownNode(id.to_owned()));
        }
        let doomed = self.subtree(id);
        for node_id in &doomed {
            if let Some(node) = self.get(node_id) {
                self.stop_and_forget(&node).await;
                let dir = self.inner.template.data_dir.join("nodes").join(node_id);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a deleted node's data");
                }
            }
        }
        self.persist()?;
        Ok(doomed)
    }

    async fn stop_and_forget(&self, node: &Arc<NodeRuntime>) {
        node.cancel.cancel();
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&node.tasks));
        for task in tasks {
            if let Err(e) = task.await {
                tracing::warn!(id = %node.record.id, error = %e, "node task failed while stopping");
            }
        }
        let mut nodes = lock(&self.inner.nodes);
        nodes.retain(|n| !Arc::ptr_eq(n, node));
        self.count_children(&nodes);
        drop(nodes);
        tracing::info!(id = %node.record.id, "node stopped and forgotten");
    }

    /// Wait until every node's supervisor has stopped its daemon.
    pub async fn stopped(&self) {
        let tasks: Vec<JoinHandle<()>> = self
            .all()
            .iter()
            .flat_map(|n| std::mem::take(&mut *lock(&n.tasks)))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Wait (up to a minute) until the node `id` runs; false if it does not.
    pub async fn wait_running_id(&self, id: &str) -> bool {
        match self.get(id) {
            Some(node) => self.wait_running(&node).await,
            None => false,
        }
    }

    async fn wait_running(&self, node: &NodeRuntime) -> bool {
        let mut events = node.supervisor.subscribe_events();
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        loop {
            if node.supervisor.snapshot().state == DaemonState::Running {
                return true;
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return false,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return false,
                Ok(_) => {}
            }
        }
    }

    async fn wait_addrs(&self, node: &NodeRuntime) -> Vec<String> {
        self.wait_running(node).await;
        node.supervisor.status().listen_addrs
    }

    /// Turn a node's `reproduce` events into children of it.
    async fn watch_reproduce(
        self,
        id: String,
        mut events: hive_proto::fanout::Receiver<HostEvent>,
        cancel: CancellationToken,
    ) {
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(HostEvent::Daemon(Event::Reproduce { count })) => {
                    let hive = self.clone();
                    let id = id.clone();
                    tokio::spawn(async move {
                        match hive.spawn(Some(&id), Some(count)).await {
                            Ok(children) => {
                                let ids: Vec<&str> =
                                    children.iter().map(|c| c.id.as_str()).collect();
                                tracing::info!(parent = %id, children = ?ids, "node reproduced");
                            }
                            Err(e) => {
                                tracing::warn!(parent = %id, error = %e, "node could not reproduce")
                            }
                        }
                    });
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Keep τ's history and metrics current for every node.
    async fn sample_tension(self) {
        let mut tick = tokio::time::interval(TENSION_SAMPLE);
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for (node, tension) in self.with_tension() {
                node.supervisor.record_tension(tension.value);
                node.supervisor.metrics().set_tension(&tension);
            }
        }
    }
}

/// 256 random bits, hex: the IPC secret for this host's daemon only.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_listen_like_their_ancestor_on_ports_of_their_own() {
        assert_eq!(any_port("/ip4/127.0.0.1/tcp/7000"), "/ip4/127.0.0.1/tcp/0");
        assert_eq!(
            any_port("/ip4/0.0.0.0/udp/9000/quic-v1"),
            "/ip4/0.0.0.0/udp/0/quic-v1"
        );
        assert_eq!(any_port("/ip6/::1/tcp/0"), "/ip6/::1/tcp/0");
    }

    #[test]
    fn the_default_limit_follows_memory_within_its_bounds() {
        const MIB: u64 = 1024 * 1024;
        // 1 GiB: 768 MiB after the reserve, 16 MiB a node.
        assert_eq!(max_nodes_for(1024 * MIB), 48);
        assert_eq!(max_nodes_for(256 * MIB + 10 * 16 * MIB), 10);
        // Too little memory for the reserve still allows a few nodes...
        assert_eq!(max_nodes_for(0), 4);
        assert_eq!(max_nodes_for(300 * MIB), 4);
        // ... and a big machine no more than 256.
        assert_eq!(max_nodes_for(1024 * 1024 * MIB), 256);
    }
}
