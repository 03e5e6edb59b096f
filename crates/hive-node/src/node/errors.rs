//! Why an operation failed: one error type per concern, so that a caller
//! matches the case it cares about (a publish nobody hears, a peer the DHT
//! does not know) instead of an error message. The wire codes of the IPC
//! are not chosen here: the daemon maps these to `hive_proto::ErrorCode` in
//! one place, at its IPC edge.

use std::time::Duration;

use libp2p::{request_response, Multiaddr, PeerId};

/// Why an operation got no answer from the node.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The node's loop has ended: nothing can be handed to it.
    #[error("the node has stopped")]
    Stopped,
    /// The loop took the operation and ended before answering it.
    #[error("the node stopped before answering")]
    Dropped,
    /// The answer did not come within the bound every operation has.
    #[error("{op} did not complete within {}s", .after.as_secs())]
    Timeout { op: &'static str, after: Duration },
}

/// How a request to a peer (a direct message, a ping) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The peer could not be reached (not connected, dial failed).
    Unreachable,
    /// The peer did not answer in time.
    TimedOut,
    /// Anything else (the stream failed, the protocol is not supported).
    Failed,
}

impl Delivery {
    pub(crate) fn of(error: &request_response::OutboundFailure) -> Delivery {
        match error {
            request_response::OutboundFailure::DialFailure => Delivery::Unreachable,
            request_response::OutboundFailure::Timeout => Delivery::TimedOut,
            _ => Delivery::Failed,
        }
    }
}

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("cannot dial {addr}: this node does not use relays (relay client off)")]
    NoRelayClient { addr: Multiaddr },
    #[error(
        "{addr} is not a circuit address: expected RELAY-ADDR/p2p/RELAY-ID/p2p-circuit/p2p/PEER-ID"
    )]
    NotCircuit { addr: Multiaddr },
    #[error("cannot dial this node itself through a relay")]
    SelfThroughRelay,
    /// The swarm refused to start the dial.
    #[error("cannot dial {addr}: {reason}")]
    NotStarted { addr: Multiaddr, reason: String },
    /// The dial started and failed.
    #[error("dial failed: {reason}")]
    Failed { reason: String },
}

/// Why a subscription or a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PubsubError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the topic must not be empty")]
    EmptyTopic,
    #[error("subscribe failed: {0}")]
    Subscribe(String),
    #[error("message id {id:?} must be 1 to {max} printable ASCII characters")]
    BadId { id: String, max: usize },
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// Nobody is subscribed to the topic yet: the message went nowhere.
    #[error("no peers subscribed to topic {topic:?} yet")]
    NoPeers { topic: String },
    #[error("publish on {topic:?} failed: {reason}")]
    Failed { topic: String, reason: String },
}

/// Why a direct message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("direct message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("cannot send a direct message to this node itself")]
    ToSelf,
    #[error("remote acknowledged id {got} instead of {id}")]
    WrongAck { id: String, got: String },
    #[error("direct message {id} refused by the receiving node: {}", refusal_text(*.refusal))]
    Refused {
        id: String,
        refusal: crate::behaviour::Refusal,
    },
    #[error("direct message {id} to {peer} not acknowledged: {reason}")]
    NotAcked {
        id: String,
        peer: PeerId,
        delivery: Delivery,
        reason: String,
    },
}

/// Why a ping failed.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("ping {peer} failed: {reason}")]
    Failed {
        peer: PeerId,
        delivery: Delivery,
        reason: String,
    },
}

/// Why a Kademlia operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KadError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("peer {0} not found in the DHT")]
    PeerNotFound(PeerId),
    /// The local record store refused (for example it is full).
    #[error("provide failed: {0}")]
    ProvideRefused(String),
    /// The query ran and failed (in practice: timed out).
    #[error("provide: {0}")]
    ProvideFailed(String),
    #[error("put_record failed: {0}")]
    PutRefused(String),
    #[error("put_record: {0}")]
    PutFailed(String),
    #[error("no such record")]
    NoRecord,
}

/// Why the metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("cannot encode metrics: {0}")]
    Encode(String),
}

fn refusal_text(refusal: crate::behaviour::Refusal) -> &'static str {
    match refusal {
        crate::behaviour::Refusal::RateLimited => {
            "this node is over the receiver's rate limit for direct messages; try again later"
        }
        crate::behaviour::Refusal::Other => "for a reason this daemon does not know",
    }
}
