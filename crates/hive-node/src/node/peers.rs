//! Peers and dialing: the dials the node starts itself (bootstrap,
//! remembered and discovered peers) and the ones asked for, what the node
//! says about its peers and itself.

use hive_proto::{DialResult, PeerInfo, PeersResult, StatusResult};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};

use super::{peer_of, with_p2p, without_p2p, DialError, Node, PeerState, Reply};

impl Node {
    pub(super) fn dial_bootstrap(&mut self, addr: &Multiaddr) {
        let opts = match peer_of(addr) {
            Some(peer) => {
                self.bootstrap_peers.insert(peer, without_p2p(addr));
                self.keeper.reconnect.add_bootstrap(peer, without_p2p(addr));
                self.add_route(&peer, without_p2p(addr));
                DialOpts::peer_id(peer)
                    .addresses(vec![without_p2p(addr)])
                    .build()
            }
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        if let Err(e) = self.own_dial(opts) {
            tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
        }
    }

    /// Dial the remembered and bootstrap peers that are due (`reconnect`),
    /// and hand changes of the memory to its writer. With a connection
    /// manager, only while below its low watermark: a trimmed node does not
    /// come straight back.
    pub(super) fn redial_known_peers(&mut self) {
        let counted = self.counted_peers();
        let wanted = self
            .conn_manager
            .as_ref()
            .is_none_or(|manager| manager.missing(counted) > 0);
        if wanted {
            for (peer, addrs) in self.keeper.reconnect.due(counted) {
                self.dial_idle_at(peer, addrs, "known peer");
            }
        }
        self.keeper.flush();
    }

    /// Connected peers and this node's dials under way: what dials to fill
    /// a gap count against, so that a slow dial is not doubled by the next
    /// tick's.
    pub(super) fn counted_peers(&self) -> usize {
        self.peers.len() + self.own_dials.len()
    }

    /// Start a dial of this node's own, noted as such: the connection it
    /// makes is not a lookup's (`PeerState::by_lookup`).
    fn own_dial(&mut self, opts: DialOpts) -> Result<(), libp2p::swarm::DialError> {
        let connection_id = opts.connection_id();
        self.swarm.dial(opts)?;
        self.own_dials.insert(connection_id);
        Ok(())
    }

    /// Dial `peer` at `addr` unless it is connected or being dialed already.
    pub(super) fn dial_idle(&mut self, peer: PeerId, addr: Multiaddr, what: &'static str) {
        self.dial_idle_at(peer, vec![addr], what);
    }

    pub(super) fn dial_idle_at(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, what: &'static str) {
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.own_dial(opts) {
            tracing::trace!(%peer, error = %e, what, "dial not started");
        }
    }

    /// Listen addresses, then external ones (announced, confirmed by
    /// AutoNAT or UPnP, and relayed): what others can dial.
    pub(super) fn own_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self
            .listen_addrs
            .iter()
            .map(|a| with_p2p(a, self.peer_id))
            .collect();
        for addr in self.swarm.external_addresses() {
            let addr = with_p2p(addr, self.peer_id);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }

    pub(super) fn peer_info(&self, peer: &PeerId, state: Option<&PeerState>) -> PeerInfo {
        let announced = self.peer_listen_addrs.get(peer);
        let addrs: Vec<String> = match announced {
            Some(addrs) if !addrs.is_empty() => addrs.iter().map(|a| with_p2p(a, *peer)).collect(),
            _ => state
                .map(|s| s.connections.values().map(|a| with_p2p(a, *peer)).collect())
                .unwrap_or_default(),
        };
        PeerInfo {
            peer_id: peer.to_string(),
            addrs,
            connections: state
                .map(|s| s.connections.values().map(|a| a.to_string()).collect())
                .unwrap_or_default(),
            rtt_ms: state.and_then(|s| s.rtt).map(|d| d.as_secs_f64() * 1000.0),
            connected_secs: state.map(|s| s.since.elapsed().as_secs_f64()),
            gossip_score: self.swarm.behaviour().gossipsub.peer_score(peer),
        }
    }

    /// The loop's own part of `status`; the cache fills in the rest (the
    /// counters kept outside the loop) and keeps it for the next asker.
    pub(super) fn status(&self) -> StatusResult {
        self.status_cache.answer(StatusResult {
            peer_id: self.peer_id.to_string(),
            listen_addrs: self.own_addrs(),
            peers: self.peers.len(),
            topics: self.subscribed_topics(),
            pid: std::process::id(),
            uptime_secs: 0.0,
            daemon_version: env!("CARGO_PKG_VERSION").to_string(),
            protocol_version: hive_proto::PROTOCOL_VERSION,
            connections: self.conn_manager.as_ref().map(|m| m.limits().into()),
            sync: None,
            reach: Some(self.reach_status()),
            refused: None,
            history: None,
        })
    }

    pub(super) fn peers(&self) -> PeersResult {
        let peers = self
            .peers
            .iter()
            .map(|(peer, state)| self.peer_info(peer, Some(state)))
            .collect();
        PeersResult { peers }
    }

    pub(super) fn dial(&mut self, addr: Multiaddr, reply: Reply<DialResult, DialError>) {
        let opts = match peer_of(&addr) {
            Some(peer) => {
                self.keeper.reconnect.release(&peer);
                if self.peers.contains_key(&peer) {
                    let _ = reply.send(Ok(DialResult {
                        peer_id: peer.to_string(),
                    }));
                    return;
                }
                if crate::circuit::is_circuit(&addr) {
                    if let Err(e) = self.prepare_circuit(&addr) {
                        let _ = reply.send(Err(e));
                        return;
                    }
                } else {
                    self.add_route(&peer, without_p2p(&addr));
                }
                DialOpts::peer_id(peer)
                    .addresses(vec![without_p2p(&addr)])
                    .condition(PeerCondition::Always)
                    .build()
            }
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let connection_id = opts.connection_id();
        match self.own_dial(opts) {
            Ok(()) => self
                .pending_dials
                .entry(connection_id)
                .or_default()
                .push(reply),
            Err(e) => {
                let reason = e.to_string();
                let _ = reply.send(Err(DialError::NotStarted { addr, reason }));
            }
        }
    }

    /// Before dialing through a relay: check the address, and start a
    /// connection to the relay when there is none (the circuit transport
    /// opens its HOP stream over it, waiting for it if need be).
    pub(super) fn prepare_circuit(&mut self, addr: &Multiaddr) -> Result<(), DialError> {
        if !self.relay_client {
            return Err(DialError::NoRelayClient { addr: addr.clone() });
        }
        let circuit = crate::circuit::parse_circuit_addr(addr)
            .ok_or_else(|| DialError::NotCircuit { addr: addr.clone() })?;
        if circuit.dst == self.peer_id {
            return Err(DialError::SelfThroughRelay);
        }
        if !self.peers.contains_key(&circuit.relay) && !circuit.relay_addr.is_empty() {
            self.add_route(&circuit.relay, circuit.relay_addr.clone());
            self.dial_idle(circuit.relay, circuit.relay_addr, "relay");
        }
        Ok(())
    }
}
