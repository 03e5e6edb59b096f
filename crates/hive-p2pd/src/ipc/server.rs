//! Binding the IPC endpoint and accepting connections.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use super::connection::serve_connection;
use super::Context;

/// A bound IPC endpoint.
pub enum IpcListener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Bind `spec`: `IP:PORT` on loopback, or `unix:/path`.
pub async fn bind(spec: &str) -> Result<IpcListener> {
    if let Some(path) = spec.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if path.as_os_str().is_empty() {
            bail!("--ipc unix: needs a socket path, e.g. unix:/run/hive.sock");
        }
        if path.exists() {
            // A socket left by a daemon that died; binding would fail.
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot bind IPC socket {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot set mode 0600 on {}", path.display()))?;
        return Ok(IpcListener::Unix(listener, path));
    }
    let addr: SocketAddr = spec
        .parse()
        .with_context(|| format!("--ipc {spec:?} is neither IP:PORT nor unix:/path"))?;
    if !is_loopback(addr.ip()) {
        bail!("--ipc {addr}: the IPC only listens on loopback (127.0.0.1 or ::1) or a Unix socket");
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind IPC on {addr}"))?;
    Ok(IpcListener::Tcp(listener))
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

impl IpcListener {
    /// How clients reach this endpoint, as printed in the ready line.
    pub fn url(&self) -> Result<String> {
        Ok(match self {
            IpcListener::Tcp(l) => format!("ws://{}", l.local_addr()?),
            IpcListener::Unix(_, path) => format!("unix:{}", path.display()),
        })
    }

    /// Accept connections until `shutdown` turns true.
    pub async fn serve(self, ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.changed() => break,
                accepted = self.accept() => accepted,
            };
            match accepted {
                Ok(Accepted::Tcp(stream)) => {
                    // Small request/response frames must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, ctx.clone(), shutdown.clone()));
                }
                Ok(Accepted::Unix(stream)) => {
                    tokio::spawn(serve_connection(stream, ctx.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Running out of file descriptors, for example: keep serving.
                    tracing::warn!(error = %e, "IPC accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
        if let IpcListener::Unix(_, path) = &self {
            let _ = std::fs::remove_file(path);
        }
    }

    async fn accept(&self) -> std::io::Result<Accepted> {
        match self {
            IpcListener::Tcp(l) => l.accept().await.map(|(s, _)| Accepted::Tcp(s)),
            IpcListener::Unix(l, _) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
        }
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}
