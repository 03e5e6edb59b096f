//! Who enters the Kademlia routing table.
//!
//! rust-libp2p's Kademlia, asked to add a peer whose bucket is full, keeps
//! the newcomer pending and dials the bucket's least recently seen entry to
//! learn whether it is still alive. In a network whose connections are
//! bounded, the entries of a full bucket are mostly peers the connection
//! manager closed, alive and well: each such dial costs a Noise handshake
//! on both sides and an identify, and on the far side the same rule applies
//! to this node, so one new connection set off a chain of others that the
//! connection manager then closed again. At 300 nodes under one host a
//! newcomer dialed about 50 peers in its first seconds and the first nodes
//! had accepted about 250 connections each (bench/FINDINGS.md, session 12).
//!
//! So a peer enters the table only where its bucket has room, or where it
//! is already listed (its addresses are updated): a full bucket keeps the
//! peers it has, Kademlia's own preference for long-lived peers. A dead
//! entry still leaves: Kademlia drops an address whose dial fails, and the
//! entry with its last address. Inserts are manual (`BucketInserts::Manual`)
//! so that Kademlia does not insert by itself on a new connection, where
//! the same eviction dial would follow; it reports the peer instead
//! (`RoutablePeer`), and the node adds it here.

use libp2p::{kad, Multiaddr, PeerId};

use super::Node;

impl Node {
    /// Adds `addr` of `peer` to the routing table unless its bucket is full
    /// of other peers (see the module's comment).
    pub(super) fn add_route(&mut self, peer: &PeerId, addr: Multiaddr) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let full_of_others = kad.kbucket(*peer).is_some_and(|bucket| {
            bucket.num_entries() >= kad::K_VALUE.get()
                && !bucket.iter().any(|e| e.node.key.preimage() == peer)
        });
        if full_of_others {
            tracing::trace!(%peer, "bucket full: peer not added to the routing table");
            return;
        }
        kad.add_address(peer, addr);
    }
}
