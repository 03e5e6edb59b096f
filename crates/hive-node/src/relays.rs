//! Slots on relays: the reservations this node keeps so that peers that
//! cannot dial it directly reach it through a relay.
//!
//! The node tells [`Relays`] what happens (a relay connected or went away,
//! a reservation came back, time passed) and applies what it returns: the
//! relayed addresses to announce or withdraw. Reservations run as tasks over
//! raw HOP streams ([`crate::circuit::reserve`]); their outcomes come back
//! on the channel returned by [`Relays::new`].

use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

use crate::circuit::{self, ReservationInfo};
use crate::config::AutoRelay;

/// Renew this long before a reservation ends.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// Never renew more often than this, whatever the relay grants.
const MIN_RENEW_AFTER: Duration = Duration::from_secs(30);
/// Wait this long before asking a relay again after it refused.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The outcome of one reservation attempt.
pub type ReservationOutcome = (PeerId, io::Result<ReservationInfo>);

enum Slot {
    /// A RESERVE is in flight.
    Reserving,
    /// Granted; `addr` is announced.
    Active { addr: Multiaddr, renew_at: Instant },
    /// Refused or failed; asked again at `retry_at`.
    Failed { retry_at: Instant },
}

/// What the node should do with its announced addresses.
#[derive(Debug, PartialEq, Eq)]
pub enum AddrChange {
    Add(Multiaddr),
    Remove(Multiaddr),
}

pub struct Relays {
    /// Candidate relays and the address each is dialed at.
    candidates: HashMap<PeerId, Multiaddr>,
    only_when_private: bool,
    slots: HashMap<PeerId, Slot>,
    control: libp2p_stream::Control,
    outcomes: mpsc::UnboundedSender<ReservationOutcome>,
}

impl Relays {
    /// `None` config: no candidates, nothing ever reserved. Relay addresses
    /// without a `/p2p` part are skipped with a warning (the daemon's CLI
    /// refuses them before this).
    pub fn new(
        config: Option<&AutoRelay>,
        control: libp2p_stream::Control,
    ) -> (Self, mpsc::UnboundedReceiver<ReservationOutcome>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut candidates = HashMap::new();
        for addr in config.map(|c| c.relays.as_slice()).unwrap_or_default() {
            match addr.iter().last() {
                Some(Protocol::P2p(peer)) => {
                    let mut dial = addr.clone();
                    dial.pop();
                    candidates.insert(peer, dial);
                }
                _ => tracing::warn!(%addr, "relay address without /p2p/PEER skipped"),
            }
        }
        let relays = Relays {
            candidates,
            only_when_private: config.is_some_and(|c| c.only_when_private),
            slots: HashMap::new(),
            control,
            outcomes: tx,
        };
        (relays, rx)
    }

    /// Each candidate's slot, for `status`.
    pub fn slots(&self) -> Vec<hive_proto::RelaySlot> {
        let mut out: Vec<hive_proto::RelaySlot> = self
            .candidates
            .keys()
            .map(|peer| {
                let (state, addr) = match self.slots.get(peer) {
                    Some(Slot::Reserving) => ("reserving", None),
                    Some(Slot::Active { addr, .. }) => ("reserved", Some(addr.to_string())),
                    Some(Slot::Failed { .. }) => ("refused", None),
                    None => ("none", None),
                };
                hive_proto::RelaySlot {
                    peer_id: peer.to_string(),
                    state: state.to_owned(),
                    addr,
                }
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    /// Candidate relays and their addresses, for dialing.
    pub fn candidates(&self) -> impl Iterator<Item = (&PeerId, &Multiaddr)> {
        self.candidates.iter()
    }

    /// Whether slots are wanted, given whether the node is reachable.
    pub fn wanted(&self, reachable: bool) -> bool {
        let unwanted = self.only_when_private && reachable;
        !self.candidates.is_empty() && !unwanted
    }

    /// Candidates with no connection that should be dialed.
    pub fn to_dial<'a>(
        &'a self,
        reachable: bool,
        connected: impl Fn(&PeerId) -> bool + 'a,
    ) -> impl Iterator<Item = (PeerId, Multiaddr)> + 'a {
        let wanted = self.wanted(reachable);
        self.candidates
            .iter()
            .filter(move |(peer, _)| wanted && !connected(peer))
            .map(|(p, a)| (*p, a.clone()))
    }

    fn reserve(&mut self, relay: PeerId) {
        self.slots.insert(relay, Slot::Reserving);
        let mut control = self.control.clone();
        let outcomes = self.outcomes.clone();
        tokio::spawn(async move {
            let outcome = circuit::reserve(&mut control, relay).await;
            let _ = outcomes.send((relay, outcome));
        });
    }

    /// A candidate relay is connected: reserve if wanted and not already.
    pub fn on_connected(&mut self, peer: PeerId, reachable: bool) {
        if self.candidates.contains_key(&peer)
            && self.wanted(reachable)
            && !self.slots.contains_key(&peer)
        {
            tracing::info!(relay = %peer, "asking the relay for a slot");
            self.reserve(peer);
        }
    }

    /// The last connection to `peer` closed: its slot is gone.
    pub fn on_disconnected(&mut self, peer: &PeerId) -> Option<AddrChange> {
        match self.slots.remove(peer) {
            Some(Slot::Active { addr, .. }) => {
                tracing::info!(relay = %peer, "relay gone: slot lost");
                Some(AddrChange::Remove(addr))
            }
            _ => None,
        }
    }

    /// A reservation came back.
    pub fn on_outcome(&mut self, outcome: ReservationOutcome) -> Option<AddrChange> {
        let (relay, result) = outcome;
        let dial_addr = self.candidates.get(&relay)?.clone();
        // No slot: the relay went away (or slots stopped being wanted)
        // while the request was in flight.
        let previous = self.slots.remove(&relay)?;
        let now = Instant::now();
        match result {
            Ok(info) => {
                let renew_at = now + renew_after(info.expire);
                let addr = dial_addr
                    .with(Protocol::P2p(relay))
                    .with(Protocol::P2pCircuit);
                tracing::info!(%relay, %addr, expire = info.expire, "relay slot granted");
                self.slots.insert(
                    relay,
                    Slot::Active {
                        addr: addr.clone(),
                        renew_at,
                    },
                );
                match previous {
                    Slot::Active { addr: old, .. } if old == addr => None,
                    _ => Some(AddrChange::Add(addr)),
                }
            }
            Err(e) => {
                tracing::warn!(%relay, error = %e, "relay slot not granted");
                self.slots.insert(
                    relay,
                    Slot::Failed {
                        retry_at: now + RETRY_AFTER,
                    },
                );
                match previous {
                    Slot::Active { addr, .. } => Some(AddrChange::Remove(addr)),
                    _ => None,
                }
            }
        }
    }

    /// Renew slots that are due, retry refused ones, and give slots up
    /// when they are no longer wanted. Called periodically.
    pub fn tick(
        &mut self,
        reachable: bool,
        connected: impl Fn(&PeerId) -> bool,
    ) -> Vec<AddrChange> {
        let now = Instant::now();
        let mut changes = Vec::new();
        if !self.wanted(reachable) {
            for (relay, slot) in self.slots.drain() {
                if let Slot::Active { addr, .. } = slot {
                    tracing::info!(%relay, "reachable directly: relay slot no longer announced");
                    changes.push(AddrChange::Remove(addr));
                }
            }
            return changes;
        }
        // Connected candidates without a slot (slots became wanted again,
        // or the first attempt was made while they were not).
        let fresh: Vec<PeerId> = self
            .candidates
            .keys()
            .filter(|peer| connected(peer) && !self.slots.contains_key(peer))
            .copied()
            .collect();
        for relay in fresh {
            tracing::info!(%relay, "asking the relay for a slot");
            self.reserve(relay);
        }
        let due: Vec<PeerId> = self
            .slots
            .iter()
            .filter(|(peer, slot)| {
                connected(peer)
                    && match slot {
                        Slot::Active { renew_at, .. } => *renew_at <= now,
                        Slot::Failed { retry_at } => *retry_at <= now,
                        Slot::Reserving => false,
                    }
            })
            .map(|(p, _)| *p)
            .collect();
        for relay in due {
            // An active slot stays announced while it is renewed; a failed
            // renewal withdraws it (see `on_outcome`).
            if let Some(Slot::Active { addr, .. }) = self.slots.get(&relay) {
                let addr = addr.clone();
                self.reserve(relay);
                self.slots.insert(
                    relay,
                    Slot::Active {
                        addr,
                        renew_at: now + RETRY_AFTER,
                    },
                );
                tracing::debug!(%relay, "renewing the relay slot");
                continue;
            }
            self.reserve(relay);
        }
        changes
    }
}

/// How long until a reservation ending at `expire` (Unix seconds) should
/// be renewed.
fn renew_after(expire: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Duration::from_secs(expire.saturating_sub(now))
        .saturating_sub(RENEW_BEFORE)
        .max(MIN_RENEW_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::EXCHANGE_TIMEOUT;

    fn info() -> ReservationInfo {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        ReservationInfo {
            expire: now + 3600,
            addrs: Vec::new(),
        }
    }

    #[tokio::test]
    async fn slots_are_taken_renewed_and_given_up() {
        let relay = PeerId::random();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}")
            .parse()
            .unwrap();
        let bare: Multiaddr = "/ip4/127.0.0.1/tcp/4002".parse().unwrap();
        let config = AutoRelay {
            relays: vec![addr.clone(), bare],
            only_when_private: true,
        };
        let control = libp2p_stream::Behaviour::new().new_control();
        let (mut relays, _outcomes) = Relays::new(Some(&config), control);
        // The address without a peer id is skipped.
        assert_eq!(relays.candidates().count(), 1);
        assert!(relays.wanted(false));
        assert!(
            !relays.wanted(true),
            "a reachable node wants no slot under autorelay"
        );

        // Reachable: connecting asks nothing.
        relays.on_connected(relay, true);
        assert!(relays.slots.is_empty());
        // No longer reachable: the next tick asks.
        assert!(relays.tick(false, |_| true).is_empty());
        assert!(matches!(relays.slots.get(&relay), Some(Slot::Reserving)));

        let circuit: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        assert_eq!(
            relays.on_outcome((relay, Ok(info()))),
            Some(AddrChange::Add(circuit.clone()))
        );
        // A renewal that succeeds changes nothing announced.
        let active = |renew_in: u64| Slot::Active {
            addr: circuit.clone(),
            renew_at: Instant::now() + Duration::from_secs(renew_in),
        };
        relays.slots.insert(relay, active(0));
        assert_eq!(relays.on_outcome((relay, Ok(info()))), None);
        // A renewal that fails withdraws the address.
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "RESERVATION_REFUSED");
        assert_eq!(
            relays.on_outcome((relay, Err(refused))),
            Some(AddrChange::Remove(circuit.clone()))
        );
        // An outcome for a slot given up meanwhile is ignored.
        relays.slots.clear();
        assert_eq!(relays.on_outcome((relay, Ok(info()))), None);

        // Reachable again: an active slot is withdrawn.
        relays.slots.insert(relay, active(600));
        assert_eq!(
            relays.tick(true, |_| true),
            vec![AddrChange::Remove(circuit.clone())]
        );
        // The relay going away loses the slot.
        relays.slots.insert(relay, active(600));
        assert_eq!(
            relays.on_disconnected(&relay),
            Some(AddrChange::Remove(circuit))
        );
    }

    /// The tick itself asks for the renewal once a slot is due (and not
    /// before); the slot stays announced meanwhile, and a renewal that gets
    /// no answer withdraws it. Time is paused, so the exchange's timeout
    /// passes at once when nothing else is left to run.
    #[tokio::test(start_paused = true)]
    async fn the_tick_renews_a_due_slot_and_only_a_due_one() {
        let relay = PeerId::random();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}")
            .parse()
            .unwrap();
        let config = AutoRelay {
            relays: vec![addr],
            only_when_private: false,
        };
        let control = libp2p_stream::Behaviour::new().new_control();
        let (mut relays, mut outcomes) = Relays::new(Some(&config), control);
        let circuit: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        let active = |renew_at: Instant| Slot::Active {
            addr: circuit.clone(),
            renew_at,
        };

        // Not due: the tick sends nothing.
        relays
            .slots
            .insert(relay, active(Instant::now() + Duration::from_secs(600)));
        assert!(relays.tick(false, |_| true).is_empty());
        let quiet = tokio::time::timeout(EXCHANGE_TIMEOUT * 2, outcomes.recv()).await;
        assert!(quiet.is_err(), "a slot that is not due was renewed");

        // Due: the tick sends a RESERVE, keeps the address announced and
        // waits RETRY_AFTER before asking again.
        relays.slots.insert(relay, active(Instant::now()));
        assert!(relays.tick(false, |_| true).is_empty());
        match relays.slots.get(&relay) {
            Some(Slot::Active { addr, renew_at }) => {
                assert_eq!(addr, &circuit);
                assert!(*renew_at > Instant::now() + RETRY_AFTER - Duration::from_secs(5));
            }
            _ => panic!("the slot being renewed is no longer announced"),
        }
        let outcome = tokio::time::timeout(EXCHANGE_TIMEOUT * 2, outcomes.recv())
            .await
            .ok()
            .flatten()
            .expect("the tick sent no RESERVE for a due slot");
        assert_eq!(outcome.0, relay);
        assert!(
            outcome.1.is_err(),
            "no relay answered, yet the renewal succeeded"
        );
        // Its failure withdraws the relayed address.
        assert_eq!(
            relays.on_outcome(outcome),
            Some(AddrChange::Remove(circuit.clone()))
        );
        // A disconnected relay is not asked, however due.
        relays.slots.insert(relay, active(Instant::now()));
        assert!(relays.tick(false, |_| false).is_empty());
        let quiet = tokio::time::timeout(EXCHANGE_TIMEOUT * 2, outcomes.recv()).await;
        assert!(quiet.is_err(), "a relay with no connection was asked");
    }

    #[test]
    fn renewal_comes_before_expiry_but_not_too_often() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let hour = renew_after(now + 3600);
        assert!(
            hour <= Duration::from_secs(3540) && hour >= Duration::from_secs(3530),
            "{hour:?}"
        );
        assert_eq!(renew_after(now + 10), MIN_RENEW_AFTER);
        assert_eq!(renew_after(0), MIN_RENEW_AFTER);
    }
}
