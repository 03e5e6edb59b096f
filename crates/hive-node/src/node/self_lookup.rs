//! The node's Kademlia bootstraps (self-lookups) in Hive's mode: no second
//! one right behind the first.
//!
//! rust-libp2p's Kademlia schedules a bootstrap of its own (500 ms later,
//! not configurable from outside the crate) whenever a peer enters a
//! routing table of fewer than 20. A newcomer's table passes 20 during its
//! first lookup, so every newcomer ran a second lookup as soon as the first
//! was over, asking some 25 peers again and dialing those the first had
//! left (a 300-node start: two self-lookups per newcomer, about 50 requests;
//! bench/FINDINGS.md). The second finds nothing the first did not.
//!
//! Only starting a bootstrap cancels one Kademlia has scheduled. So when a
//! bootstrap is over and the table holds 20 or more, the node starts one
//! and finishes it before it is polled: it asks nobody, and the scheduled
//! one is gone. A table still short of 20 keeps Kademlia's next bootstrap,
//! which then has something to find. With go's flags (`bucket_refresh`)
//! Kademlia keeps its own ways.

use libp2p::kad;

use super::Node;

/// Kademlia's bucket size, below which it schedules a bootstrap whenever a
/// peer is inserted (`K_VALUE` in libp2p-kad).
const SMALL_TABLE: usize = 20;

impl Node {
    /// The node's first bootstrap, at its first bootstrap peer's connection.
    pub(super) fn start_bootstrap(&mut self) {
        self.kad_bootstrapped = true;
        if let Err(e) = self.swarm.behaviour_mut().kad.bootstrap() {
            tracing::debug!(error = %e, "kademlia bootstrap not started");
        }
    }

    /// A bootstrap's last step: cancel the one Kademlia may have scheduled,
    /// unless this was itself such a cancelling one or the table is small.
    pub(super) fn bootstrap_over(&mut self, id: &kad::QueryId) {
        if self.bucket_refresh || self.empty_bootstraps.remove(id) {
            return;
        }
        let kad = &mut self.swarm.behaviour_mut().kad;
        let entries: usize = kad.kbuckets().map(|b| b.num_entries()).sum();
        if entries < SMALL_TABLE {
            return;
        }
        let Ok(empty) = kad.bootstrap() else { return };
        if let Some(mut query) = kad.query_mut(&empty) {
            query.finish();
        }
        self.empty_bootstraps.insert(empty);
    }
}
