//! Exponential backoff: the one rule for how long the host waits before
//! trying again (a daemon restart, an outbox retry).

use std::time::Duration;

/// Doublings after which the delay stops growing even below `max`.
const MAX_DOUBLINGS: u32 = 20;

/// Waits of `min`, `2·min`, `4·min`, … capped at `max`.
#[derive(Debug, Clone, Copy)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_min_up_to_max() {
        let b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let waits: Vec<u128> = (0..10).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
    }
}
