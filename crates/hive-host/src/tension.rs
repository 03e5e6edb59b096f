//! Tension τ: one number in [0, 1] saying how strained the host is.
//!
//! Each signal is in [0, 1]; τ = 1 − Π(1 − wᵢ·sᵢ). The product form means any
//! single fully-lit signal with weight 1 drives τ to 1 (a down daemon is as
//! bad as it gets), while several partial signals compound without ever
//! exceeding 1. Kept pure so that it can be tested without a daemon.

use std::collections::BTreeMap;

/// Restarts within this window count towards the `restarts` signal.
pub const RESTART_WINDOW_SECS: u64 = 600;

const RESTARTS_SATURATE: f64 = 5.0;
const LATENCY_FLOOR_MS: f64 = 50.0;
const LATENCY_SPAN_MS: f64 = 450.0;
const BACKLOG_SATURATE: f64 = 1024.0;

const W_DAEMON_DOWN: f64 = 1.0;
const W_RESTARTS: f64 = 0.5;
const W_IPC_LATENCY: f64 = 0.6;
const W_BACKLOG: f64 = 0.6;

/// What τ is computed from.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    pub daemon_running: bool,
    /// Restarts in the last [`RESTART_WINDOW_SECS`].
    pub recent_restarts: usize,
    /// The last IPC round trips in milliseconds (any order).
    pub latencies_ms: &'a [f64],
    /// IPC requests currently awaiting an answer.
    pub in_flight: usize,
}

/// τ and the signals it was made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Tension {
    pub value: f64,
    pub signals: BTreeMap<&'static str, f64>,
}

/// The 99th percentile (nearest rank) of `samples`, or `None` when empty.
pub fn p99(samples: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64) * 0.99).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

fn clamp01(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(0.0, 1.0)
    }
}

/// Compute τ from its inputs.
pub fn compute(inputs: &Inputs<'_>) -> Tension {
    let daemon_down = if inputs.daemon_running { 0.0 } else { 1.0 };
    let restarts = clamp01(inputs.recent_restarts as f64 / RESTARTS_SATURATE);
    let ipc_latency = p99(inputs.latencies_ms)
        .map(|p| clamp01((p - LATENCY_FLOOR_MS) / LATENCY_SPAN_MS))
        .unwrap_or(0.0);
    let backlog = clamp01(inputs.in_flight as f64 / BACKLOG_SATURATE);

    let weighted = [
        (W_DAEMON_DOWN, daemon_down),
        (W_RESTARTS, restarts),
        (W_IPC_LATENCY, ipc_latency),
        (W_BACKLOG, backlog),
    ];
    let calm: f64 = weighted.iter().map(|(w, s)| 1.0 - w * s).product();
    let signals = BTreeMap::from([
        ("daemon_down", daemon_down),
        ("restarts", restarts),
        ("ipc_latency", ipc_latency),
        ("backlog", backlog),
    ]);
    Tension {
        value: clamp01(1.0 - calm),
        signals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn calm_host_has_zero_tension() {
        let t = compute(&Inputs {
            daemon_running: true,
            recent_restarts: 0,
            latencies_ms: &[1.0, 2.0, 3.0],
            in_flight: 0,
        });
        assert!(close(t.value, 0.0), "{t:?}");
        assert!(t.signals.values().all(|s| *s == 0.0));
    }

    #[test]
    fn down_daemon_is_full_tension_whatever_else() {
        let t = compute(&Inputs {
            daemon_running: false,
            ..Default::default()
        });
        assert!(close(t.value, 1.0));
        assert_eq!(t.signals["daemon_down"], 1.0);
    }

    #[test]
    fn restarts_saturate_at_five() {
        let at = |n| {
            compute(&Inputs {
                daemon_running: true,
                recent_restarts: n,
                ..Default::default()
            })
        };
        assert!(close(at(1).signals["restarts"], 0.2));
        assert!(close(at(1).value, 0.1));
        assert!(close(at(5).value, 0.5));
        assert!(close(at(50).value, 0.5));
    }

    #[test]
    fn latency_signal_uses_p99_between_50_and_500_ms() {
        let mut samples = vec![1.0; 99];
        samples.push(275.0); // p99 of 100 samples is the 99th value: 1.0
        let t = compute(&Inputs {
            daemon_running: true,
            latencies_ms: &samples,
            ..Default::default()
        });
        assert!(close(t.signals["ipc_latency"], 0.0));

        let samples = vec![275.0; 10];
        let t = compute(&Inputs {
            daemon_running: true,
            latencies_ms: &samples,
            ..Default::default()
        });
        assert!(close(t.signals["ipc_latency"], 0.5));
        assert!(close(t.value, 0.3));

        let samples = vec![5000.0];
        let t = compute(&Inputs {
            daemon_running: true,
            latencies_ms: &samples,
            ..Default::default()
        });
        assert!(close(t.signals["ipc_latency"], 1.0));
    }

    #[test]
    fn signals_compound_without_exceeding_one() {
        let samples = vec![10_000.0; 256];
        let t = compute(&Inputs {
            daemon_running: true,
            recent_restarts: 10,
            latencies_ms: &samples,
            in_flight: 4096,
        });
        // 1 - (0.5 * 0.4 * 0.4)
        assert!(close(t.value, 0.92), "{t:?}");
        assert!(close(t.signals["backlog"], 1.0));
    }

    #[test]
    fn p99_handles_edges() {
        assert_eq!(p99(&[]), None);
        assert_eq!(p99(&[7.0]), Some(7.0));
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(p99(&v), Some(198.0));
        assert_eq!(p99(&[f64::NAN, 3.0]), Some(3.0));
    }
}
