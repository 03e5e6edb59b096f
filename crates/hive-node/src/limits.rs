//! Per-peer rate limits on what remote peers make this node store or do:
//! direct messages (`/hive/direct/1.0.0`) and history-sync requests
//! (`/hive/sync/1.0.0`). Token buckets, one per peer: a peer may burst up to
//! the bucket's size, then gets the steady rate; what is over it is refused
//! (and the sender told, for direct messages) instead of queued, so one
//! flooding peer cannot fill the node's history, its host's inbox or its
//! disk, nor starve the other peers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// One token bucket: holds up to `burst` tokens, refilled at `rate` a second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Take `cost` tokens if there are that many; false (nothing taken)
    /// otherwise.
    pub fn try_take(&mut self, cost: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Full again: nothing taken that is not refilled by now.
    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// A rate and the burst allowed above it; `rate` 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Tokens a second.
    pub per_sec: f64,
    /// The bucket's size.
    pub burst: f64,
}

impl Rate {
    pub const UNLIMITED: Rate = Rate {
        per_sec: 0.0,
        burst: 0.0,
    };

    pub fn is_unlimited(&self) -> bool {
        self.per_sec <= 0.0
    }
}

/// Limits on what remote peers may ask of this node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PeerLimits {
    /// Direct messages a second, per peer.
    pub direct_msgs: Rate,
    /// Direct message payload bytes a second, per peer.
    pub direct_bytes: Rate,
    /// History-sync requests (one page each) a second, per peer.
    pub sync_requests: Rate,
}

impl PeerLimits {
    /// Hive's defaults: 200 messages and 8 MiB a second per peer (bursts of
    /// 400 and 16 MiB), 20 sync pages a second (bursts of 200: a catch-up
    /// of several topics at 10 pages each passes whole). Far above
    /// what one application peer sends; far below what fills a disk.
    pub const DEFAULT: PeerLimits = PeerLimits {
        direct_msgs: Rate {
            per_sec: 200.0,
            burst: 400.0,
        },
        direct_bytes: Rate {
            per_sec: (8 << 20) as f64,
            burst: (16 << 20) as f64,
        },
        sync_requests: Rate {
            per_sec: 20.0,
            burst: 200.0,
        },
    };

    pub const UNLIMITED: PeerLimits = PeerLimits {
        direct_msgs: Rate::UNLIMITED,
        direct_bytes: Rate::UNLIMITED,
        sync_requests: Rate::UNLIMITED,
    };
}

/// Most peers tracked before buckets that are full again are forgotten.
const MAX_TRACKED: usize = 4096;

/// One bucket per peer at the same rate.
#[derive(Debug)]
pub struct PerPeer {
    rate: Rate,
    buckets: HashMap<PeerId, TokenBucket>,
}

impl PerPeer {
    pub fn new(rate: Rate) -> Self {
        PerPeer {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Take `cost` from `peer`'s bucket; false: over its rate.
    pub fn try_take(&mut self, peer: PeerId, cost: f64, now: Instant) -> bool {
        if self.rate.is_unlimited() {
            return true;
        }
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&peer) {
            // A full bucket is the same as no bucket: forget those.
            self.buckets.retain(|_, b| !b.is_full(now));
        }
        let rate = self.rate;
        self.buckets
            .entry(peer)
            .or_insert_with(|| TokenBucket::new(rate.per_sec, rate.burst, now))
            .try_take(cost, now)
    }
}

/// What the node refused from remote peers since it started, for its
/// status (`StatusResult::refused`) and its host's `/metrics`.
#[derive(Debug, Default)]
pub struct RefusalCounts {
    pub direct: AtomicU64,
    pub sync: AtomicU64,
}

impl RefusalCounts {
    pub fn snapshot(&self) -> hive_proto::Refusals {
        hive_proto::Refusals {
            direct_rate_limited: self.direct.load(Ordering::Relaxed),
            sync_rate_limited: self.sync.load(Ordering::Relaxed),
        }
    }
}

/// The direct-message limiter: a message must fit both the count and the
/// byte bucket of its sender.
#[derive(Debug)]
pub struct DirectLimiter {
    msgs: PerPeer,
    bytes: PerPeer,
}

impl DirectLimiter {
    pub fn new(limits: &PeerLimits) -> Self {
        DirectLimiter {
            msgs: PerPeer::new(limits.direct_msgs),
            bytes: PerPeer::new(limits.direct_bytes),
        }
    }

    /// May `peer` have a message of `len` bytes stored now?
    pub fn admit(&mut self, peer: PeerId, len: usize, now: Instant) -> bool {
        // Bytes first: a message refused for its size takes no count token.
        self.bytes.try_take(peer, len as f64, now) && self.msgs.try_take(peer, 1.0, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        assert!((0..5).all(|_| b.try_take(1.0, t0)), "the burst passes");
        assert!(!b.try_take(1.0, t0), "then nothing until it refills");
        // 10 a second: 0.1 s gives one token, 10 s never more than the burst.
        assert!(b.try_take(1.0, t0 + Duration::from_millis(100)));
        assert!(!b.try_take(1.0, t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_secs(10);
        assert_eq!((0..100).filter(|_| b.try_take(1.0, later)).count(), 5);
        // A cost larger than the burst never passes; a refused take costs nothing.
        assert!(!b.try_take(6.0, later + Duration::from_secs(60)));
        assert!(b.try_take(5.0, later + Duration::from_secs(60)));
    }

    #[test]
    fn peers_have_their_own_buckets() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut limiter = DirectLimiter::new(&PeerLimits {
            direct_msgs: Rate {
                per_sec: 1.0,
                burst: 3.0,
            },
            direct_bytes: Rate {
                per_sec: 100.0,
                burst: 250.0,
            },
            ..PeerLimits::UNLIMITED
        });
        assert_eq!((0..10).filter(|_| limiter.admit(a, 10, t0)).count(), 3);
        assert!(limiter.admit(b, 10, t0), "another peer is not limited by a");
        assert!(limiter.admit(b, 200, t0), "bytes within b's burst");
        assert!(!limiter.admit(b, 100, t0), "b's bytes are spent");
        assert!(
            limiter.admit(b, 10, t0),
            "a refused message took no count token"
        );
        let mut open = PerPeer::new(Rate::UNLIMITED);
        assert!((0..10_000).all(|_| open.try_take(a, 1e9, t0)));
    }

    #[test]
    fn idle_peers_are_forgotten_past_the_bound() {
        let t0 = Instant::now();
        let mut limiter = PerPeer::new(Rate {
            per_sec: 1.0,
            burst: 1.0,
        });
        for _ in 0..MAX_TRACKED + 10 {
            limiter.try_take(PeerId::random(), 1.0, t0);
        }
        assert!(limiter.buckets.len() > MAX_TRACKED);
        limiter.try_take(PeerId::random(), 1.0, t0 + Duration::from_secs(2));
        assert_eq!(limiter.buckets.len(), 1, "full buckets are dropped");
    }
}
