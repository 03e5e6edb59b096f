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

//!
//! This module dispatches a request to its handler group: `peers`
//! (IDENTIFY, CONNECT, DISCONNECT, LIST_PEERS, PEERSTORE), `pubsub`, `dht`,
//! `connmgr`, `streams` (STREAM_OPEN and handlers) and `persistent`
//! (hivemind's unary calls); `addr`, `listener` and `idle` are the endpoint,
//! its accept loop and the `-idleTimeout` watchdog.

mod addr;
mod args;
pub mod connmgr;
mod dht;
mod framing;
mod idle;
mod listener;
pub mod pb;
mod peers;
mod persistent;
mod pubsub;
mod streams;

pub(crate) use addr::multiaddr_to_socket;
pub use addr::ControlAddr;
pub use framing::MAX_FRAME;
pub use idle::{idle, persistent_counter};
pub use listener::bind;

use std::sync::Arc;

use hive_node::NodeHandle;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use args::{peer_from, ArgError};
use framing::{read_frame, write_frame};
use idle::OpenGuard;
use pb::{PsRequestType, RequestType};

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

/// One request, read and decoded; a bad one is answered here (why, then
/// the connection closes).
async fn read_request<S>(stream: &mut S) -> Option<pb::Request>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let error = match read_frame(stream).await {
        Ok(Some(frame)) => match pb::Request::decode(frame.as_slice()) {
            Ok(request) => return Some(request),
            Err(e) => format!("malformed request: {e}"),
        },
        Ok(None) => return None,
        // Oversized or truncated.
        Err(e) => e.to_string(),
    };
    let _ = write_frame(stream, &pb::Response::error(error).encode_to_vec()).await;
    None
}

async fn serve_client<S>(control: Arc<Control>, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let node = &control.node;
    let kind = RequestType::try_from(request.r#type).ok();
    let response = match kind {
        Some(RequestType::Identify) => peers::identify(node).await,
        Some(RequestType::Connect) => peers::connect(node, request.connect).await,
        Some(RequestType::Disconnect) => peers::disconnect(node, request.disconnect).await,
        Some(RequestType::ListPeers) => peers::list(node).await,
        Some(RequestType::Pubsub) => match request.pubsub {
            Some(ps) if ps.r#type == PsRequestType::Subscribe as i32 => {
                return pubsub::subscribe(node, ps.topic.unwrap_or_default(), stream).await;
            }
            Some(ps) => pubsub::request(node, ps).await,
            None => pb::Response::error("PUBSUB needs a pubsub request"),
        },
        Some(RequestType::Dht) => match request.dht {
            Some(dht) => return dht::request(node, dht, stream).await,
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
            Some(ps) => peers::peerstore(node, ps).await,
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
        Some(parsed) => parsed,
        None => Err(ArgError::Missing(
            "CONNMANAGER TAG_PEER/UNTAG_PEER needs a peer",
        )),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
