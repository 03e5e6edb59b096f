//! Catching up after being away, and reconciling while connected:
//! `/hive/sync/1.0.0`.
//!
//! Gossipsub is fire and forget: a node that was down, partitioned or
//! restarting when a message went round never gets it, and even two nodes
//! that stay connected lose messages gossip dropped (a full send queue, a
//! node stopped for a few seconds, a mesh not formed yet). Every Hive node
//! keeps what it received (its history, [`crate::history`]), so a node asks
//! the peers it is connected to for the messages of its topics it may have
//! missed, and keeps those it did not have. Rules:
//!
//! - Caught up per (peer, topic), once per connection: since the topic's
//!   newest message this node kept before it started (it was away), or
//!   since the peer left (a partition), less [`MARGIN_MS`] for clock skew.
//!   A topic this node never had a message in is not caught up: a newcomer
//!   is not handed the backlog.
//! - Then reconciled ([`reconcile`]) while the connection lasts: a cursor
//!   per (peer, topic) where the last sync ended in the peer's history
//!   (for a newcomer: from when it subscribed, on its own clock, which the
//!   peer shifts onto its own), and every [`reconcile::INTERVAL`] (sooner
//!   after this node stalled or a round found something) the ids the peer
//!   kept after it, then the missing messages by id.
//! - Only messages signed by their authors are handed over, and each one is
//!   verified ([`verify`]) before it is kept: a peer cannot inject messages
//!   in someone else's name, nor slip in one it was not asked for. The
//!   history drops the ones kept already (same author and id), so a message
//!   arrives at clients once, whichever way. A node's own messages are not
//!   taken back from peers (gossipsub never hands them to its clients
//!   either).
//! - Bounded on both sides: pages of at most 1,000 messages (or ids) /
//!   ~4 MiB, at most [`MAX_PER_SYNC`] per (peer, topic) per catch-up or
//!   reconcile round, a few at a time, with timeouts. One stream at a time
//!   to each peer, and requests paced at [`reconcile::ASK_RATE`], half the
//!   rate a node answers by default, so an honest node is never refused.
//!   Peers that do not speak the protocol (other libp2p implementations)
//!   are skipped.

mod handover;
pub mod reconcile;
mod serve;
mod stats;
mod verify;
mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use libp2p::{PeerId, StreamProtocol};
use tokio::sync::Semaphore;

use crate::lock;
use crate::node::NodeHandle;
use reconcile::{Asking, Plan};
use serve::{serve, RequestLimiter};

pub use stats::Stats;
pub use verify::{sign, verify, Signed};

pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/hive/sync/1.0.0");
/// How often the node looks for (peer, topic) pairs to catch up.
const TICK: Duration = Duration::from_secs(2);
/// Slack for the clocks of two nodes (and messages in flight at the time).
pub const MARGIN_MS: i64 = 120_000;
/// Most messages taken from one peer for one topic per catch-up, and ids
/// listed per reconcile round.
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

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
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
    /// The pairs new on this connection, each with the `since` of its
    /// catch-up (`None`: nothing to catch up, only to reconcile).
    fn due(
        &mut self,
        peers: HashSet<PeerId>,
        topics: &[String],
        newest_before_start: &HashMap<String, i64>,
    ) -> Vec<(PeerId, String, Option<i64>)> {
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
                due.push((*peer, topic.clone(), since.map(|s| s - MARGIN_MS)));
            }
        }
        self.connected = peers;
        due
    }
}

/// Ask connected peers for what this node missed, as peers and topics
/// come, then reconcile with them while they stay.
async fn catch_up(node: NodeHandle) {
    let newest_before_start = node
        .history_store()
        .newest_by_topic()
        .await
        .unwrap_or_default();
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let plan = Arc::new(std::sync::Mutex::new(Plan::default()));
    let asking = Asking::default();
    let mut progress = Progress::default();
    let mut tick = crate::grid_interval(TICK);
    loop {
        tick.tick().await;
        let Ok((peers, topics)) = node.peers_and_topics().await else {
            return; // the node stopped
        };
        let now = std::time::Instant::now();
        lock(&plan).tick(
            &peers,
            &topics,
            (now, now_ms()),
            node.history_store().newest(),
        );
        asking.retain(&peers);
        for (peer, topic, since_ms) in progress.due(peers, &topics, &newest_before_start) {
            let Some(since_ms) = since_ms else {
                let subscribed = node.sync_stats().subscribed_at(&topic);
                lock(&plan).start_new(peer, topic, subscribed, now);
                continue;
            };
            node.sync_stats().planned();
            let (node, slots, plan, asking) =
                (node.clone(), slots.clone(), plan.clone(), asking.clone());
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                let outcome = fetch(&node, &asking, peer, &topic, since_ms).await;
                match &outcome {
                    Ok((0, 0, _)) => {}
                    Ok((kept, rejected, _)) => tracing::info!(
                        %peer, topic, kept, rejected,
                        "caught up with a peer"
                    ),
                    Err(e) => {
                        tracing::debug!(%peer, topic, error = %e, "no catch-up with this peer")
                    }
                }
                // Reconciled from where it ended; from its start if it broke
                // off (not when no stream opened: not a Hive peer).
                match &outcome {
                    Ok((_, _, after)) => {
                        lock(&plan).start_after_catch_up((peer, topic), since_ms, *after)
                    }
                    Err(FetchError::Open(_)) => {}
                    Err(_) => lock(&plan).start_after_catch_up((peer, topic), since_ms, 0),
                }
                let counted = outcome.ok().map(|(kept, rejected, _)| (kept, rejected));
                node.sync_stats().ended(peer, counted, now_ms());
            });
        }
        let due = lock(&plan).due(now);
        for (peer, topics) in due {
            let (node, slots, plan, asking) =
                (node.clone(), slots.clone(), plan.clone(), asking.clone());
            tokio::spawn(async move {
                let Ok(_slot) = slots.acquire_owned().await else {
                    return;
                };
                let (outcomes, unsupported) = reconcile::round(&node, &asking, peer, topics).await;
                let newest = node.history_store().newest();
                lock(&plan).ended(
                    peer,
                    outcomes,
                    unsupported,
                    (std::time::Instant::now(), newest),
                );
            });
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("cannot open a sync stream: {0}")]
    Open(String),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error("the peer took too long")]
    Timeout,
    #[error("history: {0}")]
    History(String),
}

/// Pages of `topic` since `since_ms` from `peer`, each message verified and
/// handed to the history. Returns (handed over, rejected, the last number
/// seen in the peer's history).
async fn fetch(
    node: &NodeHandle,
    asking: &Asking,
    peer: PeerId,
    topic: &str,
    since_ms: i64,
) -> Result<(usize, usize, u64), FetchError> {
    let _gate = asking.gate(peer).await;
    let mut control = node.stream_control();
    let mut stream = tokio::time::timeout(STEP_TIMEOUT, control.open_stream(peer, SYNC_PROTOCOL))
        .await
        .map_err(|_| FetchError::Timeout)?
        .map_err(|e| FetchError::Open(e.to_string()))?;
    let mut after = 0u64;
    let history = node.history_store();
    let mut handed = handover::Handover::new(history, topic);
    let me = node.peer_id().to_string();
    while handed.kept + handed.rejected < MAX_PER_SYNC {
        let request = wire::Request {
            topic: topic.to_string(),
            since_ms,
            after,
            limit: PAGE,
            ids_only: false,
            only: Vec::new(),
            clock_ms: None,
        };
        let Some(response) =
            reconcile::ask(&mut stream, asking, peer, &request, node.sync_stats()).await?
        else {
            break;
        };
        let progressed = response.messages.last().is_some_and(|m| m.seq > after);
        for message in response.messages {
            after = after.max(message.seq);
            if message.from == me {
                continue; // its own: it has them
            }
            handed.offer(message).await;
        }
        handed.settle().await;
        if !response.more || !progressed {
            break;
        }
    }
    Ok((handed.kept, handed.rejected, after))
}
