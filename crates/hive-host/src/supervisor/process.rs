//! The daemon process: its command line, its ready line and IPC link, and
//! stopping it so that no process is left behind.

use std::process::Stdio;
use std::time::Duration;

use hive_proto::{Event, Op, ReadyLine, ENV_EXIT_WITH_PARENT, ENV_IPC_TOKEN};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::Supervisor;
use crate::ipc_client::IpcClient;
use hive_proto::sync::lock;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why one start attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum StartError {
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

impl Supervisor {
    pub(super) fn spawn(&self, listen: &[String]) -> Result<Child, StartError> {
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
            if let Some(secs) = settings.relay_reservation_secs {
                cmd.args(["--relay-reservation-secs", &secs.to_string()]);
            }
        }
        if let Some(n) = settings.conn_low {
            cmd.args(["--conn-low", &n.to_string()]);
        }
        if let Some(n) = settings.conn_high {
            cmd.args(["--conn-high", &n.to_string()]);
        }
        cmd.args(settings.peer_limits.daemon_args());
        if let Some(n) = settings.worker_threads {
            cmd.args(["--worker-threads", &n.to_string()]);
        }
        if cfg.durability == crate::store::Durability::Fsync {
            cmd.args(["--durability", "fsync"]);
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
    pub(super) async fn await_ready(
        &self,
        child: &mut Child,
    ) -> Result<(IpcClient, hive_proto::fanout::Receiver<Event>, ReadyLine), StartError> {
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

    /// Ask the daemon to stop, then make sure it did: one deadline covers
    /// both the request and the exit, past it the daemon is killed.
    pub(super) async fn stop_daemon(&self, child: &mut Child, client: &IpcClient) {
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
pub(super) async fn kill_and_reap(child: &mut Child) {
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
