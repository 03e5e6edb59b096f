//! `status` answered without the node loop when nothing can have changed.
//!
//! Why: a `status` that crosses into the loop and back costs two task
//! switches and the build of its answer, three to four times a bare
//! WebSocket round trip on an idle daemon (bench/FINDINGS.md), and the
//! host's health checks and `/api/status` ask for it all the time.
//!
//! What keeps such an answer true: the loop bumps a generation each time it
//! wakes for anything ([`StatusCache::woke`]), before it touches its state,
//! and a snapshot holds only while the generation is the one it was taken
//! at, and for at most [`MAX_AGE`]. So an answer from it is the one the loop
//! would have given, and a loop that stops turning (hung, starved) is still
//! found out: the next `status` after a second goes through it and times
//! out. The parts kept outside the loop (the history's byte budget, the
//! catch-up and refusal counters, the uptime) are read fresh every time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive_proto::StatusResult;

use crate::lock;

/// The longest a snapshot answers for the loop.
pub(super) const MAX_AGE: Duration = Duration::from_secs(1);

/// The loop's last `status`, shared with its handles.
pub(crate) struct StatusCache {
    generation: AtomicU64,
    snapshot: Mutex<Option<Snapshot>>,
    started: Instant,
    sync: crate::sync::Stats,
    refusals: Arc<crate::limits::RefusalCounts>,
    budget: Arc<crate::history::budget::Stats>,
}

struct Snapshot {
    generation: u64,
    taken: Instant,
    status: StatusResult,
}

impl StatusCache {
    pub(super) fn new(
        sync: crate::sync::Stats,
        refusals: Arc<crate::limits::RefusalCounts>,
        budget: Arc<crate::history::budget::Stats>,
    ) -> Self {
        StatusCache {
            generation: AtomicU64::new(0),
            snapshot: Mutex::new(None),
            started: Instant::now(),
            sync,
            refusals,
            budget,
        }
    }

    /// The loop woke: whatever it does next may change its answer.
    pub(super) fn woke(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The loop's own part of `status` (built in the loop): kept for the
    /// answers to come, and returned with the fresh parts filled in.
    pub(super) fn answer(&self, status: StatusResult) -> StatusResult {
        let snapshot = Snapshot {
            generation: self.generation.load(Ordering::Acquire),
            taken: Instant::now(),
            status: status.clone(),
        };
        *lock(&self.snapshot) = Some(snapshot);
        self.complete(status)
    }

    /// The answer the loop would give now, if it cannot have changed since
    /// the last one; `None` sends the request through the loop.
    pub(super) fn fresh(&self) -> Option<StatusResult> {
        let generation = self.generation.load(Ordering::Acquire);
        let status = {
            let snapshot = lock(&self.snapshot);
            let s = snapshot.as_ref()?;
            if s.generation != generation || s.taken.elapsed() > MAX_AGE {
                return None;
            }
            s.status.clone()
        };
        Some(self.complete(status))
    }

    fn complete(&self, mut status: StatusResult) -> StatusResult {
        status.uptime_secs = self.started.elapsed().as_secs_f64();
        status.sync = self.sync.snapshot();
        status.refused = Some(self.refusals.snapshot());
        status.history = Some(self.budget.status());
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> StatusCache {
        StatusCache::new(
            crate::sync::Stats::default(),
            Arc::default(),
            Arc::new(crate::history::budget::Stats::new(1000, 10)),
        )
    }

    fn status(peers: usize) -> StatusResult {
        StatusResult {
            peer_id: "me".into(),
            listen_addrs: vec![],
            peers,
            topics: vec!["t".into()],
            pid: 1,
            uptime_secs: 0.0,
            daemon_version: "0".into(),
            protocol_version: 1,
            connections: None,
            sync: None,
            reach: None,
            refused: None,
            history: None,
        }
    }

    #[test]
    fn a_snapshot_answers_until_the_loop_wakes() {
        let cache = cache();
        assert!(cache.fresh().is_none(), "nothing before the first answer");
        cache.woke();
        let first = cache.answer(status(3));
        assert_eq!(
            first.history.map(|h| h.bytes),
            Some(10),
            "fresh parts filled"
        );
        let again = cache.fresh().expect("nothing happened since");
        assert_eq!((again.peers, again.topics), (3, vec!["t".to_owned()]));
        assert!(again.refused.is_some());
        cache.woke();
        assert!(
            cache.fresh().is_none(),
            "the loop woke: it may have changed"
        );
        cache.answer(status(4));
        assert_eq!(cache.fresh().map(|s| s.peers), Some(4));
    }

    #[test]
    fn a_snapshot_older_than_its_age_goes_through_the_loop() {
        let cache = cache();
        cache.answer(status(1));
        if let Some(s) = lock(&cache.snapshot).as_mut() {
            s.taken -= MAX_AGE + Duration::from_millis(1);
        }
        assert!(cache.fresh().is_none());
    }
}
