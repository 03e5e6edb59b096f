//! PUBSUB: topics, their peers, PUBLISH, and SUBSCRIBE, which turns the
//! connection into a message stream.

use hive_node::{NodeHandle, PubsubError};
use hive_proto::Event;
use libp2p::PeerId;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast;

use super::framing::write_frame;
use super::pb::{self, PsRequestType};

/// PUBSUB other than SUBSCRIBE.
pub(super) async fn request(node: &NodeHandle, ps: pb::PsRequest) -> pb::Response {
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
pub(super) async fn subscribe<S>(node: &NodeHandle, topic: String, mut stream: S)
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
