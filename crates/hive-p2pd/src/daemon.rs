//! Starting a daemon from its [`Settings`] and shutting it down again.
//!
//! Start-up order matters to clients: identity, token, node (every listen
//! address bound), IPC endpoint bound (and the control socket in go mode),
//! and only then the ready line on stdout. A client that has read the ready
//! line can connect at once.
//!
//! Every call into the node's handle is in this module.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hive_node::{Node, NodeHandle};
use hive_proto::ENV_IPC_TOKEN;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::settings::{ChildSettings, GoFront, Settings};
use crate::stop::{self, StopReason};
use crate::{children, control, dir_lock, identity, ipc, metrics_http, ready};

/// How long a stopping node may take to write what it remembers.
const SAVE_MEMORY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the IPC and control servers get to close their connections.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// A running daemon: its node, its front doors and the tasks serving them.
pub struct Daemon {
    node: NodeHandle,
    /// Tells the servers (and the children) to stop.
    shutdown: watch::Sender<bool>,
    /// The IPC server and, in go mode, the control server.
    servers: Vec<JoinHandle<()>>,
    parent: Option<i32>,
    idle: Option<(watch::Receiver<usize>, Duration)>,
    /// The data directory is this daemon's alone while it runs.
    _dir_lock: dir_lock::DirLock,
    /// An ephemeral daemon's data directory, removed when the daemon is.
    _scratch: Option<RemoveOnDrop>,
}

impl Daemon {
    /// Start everything, then print the ready line.
    pub async fn start(mut settings: Settings) -> Result<Daemon> {
        for notice in &settings.notices {
            tracing::info!("{notice}");
        }
        let parent = if settings.exit_with_parent {
            Some(crate::parent::arm().context("the parent process is already gone")?)
        } else {
            None
        };
        identity::ensure_private_dir(&settings.data_dir)?;
        // Before the key, the token and the history are opened.
        let dir_lock = dir_lock::acquire(&settings.data_dir, dir_lock::WAIT_LIMIT).await?;
        let scratch = settings
            .scratch
            .then(|| RemoveOnDrop(settings.data_dir.clone()));
        if let Some(key_file) = &settings.key_file {
            settings.node.keypair = identity::load_or_create_keypair(key_file)?;
        }
        let token = identity::load_token(
            std::env::var(ENV_IPC_TOKEN).ok(),
            settings.token_file.as_deref(),
            &settings.data_dir,
        )?;
        let node = Node::start(settings.node).await?;
        let listener = ipc::bind(&settings.ipc).await?;
        let ipc_url = listener.url()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(ipc::Context {
            node: node.clone(),
            reproducer: reproducer(&settings.children, &settings.data_dir, &shutdown_rx)?,
            token,
            max_frame_bytes: settings.max_frame_bytes,
        });
        let (persistent_open, persistent_watch) = control::persistent_counter();
        let mut servers = Vec::new();
        let control = match &settings.go {
            Some(go) => {
                let (bound, task) =
                    start_control(go, &node, persistent_open, shutdown_rx.clone()).await?;
                servers.push(task);
                Some(bound)
            }
            None => None,
        };
        if let Some(addr) = settings.go.as_ref().and_then(|g| g.metrics_addr) {
            metrics_http::spawn(addr, node.clone()).await?;
        }
        servers.push(tokio::spawn(listener.serve(ctx, shutdown_rx)));

        let line = ready::line(
            node.peer_id().to_string(),
            node.initial_listen_addrs().to_vec(),
            ipc_url,
        );
        let style = match (&settings.go, &control) {
            (Some(go), Some(bound)) => ready::Style::Go {
                control: bound,
                quiet: go.quiet,
            },
            _ => ready::Style::Json,
        };
        ready::print(&mut std::io::stdout().lock(), &line, style)?;
        tracing::info!(peer_id = %line.peer_id, ipc = %line.ipc, addrs = ?line.listen_addrs, "ready");
        let idle = settings
            .go
            .as_ref()
            .map(|g| (persistent_watch, g.idle_timeout));
        Ok(Daemon {
            node,
            shutdown,
            servers,
            parent,
            idle,
            _dir_lock: dir_lock,
            _scratch: scratch,
        })
    }

    /// Wait for a reason to stop: a signal, go's `-idleTimeout`, a
    /// `shutdown` over the IPC, or the parent's death.
    pub async fn stopped(&mut self) -> Result<StopReason> {
        let node = self.node.clone();
        stop::wait(stop::Watch {
            requested: async move { node.shutdown_requested().await },
            parent: self.parent,
            idle: self.idle.take(),
        })
        .await
    }

    /// Save what the node remembers, stop the servers and wait for them.
    pub async fn shutdown(self) {
        // Before the connections close: the peers connected now are the
        // ones a restart should dial.
        if tokio::time::timeout(SAVE_MEMORY_TIMEOUT, self.node.save_memory())
            .await
            .is_err()
        {
            tracing::warn!("node state not saved within 2 s of the stop");
        }
        let _ = self.shutdown.send(true);
        // Give connections a moment to send their close frames (and the
        // shutdown op its answer).
        let servers = futures::future::join_all(self.servers);
        let _ = tokio::time::timeout(CLOSE_GRACE, servers).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Who answers `reproduce`: the supervising host, or this daemon.
fn reproducer(
    children: &ChildSettings,
    data_dir: &std::path::Path,
    shutdown: &watch::Receiver<bool>,
) -> Result<children::Reproducer> {
    if children.via_host {
        return Ok(children::Reproducer::ViaHost);
    }
    let own = children::Children::new(
        data_dir.to_path_buf(),
        children.no_mdns,
        children.max,
        shutdown.clone(),
    )
    .context("cannot locate the hive-p2pd executable for children")?;
    Ok(children::Reproducer::Own(own))
}

/// Bind go's control socket and serve it; returns the bound address.
async fn start_control(
    go: &GoFront,
    node: &NodeHandle,
    open: watch::Sender<usize>,
    shutdown: watch::Receiver<bool>,
) -> Result<(control::ControlAddr, JoinHandle<()>)> {
    let (listener, bound) = control::bind(&go.control).await?;
    let settings = control::Settings {
        max_msg: go.persistent_max_msg,
        open,
        connmgr: control::connmgr::ConnManager::new(node, go.conn_manager),
    };
    let task = tokio::spawn(listener.serve(node.clone(), settings, shutdown));
    Ok((bound, task))
}

/// Removes a directory when dropped (an ephemeral daemon's scratch space).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
