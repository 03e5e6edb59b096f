//! Catching up after being away: `/hive/sync/1.0.0`.
//!
//! Gossipsub is fire and forget: a node that was down, partitioned or
//! restarting when a message went round never gets it. Every Hive node keeps
//! what it received (its history, [`crate::history`]), so a node coming back
//! asks the peers it meets for the messages of its topics it may have
//! missed, and keeps those it did not have. Rules:
//!
//! - Asked per (peer, topic), once per connection: since the topic's newest
//!   message this node kept before it started (it was away), or since the
//!   peer left (a partition), less [`MARGIN_MS`] for clock skew. A topic this
//!   node never had a message in is not caught up: a newcomer is not handed
//!   the backlog.
//! - Only messages signed by their authors are handed over, and each one is
//!   verified ([`verify`]) before it is kept: a peer cannot inject messages
//!   in someone else's name. The history drops the ones kept already (same
//!   author and id), so a message arrives at clients once, whichever way.
//! - Bounded on both sides: pages of at most 1,000 messages / ~4 MiB, at
//!   most [`MAX_PER_SYNC`] per (peer, topic), a few at a time, with
//!   timeouts. Peers that do not speak the protocol (other libp2p
//!   implementations) are skipped.

mod stats;
mod verify;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hive_proto::Bytes;
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::Semaphore;

use crate::history::{Entry, History};
use crate::lock;
use crate::node::NodeHandle;

pub use stats::Stats;
pub use verify::{verify, Signed};

pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/hive/sync/1.0.0");
/// How often the node looks for (peer, topic) pairs to catch up.
const TICK: Duration = Duration::from_secs(2);
/// Slack for the clocks of two nodes (and messages in flight at the time).
pub const MARGIN_MS: i64 = 120_000;
/// Most messages taken from one peer for one topic per connection.
pub const MAX_PER_SYNC: usize = 10_000;
const PAGE: u32 = 1000;
/// Bound on opening a stream and on each request and answer.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Syncs run at once, each way.
const CONCURRENT: usize = 4;
/// Requests answered on one stream (a page each).
const MAX_REQUESTS_PER_STREAM: usize = 200;

/// Serve the protocol and catch up with peers, for as long as the node runs.
pub fn spawn(node: NodeHandle) {
    node.sync_stats().enable();
    match node.stream_control().accept(SYNC_PROTOCOL) {
        Ok(incoming) => {
            let (history, stats) = (node.history_store().clone(), node.sync_stats().clone());
            let limiter = RequestLimiter {
                buckets: Arc::new(std::sync::Mutex::new(crate::limits::PerPeer::new(
                    node.peer_limits().sync_requests,
                ))),
                refusals: node.refusals(),
            };
            tokio::spawn(serve(incoming, history, stats, limiter));
        }
        Err(e) => tracing::warn!(error = %e, "sync protocol not served"),
    }
    tokio::spawn(catch_up(node));
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Per-peer rate limit on the requests (pages) this node answers; shared by
/// all streams, so reopening a stream does not reset it.
#[derive(Clone)]
struct RequestLimiter {
    buckets: Arc<std::sync::Mutex<crate::limits::PerPeer>>,
    refusals: Arc<crate::limits::RefusalCounts>,
}

impl RequestLimiter {
    /// May `peer` have one more page now? Counts a refusal when not.
    fn admit(&self, peer: PeerId) -> bool {
        if lock(&self.buckets).try_take(peer, 1.0, std::time::Instant::now()) {
            return true;
        }
        let n = self
            .refusals
            .sync
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if n.is_power_of_two() {
            tracing::warn!(%peer, refused = n, "sync requests refused: peer over its rate limit");
        }
        false
    }
}

/// Answer other nodes' requests from this node's history: one stream per
/// peer at a time and [`CONCURRENT`] in all, so a peer that floods requests
/// is refused while the others are served; past its rate limit a peer's
/// stream is closed (it asks again on a later connection).
async fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    history: History,
    stats: Stats,
    limiter: RequestLimiter,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let busy: Arc<std::sync::Mutex<HashSet<PeerId>>> = Arc::default();
    while let Some((peer, stream)) = incoming.next().await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "sync request refused: busy");
            stats.refused();
            continue;
        };
        if !lock(&busy).insert(peer) {
            tracing::debug!(%peer, "sync request refused: this peer has one open");
            stats.refused();
            continue;
        }
        let (history, busy, stats) = (history.clone(), busy.clone(), stats.clone());
        let limiter = limiter.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &history, &stats, |_| limiter.admit(peer)).await {
                tracing::debug!(%peer, error = %e, "sync stream ended");
            }
            lock(&busy).remove(&peer);
            drop(slot);
        });
    }
}

async fn answer(
    mut stream: libp2p::Stream,
    history: &History,
    stats: &Stats,
    admit: impl Fn(&wire::Request) -> bool,
) -> Result<(), wire::WireError> {
    for _ in 0..MAX_REQUESTS_PER_STREAM {
        let request = match tokio::time::timeout(
            STEP_TIMEOUT,
            wire::read::<wire::Request>(&mut stream),
        )
        .await
        {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) | Err(_) => return Ok(()),
            Ok(Err(e)) => return Err(e),
        };
        if !admit(&request) {
            return Ok(());
        }
        let limit = request.limit.clamp(1, PAGE) as usize;
        let kept = history
            .signed_since(request.topic, request.since_ms, request.after, limit)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "sync: history not readable");
                Vec::new()
            });
        let more = kept.len() == limit;
        let messages = kept
            .into_iter()
            .filter_map(|k| {
                Some(wire::Message {
                    seq: k.seq,
                    from: k.from,
                    id: k.id,
                    data: Bytes(k.data),
                    seqno: Bytes(k.seqno?),
                    signature: Bytes(k.signature?),
                    key: k.key.map(Bytes),
                })
            })
            .collect();
        let response = wire::Response { messages, more };
        tokio::time::timeout(STEP_TIMEOUT, wire::write(&mut stream, &response))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        stats.served();
    }
    Ok(())
}

/// Which (peer, topic) pairs were caught up on this connection, and when
/// each peer that left did so.
#[derive(Default)]
struct Progress {
    done: HashSet<(PeerId, String)>,
    /// Pairs caught up once in this run: later only since the peer left.
    caught: HashSet<(PeerId, String)>,
    connected: HashSet<PeerId>,
    left_ms: HashMap<PeerId, i64>,
}

impl Progress {
    /// The pairs to catch up now, each with its `since`.
    fn due(
        &mut self,
        peers: HashSet<PeerId>,
        topics: &[String],
        newest_before_start: &HashMap<String, i64>,
    ) -> Vec<(PeerId, String, i64)> {
        let now = now_ms();
        for gone in self.connected.difference(&peers) {
            self.left_ms.insert(*gone, now);
        }
        self.done.retain(|(peer, _)| peers.contains(peer));
        let mut due = Vec::new();
        for peer in &peers {
            for topic in topics {
                if !self.done.insert((*peer, topic.clone())) {
                    continue;
                }
                let pair = (*peer, topic.clone());
                let before = newest_before_start.get(topic).copied();
                let since = match self.left_ms.get(peer) {
                    Some(left) if self.caught.contains(&pair) => Some(*left),
                    Some(left) => Some(before.map_or(*left, |b| b.min(*left))),
                    None => before,
                };
                self.caught.insert(pair);
                if let Some(since) = since {
                    due.push((*peer, topic.clone(), since - MARGIN_MS));
                }
            }
        }
        self.connected = peers;
        due
    }
}

/// Ask connected peers for what this node missed, as peers and topics come.
async fn catch_up(node: NodeHandle) {
    let newest_before_start = node
        .history_store()
        .newest_by_topic()
        .await
        .unwrap_or_default();
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let mut progress = Progress::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some((peers, topics)) = peers_and_topics(&node).await else {
            return; // the node stopped
        };
        let due = progress.due(peers, &topics, &newest_before_start);
        for _ in &due {
            node.sync_stats().planned();
        }
        for (peer, topic, since_ms) in due {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let node = node.clone();
            tokio::spawn(async move {
                let outcome = fetch(&node, peer, &topic, since_ms).await;
                match &outcome {
                    Ok((0, 0)) => {}
                    Ok((kept, rejected)) => tracing::info!(
                        %peer, topic, kept, rejected,
                        "caught up with a peer"
                    ),
                    Err(e) => {
                        tracing::debug!(%peer, topic, error = %e, "no catch-up with this peer")
                    }
                }
                node.sync_stats().ended(peer, outcome.ok(), now_ms());
                drop(slot);
            });
        }
    }
}

async fn peers_and_topics(node: &NodeHandle) -> Option<(HashSet<PeerId>, Vec<String>)> {
    let peers = node.peers().await.ok()?;
    let topics = node.topics().await.ok()?;
    let peers = peers
        .peers
        .iter()
        .filter_map(|p| p.peer_id.parse().ok())
        .collect();
    Some((peers, topics.topics.into_iter().map(|t| t.topic).collect()))
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("cannot open a sync stream: {0}")]
    Open(String),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error("the peer took too long")]
    Timeout,
}

/// Pages of `topic` since `since_ms` from `peer`, each message verified and
/// handed to the history. Returns (handed over, rejected).
async fn fetch(
    node: &NodeHandle,
    peer: PeerId,
    topic: &str,
    since_ms: i64,
) -> Result<(usize, usize), FetchError> {
    let mut control = node.stream_control();
    let mut stream = tokio::time::timeout(STEP_TIMEOUT, control.open_stream(peer, SYNC_PROTOCOL))
        .await
        .map_err(|_| FetchError::Timeout)?
        .map_err(|e| FetchError::Open(e.to_string()))?;
    let (mut kept, mut rejected, mut after) = (0usize, 0usize, 0u64);
    while kept + rejected < MAX_PER_SYNC {
        let request = wire::Request {
            topic: topic.to_string(),
            since_ms,
            after,
            limit: PAGE,
        };
        let step = async {
            wire::write(&mut stream, &request).await?;
            wire::read::<wire::Response>(&mut stream).await
        };
        let Some(response) = tokio::time::timeout(STEP_TIMEOUT, step)
            .await
            .map_err(|_| FetchError::Timeout)??
        else {
            break;
        };
        let progressed = response.messages.last().is_some_and(|m| m.seq > after);
        for message in response.messages {
            after = after.max(message.seq);
            if !keep(node.history_store(), topic, message).await {
                rejected += 1;
                continue;
            }
            kept += 1;
        }
        if !response.more || !progressed {
            break;
        }
    }
    Ok((kept, rejected))
}

/// Verify `message` and hand it to the history; false if it is not signed
/// by its author.
async fn keep(history: &History, topic: &str, message: wire::Message) -> bool {
    let signed = Signed {
        topic,
        from: &message.from,
        id: &message.id,
        data: &message.data.0,
        seqno: &message.seqno.0,
        signature: &message.signature.0,
        key: message.key.as_ref().map(|k| k.0.as_slice()),
    };
    if !verify(&signed) {
        tracing::warn!(from = %message.from, id = %message.id, "sync: a message without its author's valid signature was refused");
        return false;
    }
    let entry = Entry::Message {
        topic: topic.to_string(),
        from: message.from,
        id: message.id,
        data: message.data.0,
        seqno: Some(message.seqno),
        signature: Some(message.signature),
        key: message.key,
    };
    history.keep_fetched(entry).await
}
