//! The node's side of bounded connections: applies the policy of
//! [`crate::connmgr`] to the swarm on each maintenance tick.

use std::collections::HashSet;
use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use rand::seq::SliceRandom;

use super::Node;
use crate::connmgr::{Candidate, Moment};

/// The relay a circuit address goes through (`…/p2p/RELAY/p2p-circuit…`).
fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut relay = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

/// How long a lookup's peers stay after it ended. While a new node's
/// routing table holds fewer than 20 peers, every peer it adds makes
/// rust-libp2p's Kademlia run one more bootstrap 500 ms later (its
/// automatic bootstrap, which cannot be turned off from outside the crate),
/// and that self-lookup asks the same peers as the first: still connected,
/// it asks them over the connections it has; trimmed at once, it dialed
/// them all again (a newcomer of a 300-node hive made about 36
/// connections in its first seconds, bench/FINDINGS.md, session 12).
const LOOKUP_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a relayed connection stays beside a direct one to the same
/// peer (DCUtR's hole punch, or any later direct dial) before it is closed.
/// New streams already prefer the direct connection; the grace lets what is
/// in flight on the circuit finish. Closing it matters: gossipsub and
/// libp2p-stream spread their traffic over every connection to a peer, so
/// a circuit kept open would go on carrying a share of it through the
/// relay, under the relay's limits, and hold one of the relay's circuits.
const CIRCUIT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl Node {
    /// A failed ping closes a webrtc-direct connection, and only such a one.
    /// rust-libp2p's WebRTC connection never reports that its peer is gone:
    /// a peer killed for good stayed "connected" here for as long as it was
    /// watched (two minutes; its ICE agent had closed after 36 s), and a
    /// peer restarted on the same port answers the old session's ICE checks
    /// (ufrag and password are one value) while its DTLS and SCTP are new,
    /// so the old connection carries nothing, for ever. TCP and QUIC end such
    /// connections by themselves (a reset; QUIC's idle timeout and stateless
    /// reset), and a ping late under load must not close them.
    pub(super) fn on_ping_failed(
        &mut self,
        peer: PeerId,
        connection: libp2p::swarm::ConnectionId,
        error: &libp2p::ping::Failure,
    ) {
        let Some(addr) = self
            .peers
            .get(&peer)
            .and_then(|state| state.connections.get(&connection))
        else {
            return;
        };
        if addr.iter().any(|p| matches!(p, Protocol::WebRTCDirect)) {
            // All of the peer's connections go, not this one alone: while
            // one stays, gossipsub takes a restarted peer's new connection
            // for one more of a peer it knows and never sends it this node's
            // subscriptions again, so the peer would never publish here.
            // Dialed again afresh, both sides start over.
            tracing::info!(%peer, %addr, %error, "webrtc-direct connection failed its ping: disconnecting the peer");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Close relayed connections to peers that have had a direct one for
    /// [`CIRCUIT_GRACE`] (on the maintenance tick).
    pub(super) fn close_superseded_circuits(&mut self) {
        let now = Instant::now();
        let mut superseded = Vec::new();
        for (peer, state) in self.peers.iter_mut() {
            let circuits: Vec<_> = state
                .connections
                .iter()
                .filter(|(_, addr)| crate::circuit::is_circuit(addr))
                .map(|(id, _)| *id)
                .collect();
            if circuits.is_empty() || circuits.len() == state.connections.len() {
                state.circuit_superseded = None;
                continue;
            }
            let since = *state.circuit_superseded.get_or_insert(now);
            if now.saturating_duration_since(since) >= CIRCUIT_GRACE {
                superseded.extend(circuits.into_iter().map(|id| (*peer, id)));
            }
        }
        for (peer, connection) in superseded {
            if self.swarm.close_connection(connection) {
                tracing::info!(%peer, "relayed connection closed: a direct one to the peer exists");
            }
        }
    }

    /// Trim past the high watermark; dial known peers below the low one.
    pub(super) fn manage_connections(&mut self) {
        let Some(manager) = &self.conn_manager else {
            return;
        };
        let connected = self.peers.len();
        if self.lookup_done() {
            self.lookup_over = None;
            self.trim_connections(Moment::LookupOver);
        } else if manager.over(connected) {
            self.trim_connections(Moment::Tick);
        } else {
            let missing = manager.missing(self.counted_peers());
            if missing > 0 {
                self.top_up(missing);
            }
        }
    }

    /// Peers never trimmed: gossipsub mesh peers, relays this node keeps a
    /// slot on or is relayed through, and the peers its relay serves.
    fn protected_peers(&self) -> HashSet<PeerId> {
        let mut protected: HashSet<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_mesh_peers()
            .copied()
            .collect();
        protected.extend(self.relays.candidates().map(|(peer, _)| *peer));
        for state in self.peers.values() {
            protected.extend(state.connections.values().filter_map(relay_of));
        }
        protected
    }

    /// Whether this node's lookups are over, long enough ago that the
    /// peers they alone brought can go (rather than after their grace).
    /// Not while a query runs, which may still be waiting on such a peer.
    fn lookup_done(&self) -> bool {
        self.lookup_over
            .is_some_and(|at| at.elapsed() >= LOOKUP_LINGER)
            && self.swarm.behaviour().kad.iter_queries().next().is_none()
    }

    /// Close surplus connections, when and as far as the policy says at
    /// this `moment` (see [`Moment`] and `TrimTo`). Returns how many peers
    /// were disconnected.
    pub(super) fn trim_connections(&mut self, moment: Moment) -> usize {
        let Some(manager) = &self.conn_manager else {
            return 0;
        };
        if moment != Moment::Asked && !manager.over(self.peers.len()) {
            return 0;
        }
        let protected = self.protected_peers();
        let now = Instant::now();
        let candidates: Vec<Candidate> = self
            .peers
            .iter()
            .map(|(peer, state)| Candidate {
                peer: *peer,
                connected_for: now.saturating_duration_since(state.since),
                protected: protected.contains(peer) || manager.is_relayed(peer),
                by_lookup: state.by_lookup,
            })
            .collect();
        let victims = manager.victims(&candidates, moment);
        let low = manager.limits().low;
        let mut closed = 0;
        for peer in victims {
            if self.swarm.disconnect_peer_id(peer).is_ok() {
                closed += 1;
            }
        }
        if closed > 0 {
            tracing::info!(
                closed,
                connected = self.peers.len(),
                low,
                ?moment,
                "connection manager trimmed peers"
            );
        }
        closed
    }

    /// Dial up to `n` peers of the routing table that are not connected,
    /// chosen at random so that the dials spread over the network.
    fn top_up(&mut self, n: usize) {
        let mut known: Vec<(PeerId, Multiaddr)> = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                if let Some(addr) = entry.node.value.iter().next() {
                    known.push((peer, addr.clone()));
                }
            }
        }
        known.retain(|(peer, _)| {
            !self.peers.contains_key(peer)
                && *peer != self.peer_id
                && !self.keeper.reconnect.is_held(peer)
        });
        known.shuffle(&mut rand::thread_rng());
        for (peer, addr) in known.into_iter().take(n) {
            self.dial_idle(peer, addr, "peer below the low watermark");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_of_a_circuit_address_is_its_last_peer_before_the_circuit() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let addr: Multiaddr =
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{target}")
                .parse()
                .unwrap();
        assert_eq!(relay_of(&addr), Some(relay));
        let direct: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}")
            .parse()
            .unwrap();
        assert_eq!(relay_of(&direct), None);
    }
}
