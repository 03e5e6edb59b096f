//! Bounded connections: the connection manager shared by Hive's own mode
//! and the go daemon's `-connManager`.
//!
//! A node keeps its connections between a low and a high watermark. Past
//! the high one it closes the surplus: in go's mode down to the low one,
//! the way go's connection manager does; in Hive's own mode only what is
//! above the high one (see [`TrimTo`]). Either way peers connected for less than the grace period
//! are spared (a connection gets the time to become useful), and so are
//! protected peers (gossipsub mesh peers, relays this node holds a slot on
//! or serves, the relay of a relayed connection); among the rest the
//! lightest-tagged go first, and of equal weight the most recent first, so
//! that long-lived connections stay. Below the low watermark the node dials
//! peers its Kademlia routing table knows, so that trimming on both ends of
//! a connection cannot leave a node alone.
//!
//! Kademlia lookups connect to every peer they touch: in a small network,
//! one lookup reaches nearly every node. Those connections are the surplus:
//! past the high watermark, the ones a lookup of this node opened go as
//! soon as the lookup is over, without waiting out the grace period (which
//! is there for a newcomer to become useful, not for a lookup's question),
//! so a node does not sit far above its high watermark after each lookup.
//!
//! This module holds the policy (which peers go, which to dial); the node's
//! loop applies it (`node::conns`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use libp2p::{relay, PeerId};

/// The watermarks and the grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub low: usize,
    pub high: usize,
    pub grace: Duration,
    pub trim_to: TrimTo,
}

/// Where trimming past the high watermark stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimTo {
    /// go's connection manager: down to the low watermark, so that trims
    /// are rare. With watermarks as close as Hive's (8 and 16) it closes
    /// nine peers for one too many, each of which may fall below the low
    /// watermark and dial a node that is full in turn.
    Low,
    /// Only the surplus over the high watermark: one peer too many closes
    /// one.
    High,
}

impl Limits {
    /// Hive's own mode: near gossipsub's mesh needs (D = 6, D_hi = 12).
    pub const HIVE: Limits = Limits {
        low: 8,
        high: 16,
        grace: Duration::from_secs(10),
        trim_to: TrimTo::High,
    };
    /// go-libp2p-daemon's `-connLo`, `-connHi`, `-connGrace` defaults.
    pub const GO: Limits = Limits {
        low: 256,
        high: 512,
        grace: Duration::from_secs(120),
        trim_to: TrimTo::Low,
    };

    /// A clear refusal of watermarks that cannot work.
    pub fn check(&self) -> Result<(), LimitsError> {
        if self.high == 0 {
            return Err(LimitsError::ZeroHigh);
        }
        if self.low > self.high {
            return Err(LimitsError::LowAboveHigh {
                low: self.low,
                high: self.high,
            });
        }
        Ok(())
    }
}

/// Watermarks that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("the high watermark must be at least 1")]
    ZeroHigh,
    #[error("the low watermark ({low}) is above the high one ({high})")]
    LowAboveHigh { low: usize, high: usize },
}

impl From<&Limits> for hive_proto::ConnectionLimits {
    fn from(l: &Limits) -> Self {
        hive_proto::ConnectionLimits {
            low: l.low,
            high: l.high,
            grace_secs: l.grace.as_secs(),
        }
    }
}

/// Tags with weights per peer (go's CONNMANAGER TAG_PEER / UNTAG_PEER).
/// Shared between the node's loop and whoever tags (the control server).
#[derive(Debug, Clone, Default)]
pub struct Tags(Arc<Mutex<HashMap<PeerId, HashMap<String, i64>>>>);

impl Tags {
    fn lock(&self) -> MutexGuard<'_, HashMap<PeerId, HashMap<String, i64>>> {
        crate::lock(&self.0)
    }

    pub fn tag(&self, peer: PeerId, tag: String, weight: i64) {
        self.lock().entry(peer).or_default().insert(tag, weight);
    }

    pub fn untag(&self, peer: &PeerId, tag: &str) {
        let mut tags = self.lock();
        if let Some(of_peer) = tags.get_mut(peer) {
            of_peer.remove(tag);
            if of_peer.is_empty() {
                tags.remove(peer);
            }
        }
    }

    /// The sum of a peer's tag weights (0 when untagged).
    pub fn weight(&self, peer: &PeerId) -> i64 {
        self.lock()
            .get(peer)
            .map(|t| t.values().copied().sum())
            .unwrap_or(0)
    }
}

/// One connected peer as the trimming sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub peer: PeerId,
    pub connected_for: Duration,
    /// Never closed by trimming (mesh, relay), but counted.
    pub protected: bool,
    /// Reached only by a lookup of this node (see the module's comment).
    pub by_lookup: bool,
}

impl Candidate {
    /// Brought by a lookup that may still be running.
    fn lookup_young(&self, limits: &Limits) -> bool {
        self.by_lookup && self.connected_for < limits.grace
    }
}

/// When the node trims, which decides what counts and whom the grace
/// period spares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// The periodic check: only past the high watermark, and the young
    /// peers of a lookup neither count nor go (they go when it is over;
    /// counted now, they would push out the node's established peers).
    Tick,
    /// go's TRIM: down to the low watermark whatever the count.
    Asked,
    /// A lookup of this node is over: past the high watermark, its young
    /// peers are spared no longer.
    LookupOver,
}

/// Which peers to close to come down to where [`TrimTo`] says (to the low
/// watermark when asked): unprotected ones past their grace period (or a
/// lookup's, once it is over), lightest first, then the most recent first.
/// Nothing unless past the high watermark, or asked to.
pub fn victims(limits: &Limits, tags: &Tags, peers: &[Candidate], moment: Moment) -> Vec<PeerId> {
    let counted: Vec<&Candidate> = peers
        .iter()
        .filter(|c| moment != Moment::Tick || !c.lookup_young(limits))
        .collect();
    if moment != Moment::Asked && counted.len() <= limits.high {
        return Vec::new();
    }
    let floor = match (moment, limits.trim_to) {
        (Moment::Asked, _) | (_, TrimTo::Low) => limits.low,
        (_, TrimTo::High) => limits.high,
    };
    let excess = counted.len().saturating_sub(floor);
    let spared = |c: &Candidate| {
        c.protected
            || (c.connected_for < limits.grace && !(c.by_lookup && moment == Moment::LookupOver))
    };
    let mut candidates: Vec<(i64, Duration, PeerId)> = counted
        .into_iter()
        .filter(|c| !spared(c))
        .map(|c| (tags.weight(&c.peer), c.connected_for, c.peer))
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    candidates
        .into_iter()
        .take(excess)
        .map(|(_, _, p)| p)
        .collect()
}

/// The node's connection manager: limits, tags, and the peers it spares
/// because this node serves them as a relay.
#[derive(Debug)]
pub struct ConnManager {
    limits: Limits,
    tags: Tags,
    /// Peers holding a reservation on this node's relay service, or with a
    /// circuit through it.
    relayed: HashSet<PeerId>,
}

impl ConnManager {
    pub fn new(limits: Limits, tags: Tags) -> Self {
        ConnManager {
            limits,
            tags,
            relayed: HashSet::new(),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Past the high watermark: time to trim.
    pub fn over(&self, connected: usize) -> bool {
        connected > self.limits.high
    }

    /// How many more peers to dial to reach the low watermark.
    pub fn missing(&self, connected: usize) -> usize {
        self.limits.low.saturating_sub(connected)
    }

    pub fn is_relayed(&self, peer: &PeerId) -> bool {
        self.relayed.contains(peer)
    }

    pub fn victims(&self, peers: &[Candidate], moment: Moment) -> Vec<PeerId> {
        victims(&self.limits, &self.tags, peers, moment)
    }

    /// Follow the relay service: reservations and circuits spare their
    /// peers while they last.
    pub fn on_relay_event(&mut self, event: &relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                self.relayed.insert(*src_peer_id);
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                self.relayed.insert(*src_peer_id);
                self.relayed.insert(*dst_peer_id);
            }
            relay::Event::ReservationClosed { src_peer_id }
            | relay::Event::ReservationTimedOut { src_peer_id } => {
                self.relayed.remove(src_peer_id);
            }
            _ => {}
        }
    }

    /// A peer is gone: nothing of it is spared any more.
    pub fn on_disconnected(&mut self, peer: &PeerId) {
        self.relayed.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(peer: PeerId, secs: u64, protected: bool) -> Candidate {
        Candidate {
            peer,
            connected_for: Duration::from_secs(secs),
            protected,
            by_lookup: false,
        }
    }

    /// A peer only a lookup of this node brought.
    fn looked_up(peer: PeerId, secs: u64, protected: bool) -> Candidate {
        Candidate {
            by_lookup: true,
            ..candidate(peer, secs, protected)
        }
    }

    #[test]
    fn trims_the_lightest_unprotected_peers_past_their_grace_down_to_low() {
        let limits = Limits {
            low: 2,
            high: 3,
            grace: Duration::from_secs(10),
            trim_to: TrimTo::Low,
        };
        let tags = Tags::default();
        let [heavy, light, newest, young, mesh] = [(); 5].map(|_| PeerId::random());
        tags.tag(heavy, "keep".into(), 100);
        tags.tag(light, "a".into(), 5);
        tags.tag(light, "b".into(), -1);
        let peers = [
            candidate(heavy, 60, false),
            candidate(light, 60, false),
            candidate(newest, 20, false),
            candidate(young, 1, false),
            candidate(mesh, 90, true),
            candidate(PeerId::random(), 50, false),
        ];
        // Six peers, low 2: four go. The young one (grace) and the mesh
        // peer are spared, so the four of the rest, lightest first:
        // untagged newest first, then the light one (4), then the heavy.
        let out = victims(&limits, &tags, &peers, Moment::Asked);
        assert_eq!(out.len(), 4);
        assert!(!out.contains(&young) && !out.contains(&mesh));
        assert_eq!(out[0], newest);
        assert_eq!(out[2], light);
        assert_eq!(out[3], heavy);
        tags.untag(&heavy, "keep");
        assert_eq!(tags.weight(&heavy), 0);
        assert_eq!(tags.weight(&light), 4);
    }

    #[test]
    fn a_lookups_peers_lose_their_grace_once_it_is_over_and_only_they() {
        let limits = Limits {
            low: 1,
            high: 2,
            grace: Duration::from_secs(10),
            trim_to: TrimTo::Low,
        };
        let tags = Tags::default();
        let [kept, asked, inbound, lookup_peer, mesh] = [(); 5].map(|_| PeerId::random());
        let peers = [
            candidate(kept, 60, false),
            // Young: one this node dialed, one that dialed in.
            candidate(asked, 1, false),
            candidate(inbound, 1, false),
            looked_up(lookup_peer, 1, false),
            looked_up(mesh, 1, true),
        ];
        // On a tick the lookup's young peers do not count: four, past high,
        // and the grace spares every other young peer: only the old one goes.
        assert_eq!(victims(&limits, &tags, &peers, Moment::Tick), vec![kept]);
        // After a lookup its young peer goes too (the newest first), but
        // not a young peer of another kind, nor a protected one.
        let out = victims(&limits, &tags, &peers, Moment::LookupOver);
        assert_eq!(out, vec![lookup_peer, kept]);
        // A lookup under way does not push out established peers: with the
        // lookup's peers left out, two established ones are not past high.
        let busy = [
            candidate(kept, 60, false),
            candidate(asked, 60, false),
            looked_up(PeerId::random(), 1, false),
            looked_up(PeerId::random(), 2, false),
            looked_up(PeerId::random(), 3, false),
        ];
        assert!(victims(&limits, &tags, &busy, Moment::Tick).is_empty());
        // Past their grace they count like any other peer.
        let stale = [
            candidate(kept, 60, false),
            looked_up(PeerId::random(), 30, false),
            looked_up(PeerId::random(), 20, false),
        ];
        assert_eq!(victims(&limits, &tags, &stale, Moment::Tick).len(), 2);
    }

    #[test]
    fn hives_mode_closes_only_the_surplus_and_a_trim_asked_for_goes_to_low() {
        let tags = Tags::default();
        let peers: Vec<Candidate> = (0..18)
            .map(|i| candidate(PeerId::random(), 60 + i, false))
            .collect();
        // Two above 16: two go, the most recent first.
        let out = victims(&Limits::HIVE, &tags, &peers, Moment::Tick);
        assert_eq!(out, vec![peers[0].peer, peers[1].peer]);
        // go's TRIM goes down to the low watermark in either mode.
        assert_eq!(
            victims(&Limits::HIVE, &tags, &peers, Moment::Asked).len(),
            10
        );
        let go = Limits {
            low: 8,
            high: 16,
            grace: Duration::from_secs(10),
            ..Limits::GO
        };
        assert_eq!(victims(&go, &tags, &peers, Moment::Tick).len(), 10);
    }

    #[test]
    fn relay_reservations_are_spared_until_they_end() {
        let mut m = ConnManager::new(Limits::HIVE, Tags::default());
        let peer = PeerId::random();
        m.on_relay_event(&relay::Event::ReservationReqAccepted {
            src_peer_id: peer,
            renewed: false,
        });
        assert!(m.is_relayed(&peer));
        m.on_relay_event(&relay::Event::ReservationTimedOut { src_peer_id: peer });
        assert!(!m.is_relayed(&peer));
        assert!(m.over(17) && !m.over(16));
        assert_eq!(m.missing(3), 5);
        assert!(Limits {
            low: 9,
            ..Limits::HIVE
        }
        .check()
        .is_ok());
        assert_eq!(
            Limits {
                low: 17,
                ..Limits::HIVE
            }
            .check(),
            Err(LimitsError::LowAboveHigh { low: 17, high: 16 })
        );
        assert_eq!(
            Limits {
                high: 0,
                ..Limits::HIVE
            }
            .check(),
            Err(LimitsError::ZeroHigh)
        );
    }
}
