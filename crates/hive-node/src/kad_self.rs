//! Kademlia that names itself when asked for its own id.
//!
//! go-libp2p-kad-dht adds a peer to its routing table only after a "lookup
//! check": a FIND_NODE for the peer's own id must return at least one peer
//! (`lookupCheck` in its dht.go). rust-libp2p answers FIND_NODE with the
//! closest peers it knows other than itself and the one asking, so a hive
//! node that knows only the go peer answers with nothing and go never
//! takes it (the interop suite's `dht.contentRouting`). js-libp2p answers a
//! query for its own id with itself; so does this wrapper, which sits around
//! rust-libp2p's Kademlia and changes nothing else.
//!
//! How, without a fork: the wrapper delegates every call, and looks at two
//! of the handler's messages on their way through. An inbound FIND_NODE
//! (`FindNodeReq` from a connection) is noted per connection, in order, as
//! "for our id" or not; Kademlia answers each one at once and in order
//! (`FindNodeRes` to that connection), so the answer that matches a noted
//! "for our id" gets this node, with its listen and external addresses,
//! added to its closer peers. Every FIND_NODE answer also loses the
//! `/p2p/<id>` suffix on its peers' addresses, as go and js send them. The handler's message types are private to
//! libp2p-kad; they are reached through the swarm's `THandlerInEvent` /
//! `THandlerOutEvent` aliases, so an upgrade that changed them fails to
//! compile here rather than silently.

use std::collections::{HashMap, VecDeque};
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::kad::{self, ConnectionType, KadPeer};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

type Kad = kad::Behaviour<kad::store::MemoryStore>;
type KadIn = THandlerInEvent<Kad>;
type KadOut = THandlerOutEvent<Kad>;

/// rust-libp2p's Kademlia, answering a FIND_NODE for this node's own id with
/// this node among the closer peers. Derefs to the inner behaviour.
pub struct SelfNaming {
    inner: Kad,
    local: PeerId,
    /// Listen addresses and confirmed external ones, as the swarm reports them.
    addrs: Vec<Multiaddr>,
    /// Per connection, the inbound FIND_NODEs not answered yet, oldest
    /// first: `true` when it asked for this node's id.
    asked: HashMap<ConnectionId, VecDeque<bool>>,
}

impl SelfNaming {
    pub fn new(local: PeerId, inner: Kad) -> Self {
        SelfNaming {
            inner,
            local,
            addrs: Vec::new(),
            asked: HashMap::new(),
        }
    }

    fn note_addresses(&mut self, event: &FromSwarm) {
        let (added, removed) = match event {
            FromSwarm::NewListenAddr(e) => (Some(e.addr), None),
            FromSwarm::ExternalAddrConfirmed(e) => (Some(e.addr), None),
            FromSwarm::ExpiredListenAddr(e) => (None, Some(e.addr)),
            FromSwarm::ExternalAddrExpired(e) => (None, Some(e.addr)),
            FromSwarm::ConnectionClosed(e) => {
                self.asked.remove(&e.connection_id);
                (None, None)
            }
            _ => (None, None),
        };
        if let Some(addr) = added {
            if !self.addrs.contains(addr) {
                self.addrs.push(addr.clone());
            }
        }
        if let Some(addr) = removed {
            self.addrs.retain(|a| a != addr);
        }
    }

    /// An answer on its way to `connection`: if it answers a FIND_NODE for
    /// our id, put this node in it.
    fn complete(&mut self, connection: ConnectionId, event: &mut KadIn) {
        let KadIn::FindNodeRes { closer_peers, .. } = event else {
            return;
        };
        for peer in closer_peers.iter_mut() {
            without_own_id(peer);
        }
        let Some(queue) = self.asked.get_mut(&connection) else {
            return;
        };
        let for_us = queue.pop_front().unwrap_or(false);
        if queue.is_empty() {
            self.asked.remove(&connection);
        }
        if for_us && !closer_peers.iter().any(|p| p.node_id == self.local) {
            closer_peers.insert(
                0,
                KadPeer {
                    node_id: self.local,
                    multiaddrs: self.addrs.clone(),
                    connection_ty: ConnectionType::Connected,
                },
            );
        }
    }
}

/// Addresses as other implementations send them: without a trailing
/// `/p2p/<that peer>`. rust-libp2p keeps the addresses it was given with
/// the suffix; js-libp2p's `findPeer` hands them on as they came, and a js
/// client comparing them with the peer's identify addresses (which have
/// none) sees different strings.
fn without_own_id(peer: &mut KadPeer) {
    let id = peer.node_id;
    let mut addrs: Vec<Multiaddr> = Vec::with_capacity(peer.multiaddrs.len());
    for mut addr in std::mem::take(&mut peer.multiaddrs) {
        if matches!(addr.iter().last(), Some(Protocol::P2p(p)) if p == id) {
            addr.pop();
        }
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    peer.multiaddrs = addrs;
}

impl std::ops::Deref for SelfNaming {
    type Target = Kad;
    fn deref(&self) -> &Kad {
        &self.inner
    }
}

impl std::ops::DerefMut for SelfNaming {
    fn deref_mut(&mut self) -> &mut Kad {
        &mut self.inner
    }
}

impl NetworkBehaviour for SelfNaming {
    type ConnectionHandler = THandler<Kad>;
    type ToSwarm = kad::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.note_addresses(&event);
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: KadOut,
    ) {
        if let KadOut::FindNodeReq { key, .. } = &event {
            let for_us = key.as_slice() == self.local.to_bytes().as_slice();
            self.asked
                .entry(connection_id)
                .or_default()
                .push_back(for_us);
        }
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<kad::Event, KadIn>> {
        let mut next = std::task::ready!(self.inner.poll(cx));
        if let ToSwarm::NotifyHandler {
            handler: NotifyHandler::One(connection),
            event,
            ..
        } = &mut next
        {
            self.complete(*connection, event);
        }
        Poll::Ready(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_lose_only_their_own_peer_suffix() {
        let id = PeerId::random();
        let other = PeerId::random();
        let mut peer = KadPeer {
            node_id: id,
            multiaddrs: vec![
                format!("/ip4/10.0.0.1/tcp/1/p2p/{id}").parse().unwrap(),
                "/ip4/10.0.0.1/tcp/1".parse().unwrap(),
                format!("/ip4/10.0.0.2/tcp/2/p2p/{other}/p2p-circuit/p2p/{id}")
                    .parse()
                    .unwrap(),
                format!("/ip4/10.0.0.3/tcp/3/p2p/{other}").parse().unwrap(),
            ],
            connection_ty: ConnectionType::Connected,
        };
        without_own_id(&mut peer);
        let got: Vec<String> = peer.multiaddrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            got,
            [
                "/ip4/10.0.0.1/tcp/1".to_string(),
                format!("/ip4/10.0.0.2/tcp/2/p2p/{other}/p2p-circuit"),
                format!("/ip4/10.0.0.3/tcp/3/p2p/{other}"),
            ]
        );
    }
}
