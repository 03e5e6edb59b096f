//! What catching up has done since the node started, for `status`.
//!
//! Shared between the sync tasks (which count) and the node's loop (which
//! answers `status`): a mutex held for a few field updates, never across an
//! await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hive_proto::{PeerSync, SyncStatus};
use libp2p::PeerId;

use crate::lock;

/// Peers listed in the status, newest first.
const LISTED_PEERS: usize = 32;
/// Peers remembered at all; the oldest go first.
const KEPT_PEERS: usize = 1024;

#[derive(Clone, Default)]
pub struct Stats {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    enabled: bool,
    behind: usize,
    failed: u64,
    served: u64,
    refused: u64,
    fetched: u64,
    rejected: u64,
    reconciles: u64,
    reconciled: u64,
    sent_bytes: u64,
    received_bytes: u64,
    peers: HashMap<PeerId, PeerSync>,
    /// When each topic was subscribed (Unix ms): where a reconcile of a
    /// topic new to this node starts.
    subscribed: HashMap<String, i64>,
}

impl Inner {
    /// What a catch-up or a reconcile with `peer` kept and refused.
    fn count(&mut self, peer: PeerId, kept: usize, rejected: usize, now_ms: i64) {
        self.fetched += kept as u64;
        self.rejected += rejected as u64;
        if self.peers.len() >= KEPT_PEERS && !self.peers.contains_key(&peer) {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, p)| p.last_ms)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
            }
        }
        let entry = self.peers.entry(peer).or_insert_with(|| PeerSync {
            peer_id: peer.to_string(),
            last_ms: now_ms,
            fetched: 0,
            rejected: 0,
        });
        entry.last_ms = now_ms;
        entry.fetched += kept as u64;
        entry.rejected += rejected as u64;
    }
}

impl Stats {
    /// Catching up runs on this node (so `status` reports it).
    pub(super) fn enable(&self) {
        lock(&self.inner).enabled = true;
    }

    /// A catch-up with a peer was planned (it may wait for a slot).
    pub(super) fn planned(&self) {
        lock(&self.inner).behind += 1;
    }

    /// A planned catch-up ended: `Some((kept, rejected))`, or `None` when it
    /// failed.
    pub(super) fn ended(&self, peer: PeerId, outcome: Option<(usize, usize)>, now_ms: i64) {
        let mut s = lock(&self.inner);
        s.behind = s.behind.saturating_sub(1);
        let Some((kept, rejected)) = outcome else {
            s.failed += 1;
            return;
        };
        s.count(peer, kept, rejected, now_ms);
    }

    /// A reconcile round with `peer` ended: `Some((kept, rejected))`, or
    /// `None` when it failed.
    pub(super) fn reconciled(&self, peer: PeerId, outcome: Option<(usize, usize)>, now_ms: i64) {
        let mut s = lock(&self.inner);
        let Some((kept, rejected)) = outcome else {
            s.failed += 1;
            return;
        };
        s.reconciles += 1;
        s.reconciled += kept as u64;
        s.count(peer, kept, rejected, now_ms);
    }

    /// The node subscribed to `topic` (or left it: `None`).
    pub(crate) fn subscribed(&self, topic: &str, at_ms: Option<i64>) {
        let mut s = lock(&self.inner);
        match at_ms {
            Some(ms) => s.subscribed.insert(topic.to_string(), ms),
            None => s.subscribed.remove(topic),
        };
    }

    /// When the node subscribed to `topic`, if it did in this run.
    pub(super) fn subscribed_at(&self, topic: &str) -> Option<i64> {
        lock(&self.inner).subscribed.get(topic).copied()
    }

    /// Bytes of sync frames this node wrote and read (asking or answering).
    pub(super) fn traffic(&self, sent: usize, received: usize) {
        let mut s = lock(&self.inner);
        s.sent_bytes += sent as u64;
        s.received_bytes += received as u64;
    }

    pub(super) fn served(&self) {
        lock(&self.inner).served += 1;
    }

    pub(super) fn refused(&self) {
        lock(&self.inner).refused += 1;
    }

    /// The status, or `None` when this node does not catch up.
    pub fn snapshot(&self) -> Option<SyncStatus> {
        let s = lock(&self.inner);
        if !s.enabled {
            return None;
        }
        let mut peers: Vec<PeerSync> = s.peers.values().cloned().collect();
        peers.sort_by_key(|p| std::cmp::Reverse(p.last_ms));
        peers.truncate(LISTED_PEERS);
        Some(SyncStatus {
            behind: s.behind,
            fetched: s.fetched,
            rejected: s.rejected,
            failed: s.failed,
            served: s.served,
            refused: s.refused,
            reconciles: s.reconciles,
            reconciled: s.reconciled,
            sent_bytes: s.sent_bytes,
            received_bytes: s.received_bytes,
            peers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_peer_and_in_all_and_lists_the_newest_first() {
        let stats = Stats::default();
        assert_eq!(stats.snapshot(), None, "off until enabled");
        stats.enable();
        let (a, b) = (PeerId::random(), PeerId::random());
        for _ in 0..3 {
            stats.planned();
        }
        stats.ended(a, Some((10, 1)), 1_000);
        stats.ended(b, Some((5, 0)), 2_000);
        let s = stats.snapshot().expect("enabled");
        assert_eq!(s.behind, 1, "one catch-up still planned");
        assert_eq!((s.fetched, s.rejected, s.failed), (15, 1, 0));
        assert_eq!(s.peers[0].peer_id, b.to_string(), "newest first");
        stats.ended(a, None, 3_000);
        let s = stats.snapshot().expect("enabled");
        assert_eq!((s.behind, s.failed), (0, 1));
        assert_eq!(s.peers[1].fetched, 10, "a failure adds nothing to a");
        stats.reconciled(a, Some((2, 1)), 4_000);
        let s = stats.snapshot().expect("enabled");
        assert_eq!((s.reconciles, s.reconciled, s.behind), (1, 2, 0));
        assert_eq!((s.fetched, s.rejected), (17, 2), "also in the totals");
        assert_eq!(
            (s.peers[0].peer_id.clone(), s.peers[0].fetched),
            (a.to_string(), 12)
        );
    }

    #[test]
    fn remembers_a_bounded_number_of_peers() {
        let stats = Stats::default();
        stats.enable();
        for i in 0..(KEPT_PEERS + 10) {
            stats.planned();
            stats.ended(PeerId::random(), Some((1, 0)), i as i64);
        }
        assert_eq!(lock(&stats.inner).peers.len(), KEPT_PEERS);
        let s = stats.snapshot().expect("enabled");
        assert_eq!(s.peers.len(), LISTED_PEERS);
        assert_eq!(
            s.fetched,
            (KEPT_PEERS + 10) as u64,
            "totals keep everything"
        );
        assert_eq!(s.peers[0].last_ms, (KEPT_PEERS + 9) as i64);
    }
}
