//! The IPC edge of the node: one [`Op`] from the wire becomes one typed call
//! of the [`NodeHandle`](hive_node::NodeHandle), and its answer becomes
//! JSON. Strings from the wire (peer ids, multiaddrs) are parsed here, and
//! the node's typed errors get their wire code here, in one place
//! ([`Coded`]): nothing below this module sees JSON or error codes.

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};
use hive_node::{
    Call, CallError, Delivery, DialError, DirectError, KadError, MetricsError, PingError,
    PubsubError,
};
use hive_proto::{Empty, ErrorBody, ErrorCode, Op};
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use serde_json::Value;

use super::Context;

/// An operation's answer still to come, as the JSON result of a response.
pub type Answer = BoxFuture<'static, Result<Value, ErrorBody>>;

/// Hand `op` to the node now and return its answer to come. Operations
/// submitted one after another reach the node in that order, so pipelined
/// requests (publishes above all) take effect in the order they came.
/// `alone`: none of the connection's earlier requests is still unanswered,
/// so a `status` may be answered from the node's last one (see
/// `NodeHandle::status_now`) without overtaking anything of this client's.
pub async fn submit(ctx: &Arc<Context>, op: Op, alone: bool) -> Answer {
    let node = &ctx.node;
    match op {
        Op::Status => match alone.then(|| node.status_now()).flatten() {
            Some(status) => futures::future::ready(json(&status)).boxed(),
            None => queue(node.status()).await,
        },
        Op::ListenAddrs => queue(node.listen_addrs()).await,
        Op::Dial { addr } => match parse_addr(&addr) {
            Ok(addr) => queue(node.dial(addr)).await,
            Err(e) => refused(e),
        },
        Op::Peers => queue(node.peers()).await,
        Op::Disconnect { peer_id } => match parse_peer(&peer_id) {
            Ok(peer) => queue_empty(node.disconnect(peer)).await,
            Err(e) => refused(e),
        },
        Op::Subscribe { topic } => queue(node.subscribe(topic)).await,
        Op::Unsubscribe { topic } => queue(node.unsubscribe(topic)).await,
        Op::Topics => queue(node.topics()).await,
        Op::TopicPeers { topic } => queue(node.topic_peers(topic)).await,
        Op::Publish { topic, data, id } => queue(node.publish(topic, data.0, id)).await,
        Op::Send { peer_id, data, id } => match parse_peer(&peer_id) {
            Ok(peer) => queue(node.send(peer, data.0, id)).await,
            Err(e) => refused(e),
        },
        Op::Ping { peer_id } => match parse_peer(&peer_id) {
            Ok(peer) => queue(node.ping(peer)).await,
            Err(e) => refused(e),
        },
        Op::Shutdown => queue_empty(node.shutdown()).await,
        Op::Metrics => queue(node.metrics()).await,
        Op::History { after, limit } => {
            let node = node.clone();
            async move { json(&node.history(after, limit).await.map_err(body)?) }.boxed()
        }
        // Children are processes: the daemon starts them, not the node.
        Op::Reproduce { count } => {
            let ctx = ctx.clone();
            async move { json(&ctx.reproducer.reproduce(&ctx.node, count).await?) }.boxed()
        }
        dht => submit_dht(ctx, dht).await,
    }
}

/// The Kademlia operations.
async fn submit_dht(ctx: &Arc<Context>, op: Op) -> Answer {
    let node = &ctx.node;
    match op {
        Op::FindPeer { peer_id } => match parse_peer(&peer_id) {
            Ok(peer) => queue(node.find_peer(peer)).await,
            Err(e) => refused(e),
        },
        Op::Provide { key } => queue_empty(node.provide(key.0)).await,
        Op::FindProviders { key } => queue(node.find_providers(key.0)).await,
        Op::ClosestPeers { key } => queue(node.closest_peers(key.0)).await,
        Op::PutRecord { key, value } => queue_empty(node.put_record(key.0, value.0)).await,
        Op::GetRecord { key } => queue(node.get_record(key.0)).await,
        other => refused(ErrorBody::new(
            ErrorCode::Internal,
            format!("{} is not a DHT operation", other.name()),
        )),
    }
}

/// Submit a call now; its answer, in JSON, comes later.
async fn queue<T, E>(call: Call<T, E>) -> Answer
where
    T: Serialize + Send + 'static,
    E: Coded + From<CallError> + Send + 'static,
{
    match call.submit().await {
        Ok(pending) => async move { json(&pending.answer().await.map_err(body)?) }.boxed(),
        Err(e) => refused(body(e)),
    }
}

/// [`queue`] for operations that answer with nothing: `{}` on the wire.
async fn queue_empty<E>(call: Call<(), E>) -> Answer
where
    E: Coded + From<CallError> + Send + 'static,
{
    match call.submit().await {
        Ok(pending) => async move {
            pending.answer().await.map_err(body)?;
            json(&Empty {})
        }
        .boxed(),
        Err(e) => refused(body(e)),
    }
}

fn refused(error: ErrorBody) -> Answer {
    futures::future::ready(Err(error)).boxed()
}

fn json<T: Serialize>(value: &T) -> Result<Value, ErrorBody> {
    serde_json::to_value(value).map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))
}

pub fn parse_peer(text: &str) -> Result<PeerId, ErrorBody> {
    text.parse()
        .map_err(|e| ErrorBody::new(ErrorCode::BadArgs, format!("invalid peer id {text:?}: {e}")))
}

pub fn parse_addr(text: &str) -> Result<Multiaddr, ErrorBody> {
    text.parse().map_err(|e| {
        ErrorBody::new(
            ErrorCode::BadArgs,
            format!("invalid multiaddr {text:?}: {e}"),
        )
    })
}

fn body<E: Coded>(error: E) -> ErrorBody {
    ErrorBody::new(error.code(), error.to_string())
}

/// The wire code of each of the node's errors: the one place they are
/// chosen. Clients match on these codes (see docs/IPC.md).
pub trait Coded: std::fmt::Display {
    fn code(&self) -> ErrorCode;
}

impl Coded for CallError {
    fn code(&self) -> ErrorCode {
        match self {
            CallError::Stopped | CallError::Dropped => ErrorCode::ShuttingDown,
            CallError::Timeout { .. } => ErrorCode::Timeout,
        }
    }
}

impl Coded for DialError {
    fn code(&self) -> ErrorCode {
        match self {
            DialError::Call(e) => e.code(),
            DialError::NotCircuit { .. } | DialError::SelfThroughRelay => ErrorCode::BadArgs,
            DialError::NoRelayClient { .. }
            | DialError::NotStarted { .. }
            | DialError::Failed { .. } => ErrorCode::DialFailed,
        }
    }
}

impl Coded for PubsubError {
    fn code(&self) -> ErrorCode {
        match self {
            PubsubError::Call(e) => e.code(),
            // Too large is the caller's to fix, as for a direct message:
            // `publish_failed` reads as something to wait for and retry.
            PubsubError::EmptyTopic | PubsubError::BadId { .. } | PubsubError::TooLarge { .. } => {
                ErrorCode::BadArgs
            }
            PubsubError::Subscribe(_) => ErrorCode::Internal,
            PubsubError::NoPeers { .. } | PubsubError::Failed { .. } => ErrorCode::PublishFailed,
        }
    }
}

impl Coded for DirectError {
    fn code(&self) -> ErrorCode {
        match self {
            DirectError::Call(e) => e.code(),
            DirectError::TooLarge { .. } | DirectError::ToSelf => ErrorCode::BadArgs,
            DirectError::WrongAck { .. } => ErrorCode::SendFailed,
            DirectError::Refused { refusal, .. } => match refusal {
                hive_node::behaviour::Refusal::RateLimited => ErrorCode::RateLimited,
                hive_node::behaviour::Refusal::Other => ErrorCode::SendFailed,
            },
            DirectError::NotAcked { delivery, .. } => match delivery {
                Delivery::Unreachable => ErrorCode::NotConnected,
                Delivery::TimedOut => ErrorCode::Timeout,
                Delivery::Failed => ErrorCode::SendFailed,
            },
        }
    }
}

impl Coded for PingError {
    fn code(&self) -> ErrorCode {
        match self {
            PingError::Call(e) => e.code(),
            PingError::Failed { delivery, .. } => match delivery {
                Delivery::Unreachable => ErrorCode::NotConnected,
                Delivery::TimedOut => ErrorCode::Timeout,
                Delivery::Failed => ErrorCode::Internal,
            },
        }
    }
}

impl Coded for KadError {
    fn code(&self) -> ErrorCode {
        match self {
            KadError::Call(e) => e.code(),
            KadError::PeerNotFound(_) | KadError::NoRecord => ErrorCode::NotFound,
            KadError::ProvideRefused(_) | KadError::PutRefused(_) => ErrorCode::Internal,
            KadError::ProvideFailed(_) | KadError::PutFailed(_) => ErrorCode::Timeout,
        }
    }
}

impl Coded for MetricsError {
    fn code(&self) -> ErrorCode {
        match self {
            MetricsError::Call(e) => e.code(),
            MetricsError::Encode(_) => ErrorCode::Internal,
        }
    }
}

impl Coded for hive_node::history::ReadError {
    fn code(&self) -> ErrorCode {
        use hive_node::history::ReadError;
        match self {
            ReadError::Call(e) => e.code(),
            ReadError::Task(_) | ReadError::Db(_) => ErrorCode::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_from_the_wire_are_bad_args() {
        let e = parse_peer("nope").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadArgs);
        assert!(
            e.message.starts_with("invalid peer id \"nope\""),
            "{}",
            e.message
        );
        let e = parse_addr("/ip4/1.2.3.4/tcp/x").unwrap_err();
        assert_eq!(e.code, ErrorCode::BadArgs);
        assert!(e.message.starts_with("invalid multiaddr"), "{}", e.message);
    }

    #[test]
    fn failures_keep_the_codes_clients_match() {
        let peer = PeerId::random();
        let unreachable = DirectError::NotAcked {
            id: "a".into(),
            peer,
            delivery: Delivery::Unreachable,
            reason: "dial failure".into(),
        };
        assert_eq!(unreachable.code(), ErrorCode::NotConnected);
        let ping = PingError::Failed {
            peer,
            delivery: Delivery::Failed,
            reason: "x".into(),
        };
        assert_eq!(ping.code(), ErrorCode::Internal);
        let too_large = PubsubError::TooLarge { size: 2, limit: 1 };
        assert_eq!(too_large.code(), ErrorCode::BadArgs);
        let no_peers = PubsubError::NoPeers { topic: "t".into() };
        assert_eq!(no_peers.code(), ErrorCode::PublishFailed);
        assert_eq!(
            no_peers.to_string(),
            "no peers subscribed to topic \"t\" yet"
        );
        let stopped = KadError::from(CallError::Stopped);
        assert_eq!(stopped.code(), ErrorCode::ShuttingDown);
        assert_eq!(stopped.to_string(), "the node has stopped");
    }
}
