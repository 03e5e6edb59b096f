//! STREAM_OPEN and STREAM_HANDLER: raw libp2p streams piped to clients.
//!
//! Inbound streams for a protocol are handed, round robin, to the handler
//! addresses registered for it. A handler that cannot be reached (its client
//! died without removing it) is dropped on the spot and the stream goes to
//! the next one, so a dead client never makes half the calls fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use hive_node::named::OpenError;
use hive_node::NodeHandle;
use hive_proto::PeersResult;
use libp2p::{Multiaddr, PeerId};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::args::{peer_from, protocol, ArgError};
use super::framing::write_frame;
use super::pb;
use hive_proto::sync::lock;

/// Where a handler client listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HandlerAddr {
    Unix(String),
    Tcp(std::net::SocketAddr),
}

impl HandlerAddr {
    fn from_bytes(bytes: &[u8]) -> Result<HandlerAddr, ArgError> {
        let addr = Multiaddr::try_from(bytes.to_vec())?;
        if let Some(libp2p::multiaddr::Protocol::Unix(path)) = addr.iter().next() {
            let path = path.to_string();
            return Ok(HandlerAddr::Unix(if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            }));
        }
        super::multiaddr_to_socket(&addr)
            .map(HandlerAddr::Tcp)
            .ok_or(ArgError::UnsupportedHandlerAddr(addr))
    }
}

struct Registration {
    addrs: Vec<HandlerAddr>,
    next: usize,
    /// Dropping it stops accepting streams for the protocol.
    task: tokio::task::JoinHandle<()>,
}

/// The registered stream handlers, by protocol.
#[derive(Clone)]
pub struct Handlers {
    node: NodeHandle,
    by_proto: Arc<Mutex<HashMap<String, Registration>>>,
}

/// Why STREAM_OPEN was answered with an error.
#[derive(Debug, thiserror::Error)]
enum OpenFailed {
    #[error(transparent)]
    Args(#[from] ArgError),
    /// Every protocol was tried; `last` is what the last attempt said.
    #[error("cannot open a stream to {peer} ({name}): {last}")]
    Failed {
        peer: PeerId,
        name: String,
        last: String,
    },
}

/// Open a stream, giving a peer whose connection is still coming up (or
/// whose addresses are not learned yet) a few seconds: a client that starts
/// two daemons, bootstraps one from the other and opens a stream at once
/// must not lose that race. A peer that does not speak the protocol fails
/// at once.
///
/// Through [`hive_node::named`], which puts the stream on the peer's newest
/// direct connection: libp2p-stream picks one of a peer's connections at
/// random, so after a hole punch a stream could go on the relayed
/// connection, which is closed soon after (and limited meanwhile).
async fn open_soon(
    node: &NodeHandle,
    peer: PeerId,
    name: &str,
) -> Result<libp2p::Stream, OpenError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let named = node.named_streams();
    loop {
        match named.open(peer, name).await {
            Err(OpenError::Unreachable(_) | OpenError::Io(_))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// Bytes copied per read in each direction between a client's socket and a
/// libp2p stream: tokio's default of 8 KiB costs a wake-up per 8 KiB on bulk
/// transfers.
const PIPE_BUFFER: usize = 256 * 1024;

/// Copy both ways until both sides are done.
async fn pipe<A, B>(a: &mut A, b: &mut B) -> std::io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, PIPE_BUFFER, PIPE_BUFFER).await
}

impl Handlers {
    pub fn new(node: NodeHandle) -> Self {
        Handlers {
            node,
            by_proto: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// STREAM_HANDLER. `balanced` is optional (upstream clients omit it):
    /// with several handlers for one protocol, streams go round robin.
    pub async fn register(&self, req: pb::StreamHandlerRequest) -> pb::Response {
        let addr = match HandlerAddr::from_bytes(&req.addr) {
            Ok(a) => a,
            Err(e) => return pb::Response::error(e),
        };
        if req.proto.is_empty() {
            return pb::Response::error("STREAM_HANDLER needs at least one protocol");
        }
        for name in &req.proto {
            let proto = match protocol(name) {
                Ok(p) => p,
                Err(e) => return pb::Response::error(e),
            };
            let mut map = lock(&self.by_proto);
            if let Some(reg) = map.get_mut(name) {
                if !reg.addrs.contains(&addr) {
                    reg.addrs.push(addr.clone());
                }
                continue;
            }
            let incoming = match self.node.stream_control().accept(proto) {
                Ok(i) => i,
                Err(e) => return pb::Response::error(format!("cannot handle {name}: {e}")),
            };
            let task = tokio::spawn(self.clone().accept_loop(name.clone(), incoming));
            map.insert(
                name.clone(),
                Registration {
                    addrs: vec![addr.clone()],
                    next: 0,
                    task,
                },
            );
        }
        pb::Response::ok()
    }

    /// REMOVE_STREAM_HANDLER.
    pub fn remove(&self, req: pb::RemoveStreamHandlerRequest) -> pb::Response {
        let addr = match HandlerAddr::from_bytes(&req.addr) {
            Ok(a) => a,
            Err(e) => return pb::Response::error(e),
        };
        let mut map = lock(&self.by_proto);
        for name in &req.proto {
            let empty = match map.get_mut(name) {
                Some(reg) => {
                    reg.addrs.retain(|a| a != &addr);
                    reg.addrs.is_empty()
                }
                None => false,
            };
            if empty {
                if let Some(reg) = map.remove(name) {
                    reg.task.abort();
                }
            }
        }
        pb::Response::ok()
    }

    fn next_handler(&self, proto: &str) -> Option<HandlerAddr> {
        let mut map = lock(&self.by_proto);
        let reg = map.get_mut(proto)?;
        if reg.addrs.is_empty() {
            return None;
        }
        reg.next = (reg.next + 1) % reg.addrs.len();
        Some(reg.addrs[reg.next].clone())
    }

    fn drop_handler(&self, proto: &str, addr: &HandlerAddr) {
        if let Some(reg) = lock(&self.by_proto).get_mut(proto) {
            reg.addrs.retain(|a| a != addr);
        }
    }

    async fn accept_loop(self, proto: String, mut incoming: libp2p_stream::IncomingStreams) {
        while let Some((peer, stream)) = incoming.next().await {
            let this = self.clone();
            let proto = proto.clone();
            tokio::spawn(async move {
                let remote_addr = remote_addr(&this.node, &peer).await;
                let info = pb::StreamInfo {
                    peer: peer.to_bytes(),
                    addr: remote_addr,
                    proto: proto.clone(),
                };
                let mut stream = stream.compat();
                while let Some(addr) = this.next_handler(&proto) {
                    match deliver(&addr, &info, &mut stream).await {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::warn!(?addr, %proto, error = %e, "stream handler unreachable; dropping it");
                            this.drop_handler(&proto, &addr);
                        }
                    }
                }
                tracing::debug!(%proto, %peer, "no handler left for an inbound stream");
            });
        }
    }
}

/// Dial the handler, write the stream info, and pipe until both sides end.
async fn deliver<S>(
    addr: &HandlerAddr,
    info: &pb::StreamInfo,
    stream: &mut S,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match addr {
        HandlerAddr::Unix(path) => {
            let mut conn = tokio::net::UnixStream::connect(path).await?;
            write_frame(&mut conn, &info.encode_to_vec()).await?;
            let _ = pipe(&mut conn, stream).await;
        }
        HandlerAddr::Tcp(sock) => {
            let mut conn = tokio::net::TcpStream::connect(sock).await?;
            let _ = conn.set_nodelay(true);
            write_frame(&mut conn, &info.encode_to_vec()).await?;
            let _ = pipe(&mut conn, stream).await;
        }
    }
    Ok(())
}

/// The remote address of a connected peer, as a binary multiaddr.
async fn remote_addr(node: &NodeHandle, peer: &PeerId) -> Vec<u8> {
    let peers = node.peers().await.unwrap_or(PeersResult { peers: vec![] });
    peers
        .peers
        .iter()
        .find(|p| p.peer_id == peer.to_string())
        .and_then(|p| p.addrs.first())
        .and_then(|a| a.parse::<Multiaddr>().ok())
        .map(|a| hive_node::without_p2p(&a).to_vec())
        .unwrap_or_default()
}

/// STREAM_OPEN: open a stream to the peer, answer with its info, then the
/// client connection becomes the stream.
pub async fn open<S>(node: &NodeHandle, req: pb::StreamOpenRequest, mut client: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let answer = async {
        let peer = peer_from(&req.peer)?;
        let name = req
            .proto
            .first()
            .ok_or(ArgError::Missing("STREAM_OPEN needs a protocol"))?
            .clone();
        let mut last = String::new();
        for name in &req.proto {
            // Checked as before (a name with a leading `/`), though named
            // streams would take any spelling.
            protocol(name)?;
            let timeout = std::time::Duration::from_secs(
                req.timeout
                    .filter(|t| *t > 0)
                    .map(|t| t as u64)
                    .unwrap_or(60),
            );
            match tokio::time::timeout(timeout, open_soon(node, peer, name)).await {
                Ok(Ok(stream)) => return Ok((peer, name.clone(), stream)),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = format!("timed out after {timeout:?}"),
            }
        }
        Err(OpenFailed::Failed { peer, name, last })
    }
    .await;
    match answer {
        Ok((peer, proto, stream)) => {
            let info = pb::StreamInfo {
                peer: peer.to_bytes(),
                addr: remote_addr(node, &peer).await,
                proto,
            };
            let response = pb::Response {
                stream_info: Some(info),
                ..pb::Response::ok()
            };
            if write_frame(&mut client, &response.encode_to_vec())
                .await
                .is_err()
            {
                return;
            }
            let mut stream = stream.compat();
            let _ = pipe(&mut client, &mut stream).await;
        }
        Err(e) => {
            let _ = write_frame(&mut client, &pb::Response::error(e).encode_to_vec()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HandlerAddr, ArgError> {
        HandlerAddr::from_bytes(&text.parse::<Multiaddr>().unwrap().to_vec())
    }

    #[test]
    fn handler_addresses_are_unix_paths_or_tcp_sockets() {
        // p2pclient's encoding of /unix/tmp/h.sock: one component, the path.
        let unix = Multiaddr::empty().with(libp2p::multiaddr::Protocol::Unix("/tmp/h.sock".into()));
        assert_eq!(
            HandlerAddr::from_bytes(&unix.to_vec()).unwrap(),
            HandlerAddr::Unix("/tmp/h.sock".into())
        );
        assert_eq!(
            parse("/ip4/127.0.0.1/tcp/7000").unwrap(),
            HandlerAddr::Tcp("127.0.0.1:7000".parse().unwrap())
        );
        assert_eq!(
            parse("/ip6/::1/tcp/7000").unwrap(),
            HandlerAddr::Tcp("[::1]:7000".parse().unwrap())
        );
        for bad in ["/ip4/127.0.0.1/udp/7000", "/dns4/localhost/tcp/7000"] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.to_string(), format!("unsupported handler address {bad}"));
        }
        let e = HandlerAddr::from_bytes(b"\xff\xff").unwrap_err();
        assert!(e.to_string().starts_with("invalid handler address"), "{e}");
    }
}
