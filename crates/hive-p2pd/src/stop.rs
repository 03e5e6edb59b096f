//! Why a daemon stops, and waiting for the first reason to come.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// What ended the daemon's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Sigterm,
    Sigint,
    /// go's `-idleTimeout`: no persistent connection for that long.
    Idle(Duration),
    /// A client sent `shutdown` over the IPC.
    Requested,
    /// `--exit-with-parent` and the parent process died.
    ParentGone,
}

impl StopReason {
    fn log(self) {
        match self {
            StopReason::Sigterm => tracing::info!("SIGTERM: shutting down"),
            StopReason::Sigint => tracing::info!("SIGINT: shutting down"),
            StopReason::Idle(idle_timeout) => tracing::info!(
                ?idle_timeout,
                "-idleTimeout: no persistent connection for that long; shutting down"
            ),
            StopReason::Requested => tracing::info!("shutdown requested over the IPC"),
            StopReason::ParentGone => tracing::warn!("parent process died: shutting down"),
        }
    }
}

/// What a daemon watches for besides signals.
pub struct Watch<R> {
    /// Resolves when a client asks the daemon to stop.
    pub requested: R,
    /// The parent pid to watch (`--exit-with-parent`).
    pub parent: Option<i32>,
    /// Open persistent connections and go's `-idleTimeout` (zero: never).
    pub idle: Option<(watch::Receiver<usize>, Duration)>,
}

/// Wait for the first reason to stop, and log it.
pub async fn wait<R: Future<Output = ()>>(watching: Watch<R>) -> Result<StopReason> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let parent_gone = async {
        match watching.parent {
            Some(pid) => crate::parent::watch(pid).await,
            None => std::future::pending().await,
        }
    };
    let idle_timeout = watching.idle.as_ref().map(|(_, t)| *t).unwrap_or_default();
    let idle = async {
        match watching.idle {
            Some((open, timeout)) if !timeout.is_zero() => {
                crate::control::idle(open, timeout).await
            }
            _ => std::future::pending().await,
        }
    };
    let reason = tokio::select! {
        _ = sigterm.recv() => StopReason::Sigterm,
        _ = idle => StopReason::Idle(idle_timeout),
        _ = sigint.recv() => StopReason::Sigint,
        _ = watching.requested => StopReason::Requested,
        _ = parent_gone => StopReason::ParentGone,
    };
    reason.log();
    Ok(reason)
}
