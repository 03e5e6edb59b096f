//! The go-libp2p-daemon control protocol: a second front door to the same
//! node, so that existing clients (p2pclient, hivemind, @libp2p/daemon-client)
//! can use `hive-p2pd` in place of `p2pd`.
//!
//! Each client connection carries one request: an unsigned-varint length
//! prefix and a protobuf `Request`, answered by one `Response`. A successful
//! STREAM_OPEN or PUBSUB SUBSCRIBE turns the connection into a byte pipe or a
//! message stream for good. Stream handlers work the other way round: for
//! each inbound stream the daemon dials the client's handler address, writes
//! one framed `StreamInfo`, then pipes bytes.
//!
//! Everything goes through the same [`NodeHandle`] as the WebSocket IPC, so a
//! topic subscribed through one door and published through the other works.

pub mod connmgr;
mod framing;
pub use framing::MAX_FRAME;
pub mod pb;
mod persistent;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use hive_node::{NodeHandle, PubsubError};
use hive_proto::Event;
use libp2p::{Multiaddr, PeerId};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, watch};

use framing::{read_frame, write_frame};
use pb::{PsRequestType, RequestType};

/// Where the control protocol listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    Unix(std::path::PathBuf),
    Tcp(std::net::SocketAddr),
}

impl ControlAddr {
    /// Parse `/unix/PATH` (the multiaddr crate cannot: it splits paths at
    /// slashes) or `/ip4|ip6/ADDR/tcp/PORT`.
    pub fn parse(text: &str) -> Result<ControlAddr> {
        if let Some(path) = text.strip_prefix("/unix") {
            // `/unix//tmp/x` (p2pclient's spelling) and `/unix/tmp/x` both mean /tmp/x.
            let path = format!("/{}", path.trim_start_matches('/'));
            if path == "/" {
                bail!("-listen {text}: a Unix socket path is missing");
            }
            return Ok(ControlAddr::Unix(path.into()));
        }
        let addr: Multiaddr = text
            .parse()
            .with_context(|| format!("-listen {text:?} is not a multiaddr"))?;
        multiaddr_to_socket(&addr)
            .map(ControlAddr::Tcp)
            .with_context(|| format!("-listen {text}: expected /unix/PATH or /ip4/IP/tcp/PORT"))
    }

    pub fn display(&self) -> String {
        match self {
            ControlAddr::Unix(path) => format!("/unix{}", path.display()),
            ControlAddr::Tcp(addr) => match addr {
                std::net::SocketAddr::V4(a) => format!("/ip4/{}/tcp/{}", a.ip(), a.port()),
                std::net::SocketAddr::V6(a) => format!("/ip6/{}/tcp/{}", a.ip(), a.port()),
            },
        }
    }
}

/// `/ip4|ip6/IP/tcp/PORT` and nothing after it.
pub(crate) fn multiaddr_to_socket(addr: &Multiaddr) -> Option<std::net::SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut iter = addr.iter();
    let ip: std::net::IpAddr = match iter.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match (iter.next()?, iter.next()) {
        (Protocol::Tcp(port), None) => Some((ip, port).into()),
        _ => None,
    }
}

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

/// Shared state of the control server.
pub struct Control {
    node: NodeHandle,
    handlers: streams::Handlers,
    /// hivemind's unary handlers and calls (persistent connections).
    unary: Arc<persistent::Unary>,
    /// How many persistent connections are open (for `-idleTimeout`).
    persistent_open: watch::Sender<usize>,
    /// CONNMANAGER tags and trimming.
    connmgr: Arc<connmgr::ConnManager>,
}

/// What the control server is started with beyond the node: hivemind's
/// persistent connections (their message bound, `-persistentConnMaxMsgSize`,
/// and the count of open ones) and the connection manager.
pub struct Settings {
    pub max_msg: usize,
    pub open: watch::Sender<usize>,
    pub connmgr: Arc<connmgr::ConnManager>,
}

/// Open persistent connections, counted for `-idleTimeout`.
pub fn persistent_counter() -> (watch::Sender<usize>, watch::Receiver<usize>) {
    watch::channel(0)
}

/// Completes once no persistent connection has been open for `timeout`
/// (go's `-idleTimeout`: a daemon whose client died without stopping it
/// does not linger). The clock starts at start-up and again each time the
/// last persistent connection closes.
pub async fn idle(mut open: watch::Receiver<usize>, timeout: Duration) {
    loop {
        while *open.borrow_and_update() > 0 {
            if open.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
        match tokio::time::timeout(timeout, open.changed()).await {
            Err(_) => return,
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => continue,
        }
    }
}

/// Counts one persistent connection while it lives.
struct OpenGuard(watch::Sender<usize>);

impl OpenGuard {
    fn new(counter: &watch::Sender<usize>) -> Self {
        counter.send_modify(|n| *n += 1);
        OpenGuard(counter.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
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

fn peer_from(bytes: &[u8]) -> Result<PeerId, String> {
    PeerId::from_bytes(bytes).map_err(|e| format!("invalid peer id: {e}"))
}

/// Own addresses as binary multiaddrs without the `/p2p` suffix (a
/// relayed address keeps its relay's).
fn addr_bytes(addrs: &[String]) -> Vec<Vec<u8>> {
    addrs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .map(|a| hive_node::without_p2p(&a).to_vec())
        .collect()
}

fn peer_info(peer_id: &str, addrs: &[String]) -> Option<pb::PeerInfo> {
    let id = peer_id.parse::<PeerId>().ok()?.to_bytes();
    Some(pb::PeerInfo {
        id,
        addrs: addr_bytes(addrs),
    })
}

async fn serve_client<S>(control: Arc<Control>, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let frame = match read_frame(&mut stream).await {
        Ok(Some(frame)) => frame,
        Ok(None) => return,
        Err(e) => {
            // Oversized or truncated: say why, then close.
            let _ = write_frame(
                &mut stream,
                &pb::Response::error(e.to_string()).encode_to_vec(),
            )
            .await;
            return;
        }
    };
    let request = match pb::Request::decode(frame.as_slice()) {
        Ok(r) => r,
        Err(e) => {
            let _ = write_frame(
                &mut stream,
                &pb::Response::error(format!("malformed request: {e}")).encode_to_vec(),
            )
            .await;
            return;
        }
    };
    let node = &control.node;
    let kind = RequestType::try_from(request.r#type).ok();
    let response = match kind {
        Some(RequestType::Identify) => match node.status().await {
            Ok(st) => pb::Response {
                identify: Some(pb::IdentifyResponse {
                    id: node.peer_id().to_bytes(),
                    addrs: addr_bytes(&st.listen_addrs),
                }),
                ..pb::Response::ok()
            },
            Err(e) => pb::Response::error(e.to_string()),
        },
        Some(RequestType::Connect) => connect(node, request.connect).await,
        Some(RequestType::Disconnect) => match request.disconnect {
            Some(d) => match peer_from(&d.peer) {
                Ok(peer) => ok_or_error(node.disconnect(peer).await),
                Err(e) => pb::Response::error(e),
            },
            None => pb::Response::error("DISCONNECT needs a disconnect request"),
        },
        Some(RequestType::ListPeers) => match node.peers().await {
            Ok(p) => pb::Response {
                peers: p
                    .peers
                    .iter()
                    .filter_map(|p| peer_info(&p.peer_id, &p.addrs))
                    .collect(),
                ..pb::Response::ok()
            },
            Err(e) => pb::Response::error(e.to_string()),
        },
        Some(RequestType::Pubsub) => match request.pubsub {
            Some(ps) if ps.r#type == PsRequestType::Subscribe as i32 => {
                return subscribe(node, ps.topic.unwrap_or_default(), stream).await;
            }
            Some(ps) => pubsub(node, ps).await,
            None => pb::Response::error("PUBSUB needs a pubsub request"),
        },
        Some(RequestType::Dht) => match request.dht {
            Some(dht) => return dht_request(node, dht, stream).await,
            None => pb::Response::error("DHT needs a dht request"),
        },
        Some(RequestType::ConnManager) => match request.conn_manager {
            Some(req) => conn_manager(&control, req).await,
            None => pb::Response::error("CONNMANAGER needs a connManager request"),
        },
        Some(RequestType::StreamOpen) => match request.stream_open {
            Some(open) => return streams::open(node, open, stream).await,
            None => pb::Response::error("STREAM_OPEN needs a streamOpen request"),
        },
        Some(RequestType::StreamHandler) => match request.stream_handler {
            Some(h) => control.handlers.register(h).await,
            None => pb::Response::error("STREAM_HANDLER needs a streamHandler request"),
        },
        Some(RequestType::RemoveStreamHandler) => match request.remove_stream_handler {
            Some(h) => control.handlers.remove(h),
            None => {
                pb::Response::error("REMOVE_STREAM_HANDLER needs a removeStreamHandler request")
            }
        },
        Some(RequestType::PersistentConnUpgradeOrPeerstore) => match request.peer_store {
            Some(ps) => peerstore(node, ps).await,
            // hivemind's PERSISTENT_CONN_UPGRADE: OK, then the connection
            // carries unary handlers and calls for as long as it lives.
            None => {
                if write_frame(&mut stream, &pb::Response::ok().encode_to_vec())
                    .await
                    .is_ok()
                {
                    let _open = OpenGuard::new(&control.persistent_open);
                    persistent::serve(control.unary.clone(), stream).await;
                }
                return;
            }
        },
        None => pb::Response::error(format!("unknown request type {}", request.r#type)),
    };
    let _ = write_frame(&mut stream, &response.encode_to_vec()).await;
    let _ = stream.shutdown().await;
}

fn ok_or_error<T, E: std::fmt::Display>(result: Result<T, E>) -> pb::Response {
    match result {
        Ok(_) => pb::Response::ok(),
        Err(e) => pb::Response::error(e.to_string()),
    }
}

/// CONNMANAGER: TAG_PEER (0), UNTAG_PEER (1), TRIM (2).
async fn conn_manager(control: &Control, req: pb::ConnManagerRequest) -> pb::Response {
    let peer = || match req.peer.as_deref().map(peer_from) {
        Some(Ok(peer)) => Ok(peer),
        Some(Err(e)) => Err(e),
        None => Err("CONNMANAGER TAG_PEER/UNTAG_PEER needs a peer".to_string()),
    };
    match req.r#type {
        0 | 1 => {
            let peer = match peer() {
                Ok(p) => p,
                Err(e) => return pb::Response::error(e),
            };
            let Some(tag) = req.tag else {
                return pb::Response::error("CONNMANAGER TAG_PEER/UNTAG_PEER needs a tag");
            };
            if req.r#type == 0 {
                control.connmgr.tag(peer, tag, req.weight.unwrap_or(0));
            } else {
                control.connmgr.untag(&peer, &tag);
            }
            pb::Response::ok()
        }
        2 => match control.connmgr.trim(&control.node).await {
            Ok(_) => pb::Response::ok(),
            Err(e) => pb::Response::error(e),
        },
        other => pb::Response::error(format!("unknown CONNMANAGER request type {other}")),
    }
}

async fn connect(node: &NodeHandle, request: Option<pb::ConnectRequest>) -> pb::Response {
    let Some(request) = request else {
        return pb::Response::error("CONNECT needs a connect request");
    };
    let peer = match peer_from(&request.peer) {
        Ok(p) => p,
        Err(e) => return pb::Response::error(e),
    };
    let mut last_error = "no addresses given and the peer is not connected".to_string();
    if request.addrs.is_empty() {
        // Already connected, or known to the DHT.
        if let Ok(found) = node.find_peer(peer).await {
            for addr in found.addrs {
                let addr = match addr.parse::<Multiaddr>() {
                    Ok(addr) => addr,
                    Err(e) => {
                        last_error = format!("invalid multiaddr {addr:?}: {e}");
                        continue;
                    }
                };
                match node.dial(addr).await {
                    Ok(_) => return pb::Response::ok(),
                    Err(e) => last_error = e.to_string(),
                }
            }
        }
    }
    for raw in request.addrs {
        let Ok(addr) = Multiaddr::try_from(raw) else {
            last_error = "invalid multiaddr".into();
            continue;
        };
        // Clients send addresses with or without the peer's /p2p part
        // (circuit addresses always end in it).
        let addr = match addr.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(_)) => addr,
            _ => addr.with(libp2p::multiaddr::Protocol::P2p(peer)),
        };
        match node.dial(addr).await {
            Ok(_) => return pb::Response::ok(),
            Err(e) => last_error = e.to_string(),
        }
    }
    pb::Response::error(format!("cannot connect to {peer}: {last_error}"))
}

async fn pubsub(node: &NodeHandle, ps: pb::PsRequest) -> pb::Response {
    match PsRequestType::try_from(ps.r#type) {
        Ok(PsRequestType::GetTopics) => match node.topics().await {
            Ok(t) => pb::Response {
                pubsub: Some(pb::PsResponse {
                    topics: t.topics.into_iter().map(|t| t.topic).collect(),
                    peer_ids: Vec::new(),
                }),
                ..pb::Response::ok()
            },
            Err(e) => pb::Response::error(e.to_string()),
        },
        Ok(PsRequestType::ListPeers) => {
            let topic = ps.topic.unwrap_or_default();
            match node.topic_peers(topic).await {
                Ok(p) => pb::Response {
                    pubsub: Some(pb::PsResponse {
                        topics: Vec::new(),
                        peer_ids: p
                            .peers
                            .iter()
                            .filter_map(|p| p.parse::<PeerId>().ok())
                            .map(|p| p.to_bytes())
                            .collect(),
                    }),
                    ..pb::Response::ok()
                },
                Err(e) => pb::Response::error(e.to_string()),
            }
        }
        Ok(PsRequestType::Publish) => {
            let topic = ps.topic.unwrap_or_default();
            let data = ps.data.unwrap_or_default();
            match node.publish(topic.clone(), data, None).await {
                Ok(_) => pb::Response::ok(),
                // go-libp2p-pubsub accepts a publish with nobody listening;
                // its clients rely on that, so this door does too (logged).
                Err(PubsubError::NoPeers { .. }) => {
                    tracing::debug!(%topic, "control publish with no peers in the topic");
                    pb::Response::ok()
                }
                Err(e) => pb::Response::error(e.to_string()),
            }
        }
        Ok(PsRequestType::Subscribe) => pb::Response::error("unreachable: handled as a stream"),
        Err(_) => pb::Response::error(format!("unknown pubsub request type {}", ps.r#type)),
    }
}

/// SUBSCRIBE: answer OK, then stream every message of the topic as a framed
/// `PSMessage` until the client hangs up.
async fn subscribe<S>(node: &NodeHandle, topic: String, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Listen before subscribing so the first messages are not missed.
    let mut events = node.subscribe_events();
    if let Err(e) = node.subscribe(topic.clone()).await {
        let error = pb::Response::error(e.to_string());
        let _ = write_frame(&mut stream, &error.encode_to_vec()).await;
        return;
    }
    if write_frame(&mut stream, &pb::Response::ok().encode_to_vec())
        .await
        .is_err()
    {
        return;
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            // The client closing its side ends the subscription stream.
            read = tokio::io::AsyncReadExt::read(&mut reader, &mut probe) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return;
                }
            }
            event = events.recv() => match event {
                Ok(Event::Message { topic: t, from, data, seqno, signature, key, .. }) if t == topic => {
                    let msg = pb::PsMessage {
                        from: from.parse::<PeerId>().ok().map(|p| p.to_bytes()),
                        data: Some(data.0),
                        seqno: seqno.map(|b| b.0),
                        topic_ids: vec![t],
                        signature: signature.map(|b| b.0),
                        key: key.map(|b| b.0),
                    };
                    if write_frame(&mut writer, &msg.encode_to_vec()).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, %topic, "control subscriber fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

async fn dht_request<S>(node: &NodeHandle, dht: pb::DhtRequest, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use pb::{DhtRequestType as T, DhtResponseType as R};
    let value_response = |peer: Option<pb::PeerInfo>, value: Option<Vec<u8>>| pb::Response {
        dht: Some(pb::DhtResponse {
            r#type: R::Value as i32,
            peer,
            value,
        }),
        ..pb::Response::ok()
    };
    let single = match T::try_from(dht.r#type) {
        Ok(T::FindPeer) => match dht.peer.as_deref().map(peer_from) {
            Some(Ok(peer)) => match node.find_peer(peer).await {
                Ok(found) => value_response(peer_info(&found.peer_id, &found.addrs), None),
                Err(e) => pb::Response::error(e.to_string()),
            },
            Some(Err(e)) => pb::Response::error(e),
            None => pb::Response::error("FIND_PEER needs a peer"),
        },
        Ok(T::GetValue) => match node.get_record(dht.key.unwrap_or_default()).await {
            Ok(r) => value_response(None, Some(r.value.0)),
            Err(e) => pb::Response::error(e.to_string()),
        },
        Ok(T::PutValue) => {
            let (key, value) = (dht.key.unwrap_or_default(), dht.value.unwrap_or_default());
            ok_or_error(node.put_record(key, value).await)
        }
        Ok(T::Provide) => ok_or_error(node.provide(dht.cid.unwrap_or_default()).await),
        Ok(T::GetPublicKey) => match dht.peer.as_deref().map(peer_from) {
            // Ed25519 and secp256k1 peer ids embed the public key.
            Some(Ok(peer)) => match public_key_of(&peer) {
                Some(key) => value_response(None, Some(key)),
                None => pb::Response::error(format!(
                    "the public key of {peer} is not embedded in its id"
                )),
            },
            Some(Err(e)) => pb::Response::error(e),
            None => pb::Response::error("GET_PUBLIC_KEY needs a peer"),
        },
        Ok(T::FindProviders) | Ok(T::SearchValue) | Ok(T::GetClosestPeers) => {
            return dht_stream(node, dht, stream).await;
        }
        // go's daemon answers "not supported" too: Kademlia has no query for
        // the peers connected to a peer.
        Ok(T::FindPeersConnectedToPeer) => pb::Response::error(
            "FIND_PEERS_CONNECTED_TO_PEER is not supported: the DHT has no such query (go-libp2p-daemon refuses it too)",
        ),
        Err(_) => pb::Response::error(format!("unknown DHT request type {}", dht.r#type)),
    };
    let _ = write_frame(&mut stream, &single.encode_to_vec()).await;
}

/// Streaming DHT answers: a BEGIN response, bare `DHTResponse` values, END.
async fn dht_stream<S>(node: &NodeHandle, dht: pb::DhtRequest, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use pb::{DhtRequestType as T, DhtResponseType as R};
    let values: Result<Vec<pb::DhtResponse>, String> = match T::try_from(dht.r#type) {
        Ok(T::FindProviders) => node
            .find_providers(dht.cid.clone().unwrap_or_default())
            .await
            .map_err(|e| e.to_string())
            .map(|r| {
                let count = dht.count.filter(|c| *c > 0).map(|c| c as usize);
                r.providers
                    .iter()
                    .take(count.unwrap_or(usize::MAX))
                    .filter_map(|p| peer_info(&p.peer_id, &p.addrs))
                    .map(|peer| pb::DhtResponse {
                        r#type: R::Value as i32,
                        peer: Some(peer),
                        value: None,
                    })
                    .collect()
            }),
        // Each value is a peer id's bytes, closest first (as go's daemon
        // answers).
        Ok(T::GetClosestPeers) => node
            .closest_peers(dht.key.clone().unwrap_or_default())
            .await
            .map_err(|e| e.to_string())
            .map(|r| {
                r.peers
                    .iter()
                    .filter_map(|p| p.peer_id.parse::<PeerId>().ok())
                    .map(|peer| pb::DhtResponse {
                        r#type: R::Value as i32,
                        peer: None,
                        value: Some(peer.to_bytes()),
                    })
                    .collect()
            }),
        _ => node
            .get_record(dht.key.clone().unwrap_or_default())
            .await
            .map_err(|e| e.to_string())
            .map(|r| {
                vec![pb::DhtResponse {
                    r#type: R::Value as i32,
                    peer: None,
                    value: Some(r.value.0),
                }]
            }),
    };
    let values = match values {
        Ok(v) => v,
        Err(e) => {
            let _ = write_frame(&mut stream, &pb::Response::error(e).encode_to_vec()).await;
            return;
        }
    };
    let begin = pb::Response {
        dht: Some(pb::DhtResponse {
            r#type: R::Begin as i32,
            peer: None,
            value: None,
        }),
        ..pb::Response::ok()
    };
    if write_frame(&mut stream, &begin.encode_to_vec())
        .await
        .is_err()
    {
        return;
    }
    for v in values {
        if write_frame(&mut stream, &v.encode_to_vec()).await.is_err() {
            return;
        }
    }
    let end = pb::DhtResponse {
        r#type: R::End as i32,
        peer: None,
        value: None,
    };
    let _ = write_frame(&mut stream, &end.encode_to_vec()).await;
}

fn public_key_of(peer: &PeerId) -> Option<Vec<u8>> {
    let mh = libp2p::multihash::Multihash::<64>::from_bytes(&peer.to_bytes()).ok()?;
    // Code 0 is the identity hash: the digest is the protobuf public key.
    (mh.code() == 0).then(|| mh.digest().to_vec())
}

/// js-libp2p-daemon's PEERSTORE: GET_PROTOCOLS (1) and GET_PEER_INFO (2).
async fn peerstore(node: &NodeHandle, req: pb::PeerstoreRequest) -> pb::Response {
    let Some(peer) = req.id.as_deref().map(peer_from) else {
        return pb::Response::error("PEERSTORE needs a peer id");
    };
    let peer = match peer {
        Ok(p) => p,
        Err(e) => return pb::Response::error(e),
    };
    match node.peers().await {
        Ok(p) => {
            let info = p
                .peers
                .iter()
                .find(|i| i.peer_id == peer.to_string())
                .and_then(|i| peer_info(&i.peer_id, &i.addrs))
                .unwrap_or(pb::PeerInfo {
                    id: peer.to_bytes(),
                    addrs: Vec::new(),
                });
            pb::Response {
                peer_store: Some(pb::PeerstoreResponse {
                    peer: Some(info),
                    protos: Vec::new(),
                }),
                ..pb::Response::ok()
            }
        }
        Err(e) => pb::Response::error(e.to_string()),
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_fires_only_after_a_whole_period_without_persistent_connections() {
        let (tx, rx) = persistent_counter();
        let watchdog = tokio::spawn(idle(rx, Duration::from_secs(30)));
        tokio::time::sleep(Duration::from_secs(20)).await;
        let guard = OpenGuard::new(&tx);
        // Open for longer than the timeout: no exit.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!watchdog.is_finished());
        drop(guard);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!watchdog.is_finished());
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(watchdog.is_finished());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_addresses() {
        assert_eq!(
            ControlAddr::parse("/unix/tmp/a.sock").unwrap(),
            ControlAddr::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            ControlAddr::parse("/unix//tmp/a.sock").unwrap(),
            ControlAddr::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            ControlAddr::parse("/ip4/127.0.0.1/tcp/5000").unwrap(),
            ControlAddr::Tcp("127.0.0.1:5000".parse().unwrap())
        );
        assert!(ControlAddr::parse("/unix").is_err());
        assert!(ControlAddr::parse("/dns4/x/udp/1").is_err());
        assert_eq!(
            ControlAddr::Unix("/tmp/a.sock".into()).display(),
            "/unix/tmp/a.sock"
        );
    }

    #[test]
    fn upstream_stream_handler_requests_without_balanced_decode() {
        // p2pclient sends addr + proto only; the fork would refuse this.
        let req = pb::Request {
            r#type: RequestType::StreamHandler as i32,
            stream_handler: Some(pb::StreamHandlerRequest {
                addr: vec![1, 2],
                proto: vec!["/echo/1.0.0".into()],
                balanced: None,
            }),
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        let back = pb::Request::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.stream_handler.unwrap().balanced, None);
    }

    #[test]
    fn ed25519_public_key_is_recovered_from_the_peer_id() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        assert_eq!(public_key_of(&peer), Some(key.public().encode_protobuf()));
    }
}
