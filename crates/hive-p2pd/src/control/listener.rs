//! The control endpoint: binding it (a 0600 Unix socket or loopback TCP)
//! and accepting clients until shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use hive_node::NodeHandle;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use super::{persistent, serve_client, streams, Control, ControlAddr, Settings};

/// A bound control endpoint.
pub enum ControlListener {
    Unix(UnixListener, std::path::PathBuf),
    Tcp(TcpListener),
}

pub async fn bind(addr: &ControlAddr) -> Result<(ControlListener, ControlAddr)> {
    match addr {
        ControlAddr::Unix(path) => {
            if path.exists() {
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
            }
            let l = UnixListener::bind(path)
                .with_context(|| format!("cannot bind control socket {}", path.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            Ok((ControlListener::Unix(l, path.clone()), addr.clone()))
        }
        ControlAddr::Tcp(sock) => {
            if !sock.ip().is_loopback() {
                bail!("the control protocol has no authentication; it listens on loopback or a Unix socket only");
            }
            let l = TcpListener::bind(sock)
                .await
                .with_context(|| format!("cannot bind control socket {sock}"))?;
            let bound = l.local_addr()?;
            Ok((ControlListener::Tcp(l), ControlAddr::Tcp(bound)))
        }
    }
}

impl ControlListener {
    /// Serve clients until `shutdown` turns true.
    pub async fn serve(
        self,
        node: NodeHandle,
        settings: Settings,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Settings {
            max_msg,
            open: persistent_open,
            connmgr,
        } = settings;
        let control = Arc::new(Control {
            handlers: streams::Handlers::new(node.clone()),
            unary: persistent::Unary::start(
                node.named_streams(),
                node.take_named_inbound(),
                max_msg,
            ),
            node,
            persistent_open,
            connmgr,
        });
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                accepted = async {
                    match &self {
                        ControlListener::Unix(l, _) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
                        ControlListener::Tcp(l) => l.accept().await.map(|(s, _)| {
                            let _ = s.set_nodelay(true);
                            Conn::Tcp(s)
                        }),
                    }
                } => match accepted {
                    Ok(Conn::Unix(s)) => { tokio::spawn(serve_client(control.clone(), s)); }
                    Ok(Conn::Tcp(s)) => { tokio::spawn(serve_client(control.clone(), s)); }
                    Err(e) => {
                        tracing::warn!(error = %e, "control accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        if let ControlListener::Unix(_, path) = &self {
            let _ = std::fs::remove_file(path);
        }
    }
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}
