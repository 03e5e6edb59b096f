//! Operations a client may request, and the typed results they return.
//!
//! On the wire an operation is `"op": "<name>"` plus, for operations that take
//! any, an `"args"` object: `{"type": "request", "id": 7, "op": "publish",
//! "args": {"topic": "chat", "data": "aGk="}}`. Every result is a JSON object,
//! described by the `*Result` types below.

use serde::{Deserialize, Serialize};

use crate::Bytes;

/// An operation. The doc comment of each variant names its result type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args", rename_all = "snake_case")]
pub enum Op {
    /// Identity and state of the node. Result: [`StatusResult`].
    Status,
    /// Addresses the node listens on. Result: [`ListenAddrsResult`].
    ListenAddrs,
    /// Dial a multiaddr (with or without `/p2p/`) and wait until connected.
    /// Result: [`DialResult`].
    Dial { addr: String },
    /// Connected peers. Result: [`PeersResult`].
    Peers,
    /// Close every connection to a peer. Result: [`Empty`].
    Disconnect { peer_id: String },
    /// Subscribe to a gossipsub topic. Result: [`SubscribeResult`].
    Subscribe { topic: String },
    /// Unsubscribe from a topic. Result: [`SubscribeResult`].
    Unsubscribe { topic: String },
    /// Subscribed topics and how many peers share each. Result: [`TopicsResult`].
    Topics,
    /// Remote peers known to be subscribed to a topic. Result: [`TopicPeersResult`].
    TopicPeers { topic: String },
    /// Publish bytes on a topic. Result: [`PublishResult`].
    ///
    /// `id` is optional. Without it the message goes out as plain gossipsub
    /// data and its id is gossipsub's (author + sequence number). With it
    /// (1 to 64 bytes of printable ASCII) the message carries the id in a
    /// small envelope that Hive daemons unwrap: every receiver reports that
    /// id, and a retry with the same id is dropped as a duplicate. The host's
    /// outbox uses this so that a message re-sent after a crash is not
    /// delivered twice.
    Publish {
        topic: String,
        data: Bytes,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Send bytes directly to a peer; answered once the remote daemon has
    /// acknowledged them. `id` is optional: the daemon makes one when absent,
    /// and a caller retrying a message passes the same id again so that the
    /// receiver can drop duplicates. Result: [`SendResult`].
    Send {
        peer_id: String,
        data: Bytes,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Kademlia: find a peer's addresses. Result: [`FindPeerResult`].
    FindPeer { peer_id: String },
    /// Kademlia: announce this node as a provider of `key`. Result: [`Empty`].
    Provide { key: Bytes },
    /// Kademlia: find providers of `key`. Result: [`FindProvidersResult`].
    FindProviders { key: Bytes },
    /// Kademlia: the peers closest to `key` (the raw key; a peer's id bytes
    /// for the peers closest to that peer), found by a network query.
    /// Result: [`ClosestPeersResult`].
    ClosestPeers { key: Bytes },
    /// Kademlia: store a record. Result: [`Empty`].
    PutRecord { key: Bytes, value: Bytes },
    /// Kademlia: fetch a record. Result: [`GetRecordResult`].
    GetRecord { key: Bytes },
    /// Round trip to a peer over libp2p. Result: [`PingResult`].
    Ping { peer_id: String },
    /// Stop the daemon. Answered before the daemon exits. Result: [`Empty`].
    Shutdown,
    /// The node's libp2p metrics (rust-libp2p's metrics crate) as
    /// OpenMetrics text, so that the host can serve them beside its own.
    /// Result: [`MetricsResult`].
    Metrics,
    /// Grow the hive: start `count` (default 1) new nodes, each with its own
    /// identity, bootstrapped from this one. A daemon started by a host
    /// (`--children-via-host`) does not start them itself: it pushes a
    /// `reproduce` event that its host acts on, so that the host supervises
    /// every node. A daemon on its own starts and supervises its children.
    /// Result: [`ReproduceResult`].
    Reproduce {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
    },
    /// Messages and direct messages the daemon kept in its history (on disk
    /// in its data directory), those with a `history_seq` greater than
    /// `after`, oldest first: at most `limit` (default and maximum 1,000)
    /// and about 4 MiB of data per answer. A client resumes from the last
    /// `history_seq` it processed and asks again until it reaches `head`.
    /// Result: [`HistoryResult`].
    History {
        #[serde(default)]
        after: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
}

impl Op {
    /// The wire name of the operation, for logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Status => "status",
            Op::ListenAddrs => "listen_addrs",
            Op::Dial { .. } => "dial",
            Op::Peers => "peers",
            Op::Disconnect { .. } => "disconnect",
            Op::Subscribe { .. } => "subscribe",
            Op::Unsubscribe { .. } => "unsubscribe",
            Op::Topics => "topics",
            Op::TopicPeers { .. } => "topic_peers",
            Op::Publish { .. } => "publish",
            Op::Send { .. } => "send",
            Op::FindPeer { .. } => "find_peer",
            Op::Provide { .. } => "provide",
            Op::FindProviders { .. } => "find_providers",
            Op::ClosestPeers { .. } => "closest_peers",
            Op::PutRecord { .. } => "put_record",
            Op::GetRecord { .. } => "get_record",
            Op::Ping { .. } => "ping",
            Op::Shutdown => "shutdown",
            Op::Metrics => "metrics",
            Op::Reproduce { .. } => "reproduce",
            Op::History { .. } => "history",
        }
    }

    /// Every operation name this protocol version knows.
    pub const NAMES: &'static [&'static str] = &[
        "status",
        "listen_addrs",
        "dial",
        "peers",
        "disconnect",
        "subscribe",
        "unsubscribe",
        "topics",
        "topic_peers",
        "publish",
        "send",
        "find_peer",
        "provide",
        "find_providers",
        "closest_peers",
        "put_record",
        "get_record",
        "ping",
        "shutdown",
        "metrics",
        "reproduce",
        "history",
    ];
}

/// Result of [`Op::Metrics`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsResult {
    /// OpenMetrics text, `libp2p_*` families, ending in `# EOF`.
    pub text: String,
}

/// Result of [`Op::Reproduce`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ReproduceAnswer))]
pub struct ReproduceResult {
    /// True when a host will start the children (the daemon pushed a
    /// `reproduce` event to it); `children` is then empty.
    pub delegated: bool,
    /// Children this daemon started and now supervises itself.
    pub children: Vec<ChildInfo>,
}

/// A node started by a daemon running without a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildInfo {
    pub peer_id: String,
    pub pid: Option<u32>,
    /// Its data directory (identity, and its own children).
    pub data_dir: String,
    pub listen_addrs: Vec<String>,
}

/// An empty result object, `{}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResult {
    pub peer_id: String,
    /// Full multiaddrs ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<String>,
    /// Number of connected peers.
    pub peers: usize,
    /// Subscribed topics.
    pub topics: Vec<String>,
    pub pid: u32,
    pub uptime_secs: f64,
    pub daemon_version: String,
    pub protocol_version: u32,
    /// The connection manager's watermarks; absent when it is off (and
    /// from daemons older than it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionLimits>,
    /// Catching up with peers (`/hive/sync/1.0.0`); absent when the node
    /// does not catch up (go mode) and from daemons older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    /// Whether others can dial this node, and its relay slots; absent from
    /// daemons older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<ReachStatus>,
    /// What the daemon refused from remote peers over their rate limits
    /// since it started (absent from daemons older than the limits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusals>,
    /// How much the node's history holds against its byte budget (absent
    /// from daemons older than the budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryStatus>,
}

/// The node's history (`history.db`) against its byte budget
/// (`--history-max-bytes`): past it the oldest entries are evicted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryStatus {
    /// Bytes the kept entries hold: payloads and what is stored with them
    /// (sender, id, topic, signature, key), not SQLite's own overhead.
    pub bytes: u64,
    /// The budget (0 = none).
    pub max_bytes: u64,
    /// Entries evicted to keep within the budget since the daemon started
    /// (not those pruned by age or count).
    pub evicted: u64,
    /// Bytes those evicted entries held.
    pub evicted_bytes: u64,
}

/// Whether others can dial this node directly, and the slots it holds on
/// relays for when they cannot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReachStatus {
    /// What the node goes by: `public` or `private` when forced
    /// (`--reachability`, `-forceReachability*`), otherwise `auto`.
    pub mode: String,
    /// Whether the node counts itself as directly dialable now.
    pub reachable: bool,
    /// AutoNAT's verdict: `public`, `private` or `unknown`; absent when
    /// AutoNAT is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autonat: Option<String>,
    /// Addresses others confirmed (external, not relayed).
    pub confirmed_addrs: Vec<String>,
    /// One entry per candidate relay.
    pub relays: Vec<RelaySlot>,
}

/// A slot on one relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelaySlot {
    pub peer_id: String,
    /// `reserved`, `reserving`, `refused` (asked again later), `none`
    /// (not asked: not connected, or not wanted while reachable).
    pub state: String,
    /// The relayed address announced while reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

/// How the node catches up on what it missed, since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SyncStatus {
    /// (peer, topic) catch-ups waiting or running now: while above 0 the
    /// node knows it may be behind.
    pub behind: usize,
    /// Messages fetched from peers that passed verification and that the
    /// history did not have yet (each counted once, however many peers
    /// served it; the others are dropped as duplicates).
    pub fetched: u64,
    /// Messages peers offered without their author's valid signature.
    pub rejected: u64,
    /// Catch-ups that failed (the peer did not answer, or broke the protocol).
    pub failed: u64,
    /// Pages of history served to other nodes.
    pub served: u64,
    /// Requests from other nodes refused (too many at once).
    pub refused: u64,
    /// Reconcile rounds done with connected peers (periodically, while
    /// connected: ids first, then the messages this node lacked).
    #[serde(default)]
    pub reconciles: u64,
    /// Messages reconciles found missing here and kept (gossip had dropped
    /// them while connected); also counted in `fetched`.
    #[serde(default)]
    pub reconciled: u64,
    /// Bytes of `/hive/sync/1.0.0` frames this node sent, asking and
    /// answering (what an idle reconcile costs, in `bench/`).
    #[serde(default)]
    pub sent_bytes: u64,
    /// Bytes of `/hive/sync/1.0.0` frames this node received.
    #[serde(default)]
    pub received_bytes: u64,
    /// The peers caught up with most recently, newest first (at most 32).
    pub peers: Vec<PeerSync>,
}

/// The last catch-up with one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerSync {
    pub peer_id: String,
    /// When the last catch-up with this peer ended, Unix milliseconds.
    pub last_ms: i64,
    /// Messages fetched from this peer that passed verification, in all.
    pub fetched: u64,
    /// Messages refused from this peer, in all.
    pub rejected: u64,
}

/// Counts of what remote peers were refused, since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusals {
    /// Direct messages refused (the sender got `rate_limited`).
    pub direct_rate_limited: u64,
    /// History-sync requests refused (the stream was closed).
    pub sync_rate_limited: u64,
}

/// Bounded connections: trimmed past `high` down to `low`, sparing peers
/// connected for less than `grace_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = ConnectionWatermarks))]
pub struct ConnectionLimits {
    pub low: usize,
    pub high: usize,
    pub grace_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenAddrsResult {
    pub listen_addrs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = PeerIdBody))]
pub struct DialResult {
    /// The peer the connection reached.
    pub peer_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Peer))]
pub struct PeerInfo {
    pub peer_id: String,
    /// Addresses the peer announced (identify), or those of its open
    /// connections when it announced none: where it can be dialed.
    pub addrs: Vec<String>,
    /// The remote address of each open connection to the peer (a circuit
    /// through a relay ends in `/p2p-circuit`): how it is reached now.
    /// (Defaulted only for daemons older than it; always sent.)
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub connections: Vec<String>,
    /// Last round trip measured by the libp2p ping protocol, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Seconds since the first of the current connections was established.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_secs: Option<f64>,
    /// The peer's gossipsub score: 0 for an honest peer; below -80 it is
    /// graylisted (everything it sends over gossipsub is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeersResult {
    pub peers: Vec<PeerInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeResult {
    /// False when the call changed nothing (already subscribed, or not
    /// subscribed for an unsubscribe).
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Topic))]
pub struct TopicInfo {
    pub topic: String,
    /// Remote peers known to be subscribed to the topic.
    pub peers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicsResult {
    pub topics: Vec<TopicInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicPeersResult {
    pub peers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = MessageId))]
pub struct PublishResult {
    /// Gossipsub message id, as receivers will see it in their `message` event.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendResult {
    /// The direct message's id, as the receiver sees it in its `direct` event.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindPeerResult {
    pub peer_id: String,
    pub addrs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindProvidersResult {
    pub providers: Vec<FindPeerResult>,
}

/// Closest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosestPeersResult {
    pub peers: Vec<FindPeerResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetRecordResult {
    pub value: Bytes,
    /// Peer id of the record's publisher, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PingResult {
    pub rtt_ms: f64,
}

/// Answer to [`Op::History`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryResult {
    /// Names this history: made once when the daemon's data directory first
    /// gets one. A client that kept a position for another journal (the
    /// data directory was replaced) starts again from 0.
    pub journal: String,
    /// The newest `history_seq`; 0 when the history is empty.
    pub head: u64,
    /// The oldest `history_seq` still kept (older entries were pruned by the
    /// retention policy); `head + 1` when the history is empty.
    pub first: u64,
    /// `message` and `direct` events, each with its `history_seq`.
    pub events: Vec<crate::Event>,
}
