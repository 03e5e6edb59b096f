//! DHT: single answers (FIND_PEER, GET_VALUE, PUT_VALUE, PROVIDE,
//! GET_PUBLIC_KEY) and streamed ones (FIND_PROVIDERS, GET_CLOSEST_PEERS,
//! SEARCH_VALUE).

use hive_node::NodeHandle;
use libp2p::PeerId;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};

use super::args::peer_from;
use super::framing::write_frame;
use super::peers::peer_info;
use super::{ok_or_error, pb};

/// DHT: answered once, or streamed for the queries that find many.
pub(super) async fn request<S>(node: &NodeHandle, dht: pb::DhtRequest, mut stream: S)
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
            return stream_values(node, dht, stream).await;
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
async fn stream_values<S>(node: &NodeHandle, dht: pb::DhtRequest, mut stream: S)
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
    let _ = write_values(&mut stream, values).await;
}

/// BEGIN, each value, END.
async fn write_values<S>(stream: &mut S, values: Vec<pb::DhtResponse>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use pb::DhtResponseType as R;
    let begin = pb::Response {
        dht: Some(pb::DhtResponse {
            r#type: R::Begin as i32,
            peer: None,
            value: None,
        }),
        ..pb::Response::ok()
    };
    write_frame(stream, &begin.encode_to_vec()).await?;
    for v in values {
        write_frame(stream, &v.encode_to_vec()).await?;
    }
    let end = pb::DhtResponse {
        r#type: R::End as i32,
        peer: None,
        value: None,
    };
    write_frame(stream, &end.encode_to_vec()).await
}

fn public_key_of(peer: &PeerId) -> Option<Vec<u8>> {
    let mh = libp2p::multihash::Multihash::<64>::from_bytes(&peer.to_bytes()).ok()?;
    // Code 0 is the identity hash: the digest is the protobuf public key.
    (mh.code() == 0).then(|| mh.digest().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_public_key_is_recovered_from_the_peer_id() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        assert_eq!(public_key_of(&peer), Some(key.public().encode_protobuf()));
    }
}
