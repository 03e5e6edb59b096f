//! Reproduction: this daemon starting further nodes that join its network.
//!
//! Under a host (`--children-via-host`) the daemon starts nothing itself: it
//! pushes a `reproduce` event and the host, which supervises every node it
//! owns, starts the children. A daemon on its own (under the Python package,
//! say) starts its children as processes of its own binary, each with its own
//! data directory (so its own identity, kept across restarts) under
//! `<data dir>/children/<n>`, bootstrapped from this node, and restarts them
//! when they die with the host's restart policy (`hive_proto::backoff`). Children are started with the parent-death
//! signal armed and are killed when this daemon's runtime drops them, so none
//! outlives its parent.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hive_node::NodeHandle;
use hive_proto::{backoff, ChildInfo, ErrorBody, ErrorCode, Event, ReadyLine, ReproduceResult};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

/// How long a child may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Most children a single `reproduce` request may ask for.
pub const MAX_COUNT_PER_REQUEST: u32 = 64;

/// How this daemon answers `reproduce`.
pub enum Reproducer {
    /// A host supervises this daemon: ask it to start the children.
    ViaHost,
    /// Start and supervise children here.
    Own(Children),
}

impl Reproducer {
    pub async fn reproduce(
        &self,
        node: &NodeHandle,
        count: Option<u32>,
    ) -> Result<ReproduceResult, ErrorBody> {
        let count = count.unwrap_or(1);
        if count == 0 || count > MAX_COUNT_PER_REQUEST {
            return Err(ErrorBody::new(
                ErrorCode::BadArgs,
                format!("count must be 1 to {MAX_COUNT_PER_REQUEST}, not {count}"),
            ));
        }
        match self {
            Reproducer::ViaHost => {
                node.announce(Event::Reproduce { count });
                Ok(ReproduceResult {
                    delegated: true,
                    children: Vec::new(),
                })
            }
            Reproducer::Own(children) => {
                let children = children.spawn(node, count).await?;
                Ok(ReproduceResult {
                    delegated: false,
                    children,
                })
            }
        }
    }
}

/// The children a host-less daemon started.
pub struct Children {
    exe: PathBuf,
    base_dir: PathBuf,
    no_mdns: bool,
    max: usize,
    started: AtomicUsize,
    shutdown: watch::Receiver<bool>,
}

impl Children {
    pub fn new(
        data_dir: PathBuf,
        no_mdns: bool,
        max: usize,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        Ok(Children {
            exe: std::env::current_exe()?,
            base_dir: data_dir.join("children"),
            no_mdns,
            max,
            started: AtomicUsize::new(0),
            shutdown,
        })
    }

    async fn spawn(&self, node: &NodeHandle, count: u32) -> Result<Vec<ChildInfo>, ErrorBody> {
        let count = count as usize;
        let before = self.started.fetch_add(count, Ordering::SeqCst);
        if before + count > self.max {
            self.started.fetch_sub(count, Ordering::SeqCst);
            return Err(ErrorBody::new(
                ErrorCode::Unsupported,
                format!(
                    "this daemon already runs {before} children and allows {} (--max-children)",
                    self.max
                ),
            ));
        }
        // Children bootstrap from the addresses this node listens on now.
        let bootstrap: Vec<String> = match node.listen_addrs().await {
            Ok(r) => r.listen_addrs,
            Err(_) => node.initial_listen_addrs().to_vec(),
        };
        let mut waiting = Vec::with_capacity(count);
        for index in before..before + count {
            let spec = ChildSpec {
                exe: self.exe.clone(),
                data_dir: self.base_dir.join(index.to_string()),
                bootstrap: bootstrap.clone(),
                no_mdns: self.no_mdns,
            };
            let (tx, rx) = oneshot::channel();
            tokio::spawn(supervise(spec, tx, self.shutdown.clone()));
            waiting.push(rx);
        }
        let mut infos = Vec::with_capacity(count);
        for rx in waiting {
            match rx.await {
                Ok(Ok(info)) => infos.push(info),
                Ok(Err(reason)) => {
                    return Err(ErrorBody::new(
                        ErrorCode::Internal,
                        format!("a child did not start: {reason}"),
                    ))
                }
                Err(_) => {
                    return Err(ErrorBody::new(
                        ErrorCode::ShuttingDown,
                        "the daemon is shutting down",
                    ))
                }
            }
        }
        Ok(infos)
    }
}

#[derive(Clone)]
struct ChildSpec {
    exe: PathBuf,
    data_dir: PathBuf,
    bootstrap: Vec<String>,
    no_mdns: bool,
}

impl ChildSpec {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--data-dir").arg(&self.data_dir).args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--exit-with-parent",
        ]);
        for addr in &self.bootstrap {
            cmd.arg("--bootstrap").arg(addr);
        }
        if self.no_mdns {
            cmd.arg("--no-mdns");
        }
        // Nobody talks to a child's IPC; its own token file is fine.
        cmd.env_remove(hive_proto::ENV_IPC_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        cmd
    }
}

/// Why a child did not get as far as its ready line.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot create {}: {source}", dir.display())]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {}: {source}", exe.display())]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("the child has no stdout")]
    NoStdout,
    #[error("it exited before it was ready")]
    Exited,
    #[error("no ready line within {0:?}")]
    NotReady(Duration),
}

/// Start a child and read its ready line.
async fn start(spec: &ChildSpec) -> Result<(Child, ReadyLine), StartError> {
    std::fs::create_dir_all(&spec.data_dir).map_err(|source| StartError::DataDir {
        dir: spec.data_dir.clone(),
        source,
    })?;
    let mut child = spec.command().spawn().map_err(|source| StartError::Spawn {
        exe: spec.exe.clone(),
        source,
    })?;
    let stdout = child.stdout.take().ok_or(StartError::NoStdout)?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(READY_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(ready) = serde_json::from_str::<ReadyLine>(&line) {
                return Some(ready);
            }
        }
        None
    })
    .await;
    match ready {
        Ok(Some(ready)) => {
            // Keep reading so that the child never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok((child, ready))
        }
        Ok(None) => Err(StartError::Exited),
        Err(_) => Err(StartError::NotReady(READY_TIMEOUT)),
    }
}

/// Keep one child running until this daemon shuts down.
async fn supervise(
    spec: ChildSpec,
    first: oneshot::Sender<Result<ChildInfo, StartError>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut first = Some(first);
    // The host's restart policy, so that a node waits alike under either.
    let mut failures = 0u32;
    loop {
        let (mut child, ready) = match start(&spec).await {
            Ok(started) => started,
            Err(reason) => {
                tracing::warn!(dir = %spec.data_dir.display(), %reason, "child did not start");
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(reason));
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff::RESTART.delay(failures)) => {}
                    _ = shutdown.changed() => return,
                }
                failures = failures.saturating_add(1);
                continue;
            }
        };
        tracing::info!(peer_id = %ready.peer_id, pid = ready.pid, "child node running");
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(ChildInfo {
                peer_id: ready.peer_id.clone(),
                pid: Some(ready.pid),
                data_dir: spec.data_dir.display().to_string(),
                listen_addrs: ready.listen_addrs.clone(),
            }));
        }
        let since = Instant::now();
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(peer_id = %ready.peer_id, ?status, "child node exited; restarting");
            }
            _ = shutdown.changed() => {
                stop(&mut child).await;
                return;
            }
        }
        if since.elapsed() >= backoff::HEALTHY_AFTER {
            failures = 0;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff::RESTART.delay(failures)) => {}
            _ = shutdown.changed() => return,
        }
        failures = failures.saturating_add(1);
    }
}

/// SIGTERM, then SIGKILL if the child does not exit in time.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on a pid we started and have not reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(Duration::from_secs(3), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}
