//! Reachability: whether others can dial this node directly, and the
//! relay slots it takes while they cannot (the policy is `crate::relays`).

use hive_proto::Event;
use libp2p::{Multiaddr, PeerId};

use super::{with_p2p, Node};
use crate::config::Reachability;
use crate::relays::AddrChange;

impl Node {
    /// Reachability and relay slots, for `status` (and `hive doctor`).
    pub(super) fn reach_status(&self) -> hive_proto::ReachStatus {
        let mode = match self.reachability {
            Reachability::Public => "public",
            Reachability::Private => "private",
            Reachability::Auto => "auto",
        };
        let autonat = self.swarm.behaviour().autonat.as_ref().map(|a| {
            match a.nat_status() {
                libp2p::autonat::NatStatus::Public(_) => "public",
                libp2p::autonat::NatStatus::Private => "private",
                libp2p::autonat::NatStatus::Unknown => "unknown",
            }
            .to_owned()
        });
        hive_proto::ReachStatus {
            mode: mode.to_owned(),
            reachable: self.reachable(),
            autonat,
            confirmed_addrs: self
                .swarm
                .external_addresses()
                .filter(|a| !crate::circuit::is_circuit(a))
                .map(|a| with_p2p(a, self.peer_id))
                .collect(),
            relays: self.relays.slots(),
        }
    }

    /// Whether others can dial this node directly.
    pub(super) fn reachable(&self) -> bool {
        match self.reachability {
            Reachability::Public => true,
            Reachability::Private => false,
            Reachability::Auto => self
                .swarm
                .external_addresses()
                .any(|a| !crate::circuit::is_circuit(a)),
        }
    }

    /// Dial candidate relays, renew or retry slots, give them up once the
    /// node is reachable directly.
    pub(super) fn maintain_relays(&mut self) {
        let reachable = self.reachable();
        let to_dial: Vec<(PeerId, Multiaddr)> = self
            .relays
            .to_dial(reachable, |p| self.peers.contains_key(p))
            .collect();
        for (relay, addr) in to_dial {
            self.add_route(&relay, addr.clone());
            self.dial_idle(relay, addr, "relay");
        }
        let peers = &self.peers;
        let changes = self.relays.tick(reachable, |p| peers.contains_key(p));
        for change in changes {
            self.apply_addr_change(change);
        }
    }

    /// Announce or withdraw a relayed address.
    pub(super) fn apply_addr_change(&mut self, change: AddrChange) {
        match change {
            AddrChange::Add(addr) => {
                self.swarm.add_external_address(addr.clone());
                self.emit(Event::NewListenAddr {
                    addr: with_p2p(&addr, self.peer_id),
                });
            }
            AddrChange::Remove(addr) => {
                self.swarm.remove_external_address(&addr);
                self.emit(Event::ExpiredListenAddr {
                    addr: with_p2p(&addr, self.peer_id),
                });
            }
        }
    }
}
