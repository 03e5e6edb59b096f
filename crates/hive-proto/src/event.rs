//! Events the daemon pushes to every authenticated client.

use serde::{Deserialize, Serialize};

use crate::Bytes;

/// An event, serialized inside a server frame as
/// `{"type": "event", "event": "<kind>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A gossipsub message on a subscribed topic.
    Message {
        topic: String,
        /// Peer id of the original author (messages are signed).
        from: String,
        /// Gossipsub message id, the same on every receiving node.
        id: String,
        data: Bytes,
        /// The author's sequence number (8 bytes, big-endian), as go's
        /// daemon hands it to clients (they deduplicate on it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seqno: Option<Bytes>,
        /// The author's signature, when the message is signed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<Bytes>,
        /// The author's public key, when its peer id does not inline it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<Bytes>,
        /// Position in the daemon's history (see [`crate::Op::History`]):
        /// consecutive per daemon, so a client that sees a number skipped
        /// knows it missed something and fetches it. Absent from daemons
        /// older than this field.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history_seq: Option<u64>,
    },
    /// A direct message from another peer. The daemon acknowledged it to
    /// the sender once it was in its history on disk, so it survives a crash
    /// of the daemon or of the client.
    Direct {
        from: String,
        id: String,
        data: Bytes,
        /// Position in the daemon's history, as for `message`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        history_seq: Option<u64>,
    },
    /// The first connection to a peer was established.
    PeerConnected { peer_id: String, addr: String },
    /// The last connection to a peer closed.
    PeerDisconnected { peer_id: String },
    /// The node is listening on a new address (full multiaddr with `/p2p/`).
    NewListenAddr { addr: String },
    /// The node stopped listening on an address.
    ExpiredListenAddr { addr: String },
    /// A remote peer subscribed to a topic we are subscribed to.
    TopicPeerJoined { topic: String, peer_id: String },
    /// A remote peer unsubscribed from a topic we are subscribed to.
    TopicPeerLeft { topic: String, peer_id: String },
    /// A client asked this daemon to reproduce and a host supervises it: the
    /// host should start `count` children of this node.
    Reproduce { count: u32 },
    /// This client could not keep up and `missed` events were dropped for it.
    /// Messages among them stay in the daemon's history: a client fetches
    /// them with [`crate::Op::History`] from the last `history_seq` it saw.
    Lagged { missed: u64 },
}

impl Event {
    /// The position in the daemon's history of a `message` or `direct`.
    pub fn history_seq(&self) -> Option<u64> {
        match self {
            Event::Message { history_seq, .. } | Event::Direct { history_seq, .. } => *history_seq,
            _ => None,
        }
    }

    /// Drop the daemon's history number (for clients that resume by a
    /// cursor of their own, such as the host's).
    pub fn clear_history_seq(&mut self) {
        if let Event::Message { history_seq, .. } | Event::Direct { history_seq, .. } = self {
            *history_seq = None;
        }
    }
}
