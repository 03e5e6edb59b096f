//! Peers: CONNECT, and the peer ids and addresses the answers carry
//! (PEERSTORE included).

use hive_node::NodeHandle;
use libp2p::{Multiaddr, PeerId};

use super::args::peer_from;
use super::{ok_or_error, pb};

/// IDENTIFY: this node's id and the addresses others can dial.
pub(super) async fn identify(node: &NodeHandle) -> pb::Response {
    match node.status().await {
        Ok(st) => pb::Response {
            identify: Some(pb::IdentifyResponse {
                id: node.peer_id().to_bytes(),
                addrs: addr_bytes(&st.listen_addrs),
            }),
            ..pb::Response::ok()
        },
        Err(e) => pb::Response::error(e.to_string()),
    }
}

pub(super) async fn disconnect(
    node: &NodeHandle,
    request: Option<pb::DisconnectRequest>,
) -> pb::Response {
    match request {
        Some(d) => match peer_from(&d.peer) {
            Ok(peer) => ok_or_error(node.disconnect(peer).await),
            Err(e) => pb::Response::error(e),
        },
        None => pb::Response::error("DISCONNECT needs a disconnect request"),
    }
}

/// LIST_PEERS as go's daemon answers it: one entry per open connection,
/// with that connection's remote address (a circuit's ends in
/// `/p2p-circuit`), so a client sees how it is connected, not where the
/// peer says it listens.
pub(super) async fn list(node: &NodeHandle) -> pb::Response {
    match node.peers().await {
        Ok(p) => pb::Response {
            peers: p
                .peers
                .iter()
                .flat_map(|p| {
                    let conns: Vec<&String> = if p.connections.is_empty() {
                        p.addrs.iter().collect()
                    } else {
                        p.connections.iter().collect()
                    };
                    conns
                        .into_iter()
                        .filter_map(|c| peer_info(&p.peer_id, std::slice::from_ref(c)))
                        .collect::<Vec<_>>()
                })
                .collect(),
            ..pb::Response::ok()
        },
        Err(e) => pb::Response::error(e.to_string()),
    }
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

pub(super) fn peer_info(peer_id: &str, addrs: &[String]) -> Option<pb::PeerInfo> {
    let id = peer_id.parse::<PeerId>().ok()?.to_bytes();
    Some(pb::PeerInfo {
        id,
        addrs: addr_bytes(addrs),
    })
}

pub(super) async fn connect(
    node: &NodeHandle,
    request: Option<pb::ConnectRequest>,
) -> pb::Response {
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

/// js-libp2p-daemon's PEERSTORE: GET_PROTOCOLS (1) and GET_PEER_INFO (2).
pub(super) async fn peerstore(node: &NodeHandle, req: pb::PeerstoreRequest) -> pb::Response {
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
