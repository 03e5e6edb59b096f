//! Getting into go's Kademlia routing table.
//!
//! go-libp2p-kad-dht (v0.25, the one in hivemind's p2pd) adds a peer that
//! speaks the DHT only after a "lookup check": a FIND_NODE for that peer's
//! own id must return at least one peer (`lookupCheck` in its dht.go).
//! rust-libp2p answers with the closest peers it knows other than itself
//! and the requester, so a node whose table held nothing but the go peer
//! when they met answers with nothing, is refused, and is not asked again
//! (go retries only every 2 minutes, and only while its own table is
//! nearly empty). js-libp2p passes by returning itself for its own id; the
//! Kademlia behaviour here cannot be told to do that.
//!
//! go does ask again each time the peer sends an identify push (it handles
//! every push as `EvtPeerProtocolsUpdated` and re-runs the check). So when
//! the routing table gets its first or second entry, the node pushes its
//! identify to everyone connected: a go peer that was refused then checks
//! again and, now that the table holds a peer other than itself, passes.
//! Beyond two entries every FIND_NODE for our id returns someone, so no
//! further push is needed.

use libp2p::PeerId;

use crate::behaviour::Behaviour;

/// Routing tables this small may have made a go peer's lookup check fail.
const RECHECK_UP_TO: usize = 2;

/// Whether a routing table that just got a new entry and now holds `size`
/// peers should be announced again.
pub fn should_push(size: usize) -> bool {
    size <= RECHECK_UP_TO
}

impl Behaviour {
    /// A peer entered the Kademlia routing table: while the table is small,
    /// push identify to `connected`, so that go peers check this node again.
    pub(crate) fn push_identify_if_table_small(
        &mut self,
        connected: impl IntoIterator<Item = PeerId>,
    ) {
        let size: usize = self.kad.kbuckets().map(|bucket| bucket.num_entries()).sum();
        if should_push(size) {
            tracing::debug!(
                size,
                "small routing table grew: identify push for go's lookup check"
            );
            self.identify.push(connected);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_only_while_the_table_is_small() {
        assert!(should_push(1));
        assert!(should_push(2));
        assert!(!should_push(3));
    }
}
