//! Keeping a node connected by itself: the peers it knew (remembered across
//! restarts, see [`crate::memory`]) and its bootstrap peers are dialed at
//! start, and again while they are disconnected, with a per-peer backoff
//! that resets once the peer stayed connected for [`STABLE`]: a peer that
//! keeps dropping this node soon after each dial (a full node trimming its
//! surplus) is dialed ever less often, not every second.
//!
//! Bootstrap peers are kept connected whatever the connection count (as
//! before: a bootstrap peer that restarts is found again). Other remembered
//! peers are dialed only while the node has fewer connected peers than its
//! target, and only as many as it lacks (the most recently seen first), so
//! a well-connected node does not chase every peer it ever saw, and one
//! that dropped a peer below its target does not dial back all of them at
//! once: in a network of 40 nodes that remembered each other, that put a
//! node at 38 connections each time it dipped below 8.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hive_proto::backoff::Backoff;
use libp2p::{Multiaddr, PeerId};
use tokio::time::Instant;

use crate::listen::Bound;
use crate::memory::{
    has_port_zero, now_secs, pin_port, KnownPeer, NodeState, Saved, Writer, MAX_ADDRS, MAX_PEERS,
};

/// Waits between two dials of one disconnected peer: 1 s after the first,
/// doubling on each attempt, at most 16 s.
const REDIAL: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(16));
/// How long a peer disconnected on request is not dialed again by the node
/// itself (an explicit dial ends it sooner).
pub const HOLD_AFTER_DISCONNECT: Duration = Duration::from_secs(300);
/// A connection that lasted this long was a success: the peer's backoff
/// starts again from its shortest wait. Longer than Hive's grace period
/// (10 s), so a peer trimmed as soon as its grace ends counts as a failure.
const STABLE: Duration = Duration::from_secs(60);

/// The shortest and the longest wait between two hand-overs of the peers
/// to the writer. Each hand-over builds the whole list (every peer id in
/// base58, every address as text), and the writer then syncs a file: while
/// a hive of hundreds of nodes grows, every node sees connections come and
/// go many times a second, and that was a tenth of the machine's CPU.
const SEND_GAP: Duration = Duration::from_millis(100);
const SEND_GAP_MAX: Duration = Duration::from_secs(1);

/// The node's memory at run time: who to dial ([`Reconnect`]) and the state
/// file it is saved to.
#[derive(Debug)]
pub struct Keeper {
    pub reconnect: Reconnect,
    state: NodeState,
    writer: Option<Writer>,
    pace: SendPace,
}

/// When the peers may next be handed to the writer. The first change after
/// a quiet spell goes at once (a node killed a moment after meeting a peer
/// still finds it after a restart); changes that keep coming wait twice as
/// long each time, up to [`SEND_GAP_MAX`].
#[derive(Debug, Default)]
struct SendPace {
    last: Option<Instant>,
    gap: Duration,
}

impl SendPace {
    fn next(&self) -> Option<Instant> {
        self.last.map(|last| last + self.gap)
    }

    fn sent(&mut self, now: Instant) {
        let burst = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.gap * 2);
        self.gap = if burst {
            (self.gap * 2).min(SEND_GAP_MAX)
        } else {
            SEND_GAP
        };
        self.last = Some(now);
    }
}

/// The state read at start, before the listen addresses are bound.
#[derive(Debug)]
pub struct Loaded {
    state: NodeState,
    path: Option<PathBuf>,
}

impl Loaded {
    /// Read the state file of `config`, if it has one; a damaged file is
    /// logged and replaced, never fatal.
    pub fn read(path: Option<&Path>, me: PeerId) -> Self {
        let state = match path {
            Some(path) => NodeState::load(path, me).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "starting without remembered ports and peers");
                NodeState::empty(me)
            }),
            None => NodeState::empty(me),
        };
        if path.is_some() {
            tracing::info!(
                ports = state.listen.len(),
                peers = state.peers.len(),
                "remembered ports and peers loaded"
            );
        }
        Loaded {
            state,
            path: path.map(Path::to_owned),
        }
    }

    pub fn listen_plan(&self, configured: &[Multiaddr]) -> Vec<(Multiaddr, Option<Multiaddr>)> {
        self.state.listen_plan(configured)
    }

    /// Record the ports bound now and start saving.
    pub fn start(mut self, me: PeerId, bound: &[Bound], target: usize) -> Keeper {
        self.state.listen = bound
            .iter()
            .filter(|b| has_port_zero(&b.configured))
            .filter_map(|b| {
                let pinned = pin_port(&b.configured, b.addrs.first()?)?;
                Some((b.configured.to_string(), pinned.to_string()))
            })
            .collect();
        let reconnect = Reconnect::new(me, &self.state.peers, target);
        let writer = self
            .path
            .map(|path| Writer::spawn(path, self.state.clone()));
        Keeper {
            reconnect,
            state: self.state,
            writer,
            pace: SendPace::default(),
        }
    }
}

impl Keeper {
    /// Hand changed peers to the writer (which saves them off the loop),
    /// unless the last hand-over was too recent: then they stay changed,
    /// and [`Keeper::deferred`] says when to flush again.
    pub fn flush(&mut self) {
        let now = Instant::now();
        if self.pace.next().is_some_and(|next| now < next) {
            return;
        }
        self.send(now);
    }

    /// When a change held back by [`Keeper::flush`] is due.
    pub fn deferred(&self) -> Option<Instant> {
        self.reconnect.dirty.then(|| self.pace.next()).flatten()
    }

    fn send(&mut self, now: Instant) {
        if let Some(peers) = self.reconnect.take_dirty() {
            self.state.peers = peers;
            if let Some(writer) = &mut self.writer {
                writer.send(self.state.clone());
            }
            self.pace.sent(now);
        }
    }

    /// Flush at once, and the moment it is on disk (`None` without a state
    /// file). A daemon that stops politely waits for it, so that the peers
    /// it met just before are found again after a restart.
    pub fn save(&mut self) -> Option<Saved> {
        self.send(Instant::now());
        self.writer.as_ref().map(Writer::saved)
    }
}

#[derive(Debug)]
struct Entry {
    addrs: Vec<Multiaddr>,
    last_seen: u64,
    bootstrap: bool,
    connected: bool,
    /// When the current connection began.
    connected_at: Instant,
    next_dial: Instant,
    /// Dials since it was last connected for at least [`STABLE`].
    dials: u32,
    /// Disconnected on request: not dialed by the node itself before this.
    held_until: Option<Instant>,
}

/// Who to dial, and when.
#[derive(Debug)]
pub struct Reconnect {
    me: PeerId,
    peers: HashMap<PeerId, Entry>,
    target: usize,
    /// Something worth saving changed since the last [`Self::take_dirty`].
    dirty: bool,
}

impl Reconnect {
    /// From the remembered peers; every one is due at once.
    pub fn new(me: PeerId, remembered: &[KnownPeer], target: usize) -> Self {
        let now = Instant::now();
        let mut peers = HashMap::new();
        for known in remembered {
            let Ok(peer) = known.peer_id.parse::<PeerId>() else {
                continue;
            };
            let addrs: Vec<Multiaddr> = known.addrs.iter().filter_map(|a| a.parse().ok()).collect();
            if peer == me || addrs.is_empty() {
                continue;
            }
            peers.insert(peer, Entry::new(addrs, known.last_seen, false, now));
        }
        Reconnect {
            me,
            peers,
            target,
            dirty: false,
        }
    }

    pub fn remembered(&self) -> usize {
        self.peers.len()
    }

    /// A bootstrap peer with a known id: kept connected.
    pub fn add_bootstrap(&mut self, peer: PeerId, addr: Multiaddr) {
        let entry = self
            .peers
            .entry(peer)
            .or_insert_with(|| Entry::new(Vec::new(), 0, true, Instant::now()));
        entry.bootstrap = true;
        entry.put_first(addr);
    }

    /// Addresses learned for a peer (identify), kept after the known ones.
    pub fn learn_addrs(&mut self, peer: PeerId, addrs: &[Multiaddr]) {
        if let Some(entry) = self.peers.get_mut(&peer) {
            for addr in addrs {
                if !entry.addrs.contains(addr) && entry.addrs.len() < MAX_ADDRS {
                    entry.addrs.push(addr.clone());
                    self.dirty = true;
                }
            }
        }
    }

    /// A peer connected; `dialed` is the address when this node dialed it.
    pub fn on_connected(&mut self, peer: PeerId, dialed: Option<Multiaddr>, listen: &[Multiaddr]) {
        if peer == self.me {
            return;
        }
        let entry = self
            .peers
            .entry(peer)
            .or_insert_with(|| Entry::new(Vec::new(), 0, false, Instant::now()));
        if !entry.connected {
            entry.connected = true;
            entry.connected_at = Instant::now();
        }
        entry.last_seen = now_secs();
        if let Some(addr) = dialed {
            entry.put_first(addr);
        }
        self.dirty = true;
        self.learn_addrs(peer, listen);
        self.bound();
    }

    pub fn on_disconnected(&mut self, peer: PeerId) {
        if let Some(entry) = self.peers.get_mut(&peer) {
            let now = Instant::now();
            if entry.connected && now.duration_since(entry.connected_at) >= STABLE {
                entry.dials = 0;
            }
            entry.connected = false;
            entry.last_seen = now_secs();
            entry.next_dial = now + REDIAL.delay(entry.dials);
            self.dirty = true;
        }
    }

    /// A client asked to disconnect `peer`: the node does not dial it back
    /// by itself (bootstrap, remembered, low watermark) for
    /// [`HOLD_AFTER_DISCONNECT`]. Otherwise a disconnect from a bootstrap
    /// peer would be undone within seconds.
    pub fn hold(&mut self, peer: PeerId) {
        let until = Instant::now() + HOLD_AFTER_DISCONNECT;
        self.peers
            .entry(peer)
            .or_insert_with(|| Entry::new(Vec::new(), 0, false, Instant::now()))
            .held_until = Some(until);
    }

    /// A client dialed `peer` itself: the hold ends.
    pub fn release(&mut self, peer: &PeerId) {
        if let Some(entry) = self.peers.get_mut(peer) {
            entry.held_until = None;
        }
    }

    /// Whether the node must not dial `peer` by itself now.
    pub fn is_held(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .and_then(|e| e.held_until)
            .is_some_and(|until| until > Instant::now())
    }

    /// Peers to dial now, each with its addresses: the bootstrap peers, and
    /// as many others as `connected` (peers, and dials under way) lacks of
    /// the target, the most recently seen first. Their next attempt is
    /// pushed back by their backoff; the others wait for a later call.
    pub fn due(&mut self, connected: usize) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let now = Instant::now();
        let mut room = self.target.saturating_sub(connected);
        let mut ready: Vec<(&PeerId, &mut Entry)> = self
            .peers
            .iter_mut()
            .filter(|(_, e)| !e.connected && !e.addrs.is_empty() && e.next_dial <= now)
            .filter(|(_, e)| e.held_until.is_none_or(|until| until <= now))
            .collect();
        ready.sort_by_key(|(_, e)| (!e.bootstrap, std::cmp::Reverse(e.last_seen)));
        let mut out = Vec::new();
        for (peer, entry) in ready {
            if !entry.bootstrap {
                if room == 0 {
                    break;
                }
                room -= 1;
            }
            entry.next_dial = now + REDIAL.delay(entry.dials);
            entry.dials = entry.dials.saturating_add(1);
            out.push((*peer, entry.addrs.clone()));
        }
        out
    }

    /// The peers part of the state file, if it changed.
    pub fn take_dirty(&mut self) -> Option<Vec<KnownPeer>> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        let peers = self
            .peers
            .iter()
            .filter(|(_, e)| e.last_seen > 0 && !e.addrs.is_empty())
            .map(|(peer, e)| KnownPeer {
                peer_id: peer.to_string(),
                addrs: e.addrs.iter().map(ToString::to_string).collect(),
                last_seen: e.last_seen,
            })
            .collect();
        let state = NodeState {
            peers,
            ..NodeState::default()
        };
        Some(state.pruned(now_secs()).peers)
    }

    /// At most [`MAX_PEERS`] non-bootstrap peers: the least recently seen
    /// disconnected ones go first.
    fn bound(&mut self) {
        while self.peers.len() > MAX_PEERS + 16 {
            let oldest = self
                .peers
                .iter()
                .filter(|(_, e)| !e.bootstrap && !e.connected)
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(p, _)| *p);
            match oldest {
                Some(p) => {
                    self.peers.remove(&p);
                }
                None => break,
            }
        }
    }
}

impl Entry {
    fn new(addrs: Vec<Multiaddr>, last_seen: u64, bootstrap: bool, now: Instant) -> Self {
        Entry {
            addrs,
            last_seen,
            bootstrap,
            connected: false,
            connected_at: now,
            next_dial: now,
            dials: 0,
            held_until: None,
        }
    }

    fn put_first(&mut self, addr: Multiaddr) {
        self.addrs.retain(|a| a != &addr);
        self.addrs.insert(0, addr);
        self.addrs.truncate(MAX_ADDRS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    }

    /// Connections that keep coming are saved ever less often (at most
    /// once a second), a change held back is due at a set time and is not
    /// lost, and after a quiet spell the next change goes at once.
    #[tokio::test(start_paused = true)]
    async fn peers_met_in_a_burst_are_handed_over_ever_less_often_and_none_is_lost() {
        let me = peer();
        let mut keeper = Loaded::read(None, me).start(me, &[], 8);
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().expect("addr");
        let meet = |keeper: &mut Keeper| {
            keeper
                .reconnect
                .on_connected(peer(), Some(addr.clone()), &[]);
            keeper.flush();
        };
        meet(&mut keeper);
        assert_eq!(keeper.deferred(), None, "the first change goes at once");
        let mut gaps = Vec::new();
        for _ in 0..6 {
            meet(&mut keeper);
            let due = keeper.deferred().expect("held back");
            gaps.push(due - Instant::now());
            tokio::time::sleep_until(due).await;
            keeper.flush();
            assert_eq!(keeper.deferred(), None, "sent once due");
        }
        let ms: Vec<u128> = gaps.iter().map(|g| g.as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            keeper.state.peers.len(),
            7,
            "every peer met was handed over"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        meet(&mut keeper);
        assert_eq!(keeper.deferred(), None, "after a quiet spell: at once");
        meet(&mut keeper);
        let due = keeper.deferred().expect("held back");
        assert_eq!(
            (due - Instant::now()).as_millis(),
            100,
            "the gap starts again"
        );
        let before = keeper.state.peers.len();
        let _ = keeper.save();
        assert_eq!(
            keeper.state.peers.len(),
            before + 1,
            "a polite stop saves at once"
        );
        assert_eq!(keeper.deferred(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_resets_and_respects_the_target() {
        let me = peer();
        let a = peer();
        let boot = peer();
        let known = vec![KnownPeer {
            peer_id: a.to_string(),
            addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            last_seen: 5,
        }];
        let mut r = Reconnect::new(me, &known, 2);
        r.add_bootstrap(boot, "/ip4/127.0.0.1/tcp/2".parse().unwrap());
        assert_eq!(r.due(0).len(), 2, "everyone is dialed at start");
        assert!(r.due(0).is_empty(), "not again before the backoff");
        tokio::time::advance(REDIAL.delay(0)).await;
        assert_eq!(r.due(0).len(), 2);
        tokio::time::advance(REDIAL.delay(0)).await;
        assert!(r.due(0).is_empty(), "the delay doubled");
        tokio::time::advance(REDIAL.delay(0)).await;
        // At the target only the bootstrap peer is chased.
        let due = r.due(2);
        assert_eq!(due.iter().map(|d| d.0).collect::<Vec<_>>(), vec![boot]);
        r.on_connected(a, None, &[]);
        tokio::time::advance(STABLE).await;
        r.on_disconnected(a);
        tokio::time::advance(REDIAL.delay(0)).await;
        assert_eq!(
            r.due(0).iter().filter(|d| d.0 == a).count(),
            1,
            "a connection that lasted resets the backoff"
        );
        let saved = r.take_dirty().expect("changes to save");
        assert!(saved.iter().any(|p| p.peer_id == a.to_string()));
        assert!(r.take_dirty().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_drops_us_soon_after_each_dial_is_dialed_ever_less_often() {
        let (me, a) = (peer(), peer());
        let known = vec![KnownPeer {
            peer_id: a.to_string(),
            addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            last_seen: 5,
        }];
        let mut r = Reconnect::new(me, &known, 8);
        let mut waits = Vec::new();
        let mut waited = Duration::ZERO;
        for _ in 0..7 {
            // Wait until it is due, counting in 100 ms steps.
            while r.due(0).is_empty() {
                tokio::time::advance(Duration::from_millis(100)).await;
                waited += Duration::from_millis(100);
            }
            waits.push(waited.as_secs());
            waited = Duration::ZERO;
            // Connected, then trimmed as its grace ends.
            r.on_connected(a, None, &[]);
            tokio::time::advance(Duration::from_secs(10)).await;
            r.on_disconnected(a);
        }
        assert_eq!(waits, [0, 2, 4, 8, 16, 16, 16], "waits after each trim");
    }

    #[tokio::test(start_paused = true)]
    async fn below_the_target_only_the_missing_peers_are_dialed_the_freshest_first() {
        let me = peer();
        let boot = peer();
        let known: Vec<KnownPeer> = (0..30)
            .map(|i| KnownPeer {
                peer_id: peer().to_string(),
                addrs: vec![format!("/ip4/127.0.0.1/tcp/{}", 1000 + i)],
                last_seen: 100 + i,
            })
            .collect();
        let mut r = Reconnect::new(me, &known, 8);
        r.add_bootstrap(boot, "/ip4/127.0.0.1/tcp/2".parse().unwrap());
        // Seven counted (connected or being dialed): one more, and the
        // bootstrap peer, which is kept whatever the count.
        let due: Vec<PeerId> = r.due(7).into_iter().map(|d| d.0).collect();
        let freshest: PeerId = known[29].peer_id.parse().unwrap();
        assert_eq!(due, vec![boot, freshest]);
        // The others were not pushed back: the next call takes the next
        // freshest at once, and at the target nothing but bootstrap peers.
        let next: Vec<PeerId> = r.due(6).into_iter().map(|d| d.0).collect();
        let expected: Vec<PeerId> = [28, 27].map(|i| known[i].peer_id.parse().unwrap()).into();
        assert_eq!(next, expected);
        assert!(r.due(8).is_empty());
        assert_eq!(r.due(0).len(), 8, "never more than the target at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_disconnected_on_request_is_not_dialed_back_until_dialed() {
        let (me, boot) = (peer(), peer());
        let mut r = Reconnect::new(me, &[], 2);
        r.add_bootstrap(boot, "/ip4/127.0.0.1/tcp/2".parse().unwrap());
        r.on_connected(boot, None, &[]);
        r.hold(boot);
        r.on_disconnected(boot);
        tokio::time::advance(REDIAL.delay(u32::MAX)).await;
        assert!(
            r.due(0).is_empty(),
            "a bootstrap peer on hold is not chased"
        );
        assert!(r.is_held(&boot));
        tokio::time::advance(HOLD_AFTER_DISCONNECT).await;
        assert_eq!(r.due(0).len(), 1, "after the hold it is chased again");
        r.hold(boot);
        r.release(&boot);
        assert!(!r.is_held(&boot), "an explicit dial ends the hold");
    }
}
