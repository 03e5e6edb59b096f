//! Statistics of the IPC requests a node's links carry: in flight, recent
//! round trips (for τ) and the per-op latency histogram (for `/metrics`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use hive_proto::sync::lock;

/// Round trips kept for the latency percentile used by the tension signal.
const LATENCY_WINDOW: usize = 256;

/// Metric label for the per-op latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

type LatencyFamily = Family<OpLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Request statistics shared by every link the supervisor opens, so that
/// metrics and the tension signals survive daemon restarts.
pub struct IpcStats {
    in_flight: AtomicUsize,
    recent: Mutex<VecDeque<f64>>,
    histogram: LatencyFamily,
}

impl Default for IpcStats {
    fn default() -> Self {
        IpcStats {
            in_flight: AtomicUsize::new(0),
            recent: Mutex::new(VecDeque::with_capacity(LATENCY_WINDOW)),
            histogram: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        }
    }
}

impl IpcStats {
    /// Requests sent and not yet answered, over all links.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The last round trips (milliseconds), oldest first.
    pub fn recent_latencies_ms(&self) -> Vec<f64> {
        lock(&self.recent).iter().copied().collect()
    }

    /// The histogram family, for registration in the metrics registry.
    pub fn histogram(&self) -> LatencyFamily {
        self.histogram.clone()
    }

    pub(crate) fn record(&self, op: &'static str, elapsed: Duration) {
        self.histogram
            .get_or_create(&OpLabel { op: op.to_owned() })
            .observe(elapsed.as_secs_f64());
        let mut recent = lock(&self.recent);
        if recent.len() == LATENCY_WINDOW {
            recent.pop_front();
        }
        recent.push_back(elapsed.as_secs_f64() * 1000.0);
    }
}

/// Decrements the in-flight count however a request ends (answer, timeout,
/// or the caller's future being dropped).
pub(crate) struct InFlight(Arc<IpcStats>);

impl InFlight {
    pub(crate) fn new(stats: &Arc<IpcStats>) -> Self {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(stats.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
