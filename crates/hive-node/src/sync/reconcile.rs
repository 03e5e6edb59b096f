//! Reconciling while connected: gossipsub also drops messages between two
//! nodes that stay connected (a full per-peer send queue under a fast
//! publisher, a node stopped or starved for a few seconds, a mesh not
//! formed yet when a message went out), and the catch-up a node runs when
//! it meets a peer never runs again on that connection. So per (peer,
//! topic) the node keeps a cursor, where its last sync with that peer
//! ended in the peer's history, and every [`INTERVAL`] asks the peer for
//! the *ids* it kept after the cursor, then fetches only the messages it
//! lacks, by id. The steady state costs one page of ids per (peer, topic)
//! and interval; nothing is fetched twice except what gossip is still
//! bringing at that moment (the history drops those as duplicates).
//!
//! A round comes early after this node itself was stopped or starved
//! ([`STALL`]: what it missed then, it cannot have from gossip), soon after
//! a round found something missing (losses come in bursts), and a little
//! after a pair starts (what went out before the mesh formed). Ids a peer
//! received in the last [`SETTLE_MS`] are left to the next round, since
//! gossip is likely still delivering them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::handover::Handover;
use super::{now_ms, wire, FetchError, MAX_PER_SYNC, PAGE, STEP_TIMEOUT, SYNC_PROTOCOL};
use crate::limits::{PerPeer, Rate};
use crate::lock;
use crate::node::NodeHandle;

/// Rounds with a peer, when nothing calls for one sooner.
pub const INTERVAL: Duration = Duration::from_secs(30);
/// A pair whose rounds keep finding nothing while this node's history does
/// not change is asked ever less often: from the third such round in a row
/// the interval doubles, up to `INTERVAL << MAX_QUIET` (2 min). Any entry this
/// node keeps brings every pair back to [`INTERVAL`]. A quiet hive then
/// costs a quarter of the rounds (each opens a stream and wakes both ends),
/// and a message gossip lost on a topic where nothing else arrives is still
/// repaired, within 2 min instead of 30 s.
const MAX_QUIET: u8 = 2;
/// The first round of a new pair: after what went out as it started settled.
const FIRST: Duration = Duration::from_secs(10);
/// The next round after one that found something missing or unsettled.
const SOON: Duration = Duration::from_secs(5);
/// Ids received by the peer this recently are left to the next round.
pub const SETTLE_MS: i64 = 5_000;
/// This node's own tick came this late: it was stopped or starved, and
/// every pair is reconciled at once.
pub const STALL: Duration = Duration::from_secs(6);
/// A new pair starts this long before the topic was first seen subscribed
/// (the tick that sees it comes up to 2 s late); a third of it before the
/// moment of subscribing, when known (for what was in flight).
const START_SLACK_MS: i64 = 3_000;
/// What this node asks of one peer (pages of any kind, catch-up included):
/// half the default limit a peer answers ([`crate::limits::PeerLimits`]),
/// so an honest node never trips it.
pub const ASK_RATE: Rate = Rate {
    per_sec: 10.0,
    burst: 100.0,
};

/// Where the last sync of one (peer, topic) ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Cursor {
    /// Kept since then (Unix ms) ...
    pub since_ms: i64,
    /// ... on this node's clock (the peer shifts it onto its own), or on
    /// the peer's (after a catch-up, which asked with a margin for skew).
    pub on_my_clock: bool,
    /// ... with a number above this in the peer's history.
    pub after: u64,
    next: Instant,
    /// Rounds in a row that found nothing while this node's newest entry
    /// number ([`crate::history::History::newest`]) stayed at `newest`.
    quiet: u8,
    newest: Option<u64>,
}

/// What a round did for one topic.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Outcome {
    pub after: u64,
    pub listed: usize,
    pub kept: usize,
    pub rejected: usize,
    /// Something was missing or left over: come back soon. (Ids too
    /// recent to judge wait for the next round at its usual time: under
    /// steady traffic there always are some.)
    pub again: bool,
}

/// The cursors, and which are due.
#[derive(Default)]
pub(super) struct Plan {
    cursors: HashMap<(PeerId, String), Cursor>,
    /// When each subscribed topic was first seen (Unix ms, this clock).
    first_seen: HashMap<String, i64>,
    running: HashSet<PeerId>,
    last_tick: Option<(Instant, i64)>,
    /// This node's newest entry number at the last tick.
    newest: Option<u64>,
}

impl Plan {
    /// Each tick: forget the pairs of peers gone and of topics left, note
    /// new topics; after a stall, every pair is due; once the history moved
    /// (its `newest` entry number), no pair waits longer than [`INTERVAL`].
    pub fn tick(
        &mut self,
        peers: &HashSet<PeerId>,
        topics: &[String],
        (now, ms): (Instant, i64),
        newest: u64,
    ) {
        if self.newest.is_some_and(|n| n != newest) {
            for cursor in self.cursors.values_mut().filter(|c| c.quiet > 0) {
                cursor.quiet = 0;
                cursor.next = cursor.next.min(now + INTERVAL);
            }
        }
        self.newest = Some(newest);
        self.cursors
            .retain(|(peer, topic), _| peers.contains(peer) && topics.contains(topic));
        self.first_seen.retain(|topic, _| topics.contains(topic));
        for topic in topics {
            self.first_seen.entry(topic.clone()).or_insert(ms);
        }
        if let Some((at, at_ms)) = self.last_tick {
            let late = now
                .saturating_duration_since(at)
                .max(Duration::from_millis((ms - at_ms).max(0) as u64));
            if late >= STALL {
                tracing::info!(
                    secs = late.as_secs(),
                    "this node was stalled; reconciling with every peer"
                );
                self.cursors.values_mut().for_each(|c| c.next = now);
            }
        }
        self.last_tick = Some((now, ms));
    }

    /// A pair with no catch-up to run: from when the node subscribed to
    /// the topic (`subscribed_ms`, else when the topic was first seen).
    pub fn start_new(
        &mut self,
        peer: PeerId,
        topic: String,
        subscribed_ms: Option<i64>,
        now: Instant,
    ) {
        let seen = self.first_seen.get(&topic).copied().unwrap_or_else(now_ms);
        let cursor = Cursor {
            since_ms: subscribed_ms.map_or(seen - START_SLACK_MS, |s| s - START_SLACK_MS / 3),
            on_my_clock: true,
            after: 0,
            next: now + FIRST,
            quiet: 0,
            newest: None,
        };
        self.cursors.entry((peer, topic)).or_insert(cursor);
    }

    /// A pair's catch-up ended (asked since `since_ms` on the peer's clock,
    /// up to number `after`): go on from there.
    pub fn start_after_catch_up(&mut self, pair: (PeerId, String), since_ms: i64, after: u64) {
        let cursor = Cursor {
            since_ms,
            on_my_clock: false,
            after,
            next: Instant::now() + INTERVAL,
            quiet: 0,
            newest: None,
        };
        self.cursors.insert(pair, cursor);
    }

    /// Peers with a round due, each with its due topics; they count as
    /// running until [`Plan::ended`].
    pub fn due(&mut self, now: Instant) -> Vec<(PeerId, Vec<(String, Cursor)>)> {
        let mut due: HashMap<PeerId, Vec<(String, Cursor)>> = HashMap::new();
        for ((peer, topic), cursor) in &self.cursors {
            if cursor.next <= now && !self.running.contains(peer) {
                due.entry(*peer).or_default().push((topic.clone(), *cursor));
            }
        }
        self.running.extend(due.keys().copied());
        due.into_iter().collect()
    }

    /// A round with `peer` ended: per topic its outcome (`None`: failed, the
    /// cursor stays); `unsupported`: the peer does not speak the protocol,
    /// so no more rounds on this connection. `newest`: this node's newest
    /// entry number now.
    pub fn ended(
        &mut self,
        peer: PeerId,
        outcomes: Vec<(String, Option<Outcome>)>,
        unsupported: bool,
        (now, newest): (Instant, u64),
    ) {
        self.running.remove(&peer);
        if unsupported {
            self.cursors.retain(|(p, _), _| *p != peer);
            return;
        }
        for (topic, outcome) in outcomes {
            let Some(cursor) = self.cursors.get_mut(&(peer, topic)) else {
                continue; // the peer or the topic is gone
            };
            let again = outcome.is_some_and(|o| o.again);
            if let Some(o) = outcome {
                cursor.after = cursor.after.max(o.after);
            }
            let idle = outcome.is_some_and(|o| o.listed == 0 && !o.again);
            cursor.quiet = if idle && cursor.newest == Some(newest) {
                (cursor.quiet + 1).min(MAX_QUIET + 1)
            } else {
                0
            };
            cursor.newest = Some(newest);
            let wait = INTERVAL * (1 << cursor.quiet.saturating_sub(1));
            cursor.next = now + if again { SOON } else { wait };
        }
    }
}

/// One stream at a time to each peer (its node answers one per peer), and
/// a pace under its rate limit, for catch-ups and reconciles alike.
#[derive(Clone)]
pub(super) struct Asking {
    gates: Arc<std::sync::Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<()>>>>>,
    pace: Arc<std::sync::Mutex<PerPeer>>,
}

impl Default for Asking {
    fn default() -> Self {
        Asking {
            gates: Arc::default(),
            pace: Arc::new(std::sync::Mutex::new(PerPeer::new(ASK_RATE))),
        }
    }
}

impl Asking {
    /// Wait until no other sync with `peer` runs.
    pub async fn gate(&self, peer: PeerId) -> tokio::sync::OwnedMutexGuard<()> {
        let gate = lock(&self.gates).entry(peer).or_default().clone();
        gate.lock_owned().await
    }

    /// Forget the gates of peers gone.
    pub fn retain(&self, peers: &HashSet<PeerId>) {
        lock(&self.gates).retain(|peer, gate| peers.contains(peer) || Arc::strong_count(gate) > 1);
    }

    /// Wait for a token of `peer`'s pace: one per request.
    pub async fn pace(&self, peer: PeerId) {
        while !lock(&self.pace).try_take(peer, 1.0, Instant::now()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One request and its answer on `stream`, paced; `None`: the peer closed
/// the stream.
pub(super) async fn ask(
    stream: &mut libp2p::Stream,
    asking: &Asking,
    peer: PeerId,
    request: &wire::Request,
    stats: &super::Stats,
) -> Result<Option<wire::Response>, FetchError> {
    asking.pace(peer).await;
    let step = async {
        let sent = wire::write(&mut *stream, request).await?;
        stats.traffic(sent, 0);
        wire::read::<wire::Response>(&mut *stream).await
    };
    let answer = tokio::time::timeout(STEP_TIMEOUT, step)
        .await
        .map_err(|_| FetchError::Timeout)??;
    Ok(answer.map(|(response, size)| {
        stats.traffic(0, size);
        response
    }))
}

/// A round with `peer` over its due topics, on one stream. Returns each
/// topic's outcome and whether the peer does not speak the protocol.
pub(super) async fn round(
    node: &NodeHandle,
    asking: &Asking,
    peer: PeerId,
    topics: Vec<(String, Cursor)>,
) -> (Vec<(String, Option<Outcome>)>, bool) {
    let _gate = asking.gate(peer).await;
    let mut control = node.stream_control();
    let opened = tokio::time::timeout(STEP_TIMEOUT, control.open_stream(peer, SYNC_PROTOCOL)).await;
    let mut stream = match opened {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let unsupported = matches!(e, libp2p_stream::OpenStreamError::UnsupportedProtocol(_));
            tracing::debug!(%peer, error = %e, "no reconcile with this peer");
            return (
                topics.into_iter().map(|(t, _)| (t, None)).collect(),
                unsupported,
            );
        }
        Err(_) => return (topics.into_iter().map(|(t, _)| (t, None)).collect(), false),
    };
    let mut outcomes = Vec::new();
    for (topic, cursor) in topics {
        let outcome = reconcile(node, asking, &mut stream, peer, &topic, cursor).await;
        match &outcome {
            Ok(o) if o.kept + o.rejected > 0 => tracing::info!(
                %peer, topic, listed = o.listed, kept = o.kept, rejected = o.rejected,
                "reconciled with a peer: gossip had missed some"
            ),
            Ok(o) => {
                tracing::debug!(%peer, topic, listed = o.listed, "reconciled: nothing missing")
            }
            Err(e) => tracing::debug!(%peer, topic, error = %e, "reconcile failed"),
        }
        let counted = outcome.as_ref().ok().map(|o| (o.kept, o.rejected));
        node.sync_stats().reconciled(peer, counted, now_ms());
        outcomes.push((topic, outcome.ok()));
    }
    (outcomes, false)
}

/// Ids after `cursor`, page by page; the ones this node lacks fetched.
async fn reconcile(
    node: &NodeHandle,
    asking: &Asking,
    stream: &mut libp2p::Stream,
    peer: PeerId,
    topic: &str,
    cursor: Cursor,
) -> Result<Outcome, FetchError> {
    let mut out = Outcome {
        after: cursor.after,
        ..Outcome::default()
    };
    let me = node.peer_id().to_string();
    while out.listed < MAX_PER_SYNC {
        let request = wire::Request {
            topic: topic.to_string(),
            since_ms: cursor.since_ms,
            after: out.after,
            limit: PAGE,
            ids_only: true,
            only: Vec::new(),
            clock_ms: cursor.on_my_clock.then(now_ms),
        };
        let Some(response) = ask(stream, asking, peer, &request, node.sync_stats()).await? else {
            return Ok(out); // closed: the rest next round
        };
        let before = out.after;
        let mut unsettled = false;
        if !response.messages.is_empty() {
            // A node that does not list ids answered with the messages.
            let mut handed = Handover::new(node.history_store(), topic);
            for message in response.messages {
                out.after = out.after.max(message.seq);
                out.listed += 1;
                if message.from == me {
                    continue;
                }
                handed.offer(message).await;
            }
            tally(&mut out, handed).await;
        } else {
            let now = response.now_ms.unwrap_or(i64::MAX);
            let mut settled = Vec::new();
            for listed in response.ids.into_iter().filter(|l| l.seq > before) {
                if now.saturating_sub(listed.ms) < SETTLE_MS {
                    unsettled = true; // for the next round
                    break;
                }
                out.after = listed.seq;
                if listed.from != me {
                    settled.push((listed.from, listed.id));
                }
                out.listed += 1;
            }
            let missing = node
                .history_store()
                .missing(settled)
                .await
                .map_err(|e| FetchError::History(e.to_string()))?;
            fetch_missing(node, asking, stream, peer, topic, missing, &mut out).await?;
        }
        if unsettled || !response.more || out.after == before {
            return Ok(out);
        }
    }
    out.again = true; // more than one round's worth: the rest soon
    Ok(out)
}

/// Count what a page handed over, once the history has written it.
async fn tally(out: &mut Outcome, mut handed: Handover<'_>) {
    handed.settle().await;
    out.kept += handed.kept;
    out.rejected += handed.rejected;
}

/// Fetch the messages named in `missing` by id and keep those signed by
/// their authors; anything the peer adds that was not asked for is refused.
async fn fetch_missing(
    node: &NodeHandle,
    asking: &Asking,
    stream: &mut libp2p::Stream,
    peer: PeerId,
    topic: &str,
    missing: Vec<(String, String)>,
    out: &mut Outcome,
) -> Result<(), FetchError> {
    if !missing.is_empty() {
        out.again = true;
    }
    for chunk in missing.chunks(PAGE as usize) {
        let mut want: HashSet<wire::Key> = chunk
            .iter()
            .map(|(from, id)| wire::Key {
                from: from.clone(),
                id: id.clone(),
            })
            .collect();
        while !want.is_empty() {
            let request = wire::Request {
                topic: topic.to_string(),
                since_ms: 0,
                after: 0,
                limit: PAGE,
                ids_only: false,
                only: want.iter().cloned().collect(),
                clock_ms: None,
            };
            let Some(response) = ask(stream, asking, peer, &request, node.sync_stats()).await?
            else {
                return Ok(());
            };
            if response.messages.is_empty() {
                break; // it no longer has them
            }
            let mut handed = Handover::new(node.history_store(), topic);
            for message in response.messages {
                let key = wire::Key {
                    from: message.from.clone(),
                    id: message.id.clone(),
                };
                if !want.remove(&key) {
                    out.rejected += 1;
                    continue;
                }
                handed.offer(message).await;
            }
            tally(out, handed).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair_set(peers: &[PeerId]) -> HashSet<PeerId> {
        peers.iter().copied().collect()
    }

    #[test]
    fn a_pair_is_due_after_its_interval_and_soon_after_a_find() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let topics = vec!["t".to_string()];
        let mut plan = Plan::default();
        let t0 = Instant::now();
        plan.tick(&pair_set(&[a, b]), &topics, (t0, 1_000_000), 0);
        plan.start_new(a, "t".into(), None, t0);
        plan.start_after_catch_up((b, "t".into()), 5, 40);
        assert!(plan.due(t0).is_empty(), "nothing at once");
        let due = plan.due(t0 + FIRST);
        assert_eq!(due.len(), 1, "a's first round");
        let cursor = due[0].1[0].1;
        assert_eq!(
            (cursor.since_ms, cursor.on_my_clock, cursor.after),
            (1_000_000 - START_SLACK_MS, true, 0)
        );
        assert!(plan.due(t0 + FIRST).is_empty(), "a is running");
        let found = Outcome {
            after: 7,
            kept: 2,
            again: true,
            ..Outcome::default()
        };
        let t1 = t0 + FIRST;
        plan.ended(a, vec![("t".into(), Some(found))], false, (t1, 0));
        assert!(plan.due(t1 + SOON - Duration::from_millis(1)).is_empty());
        let due = plan.due(t1 + SOON);
        assert_eq!(due[0].1[0].1.after, 7, "from where the last round ended");
        plan.ended(
            a,
            vec![("t".into(), Some(Outcome::default()))],
            false,
            (t1 + SOON, 0),
        );
        let peers_due = |plan: &mut Plan, at| -> Vec<PeerId> {
            plan.due(at).into_iter().map(|(p, _)| p).collect()
        };
        let early = peers_due(&mut plan, t1 + SOON + INTERVAL - Duration::from_millis(1));
        assert_eq!(early, [b], "b after its interval, a not yet");
        assert_eq!(peers_due(&mut plan, t1 + SOON + INTERVAL), [a]);
    }

    #[test]
    fn a_stall_makes_every_pair_due_and_peers_gone_are_forgotten() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let topics = vec!["t".to_string()];
        let mut plan = Plan::default();
        let t0 = Instant::now();
        plan.tick(&pair_set(&[a, b]), &topics, (t0, 0), 0);
        plan.start_new(a, "t".into(), None, t0);
        plan.start_new(b, "t".into(), None, t0);
        let later = t0 + Duration::from_secs(2);
        plan.tick(&pair_set(&[a, b]), &topics, (later, 2_000), 0);
        assert!(plan.due(later).is_empty(), "an ordinary tick");
        // Stopped for 8 s (wall clock: a suspended machine).
        plan.tick(&pair_set(&[a]), &topics, (later, 10_000), 0);
        let due = plan.due(later);
        assert_eq!(due.len(), 1, "b left, a is due at once: {due:?}");
        plan.ended(a, vec![("t".into(), None)], true, (later, 0));
        assert!(
            plan.due(later + INTERVAL * 2).is_empty(),
            "a does not speak the protocol"
        );
    }

    #[test]
    fn a_quiet_pair_is_asked_ever_less_often_until_the_history_moves() {
        let a = PeerId::random();
        let pair = (a, "t".to_string());
        let topics = vec!["t".to_string()];
        let mut plan = Plan::default();
        let t0 = Instant::now();
        let mut now = t0;
        // The sync task ticks every 2 s (a longer gap would be a stall).
        let tick_until = |plan: &mut Plan, now: &mut Instant, until: Instant, newest: u64| {
            while *now < until {
                *now = (*now + Duration::from_secs(2)).min(until);
                let ms = (*now - t0).as_millis() as i64;
                plan.tick(&pair_set(&[a]), &topics, (*now, ms), newest);
            }
        };
        plan.tick(&pair_set(&[a]), &topics, (now, 0), 5);
        plan.start_after_catch_up(pair.clone(), 0, 0);
        let round = |plan: &mut Plan, now: &mut Instant, newest: u64, listed: usize| {
            let due_at = plan.cursors[&pair].next;
            tick_until(plan, now, due_at, newest);
            assert_eq!(plan.due(*now).len(), 1);
            let outcome = Outcome {
                listed,
                ..Outcome::default()
            };
            plan.ended(a, vec![("t".into(), Some(outcome))], false, (*now, newest));
            (plan.cursors[&pair].next - *now).as_secs()
        };
        let waits: Vec<u64> = (0..5).map(|_| round(&mut plan, &mut now, 5, 0)).collect();
        assert_eq!(
            waits,
            [30, 30, 60, 120, 120],
            "nothing found, history still"
        );
        // 10 s later the history moves (a message arrived): due 30 s on.
        let moved = now + Duration::from_secs(10);
        tick_until(&mut plan, &mut now, moved, 5);
        tick_until(&mut plan, &mut now, moved + Duration::from_secs(2), 6);
        assert_eq!(plan.cursors[&pair].next, now + INTERVAL);
        assert_eq!(round(&mut plan, &mut now, 6, 0), 30);
        // A round that lists something keeps the pair at INTERVAL.
        round(&mut plan, &mut now, 6, 0);
        assert_eq!(round(&mut plan, &mut now, 6, 3), 30);
        assert_eq!(round(&mut plan, &mut now, 6, 0), 30);
    }
}
