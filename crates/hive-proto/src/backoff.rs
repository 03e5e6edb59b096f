//! Exponential backoff, and the restart policy of Hive's supervisors.
//!
//! Two supervisors restart processes: the host its daemons, and a daemon
//! running without a host its children (`hive-p2pd` `children`). Both
//! follow [`RESTART`] and [`HEALTHY_AFTER`], so a node crash-looping under
//! either waits the same; the host's outbox retries with its own bound.

use std::time::Duration;

/// Doublings after which the delay stops growing even below `max`.
const MAX_DOUBLINGS: u32 = 20;

/// Waits of `min`, `2·min`, `4·min`, … capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max }
    }

    /// The wait before the next try, after `failures` failed tries in a row
    /// (none yet: `min`).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.min(MAX_DOUBLINGS);
        self.min.saturating_mul(factor).min(self.max)
    }
}

/// Restart waits: from a quarter second, doubling, up to half a minute.
pub const RESTART: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));

/// A process that ran this long before it ended was healthy: the next
/// restart starts again from [`RESTART`]'s shortest wait.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_double_from_a_quarter_second_up_to_half_a_minute() {
        let waits: Vec<u128> = (0..10).map(|n| RESTART.delay(n).as_millis()).collect();
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(RESTART.delay(u32::MAX), Duration::from_secs(30));
    }
}
