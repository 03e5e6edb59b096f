//! Swarm events: listen addresses, connections opened and closed, and the
//! behaviours' events, each handed to the concern it belongs to.

use std::collections::HashMap;
use std::time::Instant;

use hive_proto::{DialResult, Event};
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{identify, mdns, ping, Multiaddr, PeerId};

use super::{with_p2p, without_p2p, DialError, Node, PeerState};
use crate::behaviour::BehaviourEvent;
use libp2p::metrics::Recorder;

impl Node {
    pub(super) fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(event) => self.handle_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address.clone());
                }
                self.emit(Event::NewListenAddr {
                    addr: with_p2p(&address, self.peer_id),
                });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
                self.emit(Event::ExpiredListenAddr {
                    addr: with_p2p(&address, self.peer_id),
                });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => self.on_connected(peer_id, connection_id, &endpoint, num_established.get()),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => self.on_disconnected(peer_id, connection_id, num_established),
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
                self.own_dials.remove(&connection_id);
                if let Some(peer) = peer_id.filter(|p| self.bootstrap_peers.contains_key(p)) {
                    self.warn_bootstrap_unreachable(peer, &error);
                }
                if let Some(replies) = self.pending_dials.remove(&connection_id) {
                    for reply in replies {
                        let _ = reply.send(Err(DialError::Failed {
                            reason: error.to_string(),
                        }));
                    }
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "external address expired");
            }
            other => tracing::trace!(?other, "swarm event"),
        }
    }

    /// A connection is up: note it, answer the dials waiting for it, and
    /// on the first one to a peer tell the clients and the relays.
    fn on_connected(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: &ConnectedPoint,
        num_established: u32,
    ) {
        let addr = endpoint.get_remote_address().clone();
        let by_lookup = endpoint.is_dialer() && !self.own_dials.remove(&connection_id);
        let origin = match (endpoint.is_dialer(), by_lookup) {
            (false, _) => "inbound",
            (true, true) => "lookup",
            (true, false) => "own_dial",
        };
        tracing::debug!(%peer_id, origin, num_established, "connection established");
        if origin != "own_dial" && self.keeper.reconnect.is_held(&peer_id) {
            // A client disconnected this peer: it stays away for the hold
            // (or until a client dials it), whoever dials. The other side's
            // own keeper would otherwise dial straight back.
            tracing::debug!(%peer_id, origin, "connection from a peer a client disconnected; closed");
            self.swarm.close_connection(connection_id);
            return;
        }
        let state = self.peers.entry(peer_id).or_insert_with(|| PeerState {
            connections: HashMap::new(),
            since: Instant::now(),
            rtt: None,
            by_lookup,
            circuit_superseded: None,
        });
        // A lookup's peer that this node or the peer itself then connects
        // to on purpose is kept like any other.
        state.by_lookup &= by_lookup;
        state.connections.insert(connection_id, addr.clone());
        let dialed = endpoint.is_dialer().then(|| without_p2p(&addr));
        let announced = self.peer_listen_addrs.get(&peer_id).cloned();
        let announced = announced.unwrap_or_default();
        self.keeper
            .reconnect
            .on_connected(peer_id, dialed, &announced);
        self.keeper.flush();
        if num_established == 1 {
            let reachable = self.reachable();
            self.relays.on_connected(peer_id, reachable);
            tracing::info!(%peer_id, %addr, "peer connected");
            self.emit(Event::PeerConnected {
                peer_id: peer_id.to_string(),
                addr: addr.to_string(),
            });
        }
        if let Some(replies) = self.pending_dials.remove(&connection_id) {
            for reply in replies {
                let _ = reply.send(Ok(DialResult {
                    peer_id: peer_id.to_string(),
                }));
            }
        }
        if self.bootstrap_peers.contains_key(&peer_id) && !self.kad_bootstrapped {
            self.start_bootstrap();
        }
    }

    /// A connection closed; the last one to a peer makes it gone.
    fn on_disconnected(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        num_established: u32,
    ) {
        if let Some(state) = self.peers.get_mut(&peer_id) {
            state.connections.remove(&connection_id);
        }
        // Only a peer that was let in is gone (a held peer's refused
        // connection never was).
        if num_established == 0 && self.peers.remove(&peer_id).is_some() {
            if let Some(manager) = &mut self.conn_manager {
                manager.on_disconnected(&peer_id);
            }
            self.keeper.reconnect.on_disconnected(peer_id);
            if let Some(change) = self.relays.on_disconnected(&peer_id) {
                self.apply_addr_change(change);
            }
            tracing::info!(%peer_id, "peer disconnected");
            self.emit(Event::PeerDisconnected {
                peer_id: peer_id.to_string(),
            });
        }
    }

    pub(super) fn handle_behaviour_event(&mut self, event: BehaviourEvent) {
        match &event {
            BehaviourEvent::Gossipsub(e) => self.metrics.record(e),
            BehaviourEvent::Identify(e) => self.metrics.record(e),
            BehaviourEvent::Ping(e) => self.metrics.record(e),
            BehaviourEvent::Kad(e) => self.metrics.record(e),
            BehaviourEvent::Relay(e) => self.metrics.record(e),
            BehaviourEvent::Dcutr(e) => self.metrics.record(e),
            _ => {}
        }
        match event {
            BehaviourEvent::Relay(event) => {
                if let Some(manager) = &mut self.conn_manager {
                    manager.on_relay_event(&event);
                }
                tracing::debug!(?event, "relay service");
            }
            BehaviourEvent::Autonat(event) => tracing::info!(?event, "autonat"),
            BehaviourEvent::Dcutr(event) => match event.result {
                Ok(_) => {
                    tracing::info!(peer = %event.remote_peer_id, "direct connection made from a relayed one (DCUtR)")
                }
                Err(e) => {
                    tracing::info!(peer = %event.remote_peer_id, error = %e, "relayed connection stays relayed (DCUtR failed)")
                }
            },
            BehaviourEvent::Upnp(event) => tracing::info!(?event, "upnp"),
            BehaviourEvent::Gossipsub(event) => self.handle_gossipsub(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.on_identified(peer_id, info.listen_addrs)
            }
            BehaviourEvent::Identify(_) => {}
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(error),
            }) => self.on_ping_failed(peer, connection, &error),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => self.on_discovered(found),
            BehaviourEvent::Mdns(mdns::Event::Expired(_)) => {}
            BehaviourEvent::Kad(event) => self.handle_kad(event),
            BehaviourEvent::Direct(event) => self.handle_direct(event),
            BehaviourEvent::Hping(event) => self.handle_hping(event),
            BehaviourEvent::Limits(never) => match never {},
            BehaviourEvent::Streams(()) => {}
        }
    }

    /// A peer said where it listens: the DHT, the memory and `peers` learn
    /// it (unspecified addresses left out).
    fn on_identified(&mut self, peer_id: PeerId, listen_addrs: Vec<Multiaddr>) {
        let addrs: Vec<Multiaddr> = listen_addrs
            .into_iter()
            .filter(|a| {
                !a.iter().any(|p| {
                    matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())
                        || matches!(p, Protocol::Ip6(ip) if ip.is_unspecified())
                })
            })
            .collect();
        for addr in &addrs {
            self.add_route(&peer_id, without_p2p(addr));
        }
        let plain: Vec<Multiaddr> = addrs.iter().map(without_p2p).collect();
        self.keeper.reconnect.learn_addrs(peer_id, &plain);
        // Saved now, not at the next tick: a daemon killed right
        // after meeting a peer must still find it after a restart
        // (the keeper spaces hand-overs while changes keep coming).
        self.keeper.flush();
        self.peer_listen_addrs.insert(peer_id, addrs);
    }

    /// Peers on the local network: known to the DHT, dialed if new.
    fn on_discovered(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        for (peer, addr) in found {
            if peer == self.peer_id {
                continue;
            }
            self.add_route(&peer, addr.clone());
            if !self.peers.contains_key(&peer) {
                tracing::info!(%peer, %addr, "discovered by mDNS");
                self.dial_idle(peer, addr, "peer found by mDNS");
            }
        }
    }
}
