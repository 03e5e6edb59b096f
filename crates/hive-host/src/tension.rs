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
const W_OUTBOX: f64 = 0.5;
const W_DROPPED_CLIENTS: f64 = 0.3;
const W_PEERS: f64 = 0.25;
const W_CHILDREN: f64 = 0.5;
const W_CATCHING_UP: f64 = 0.3;
/// Catch-ups waiting or running at which the signal saturates (the daemon
/// runs four at a time).
const CATCHING_UP_SATURATE: f64 = 4.0;
const W_REFUSALS: f64 = 0.3;
/// Refusals of remote peers (and inbox evictions) within
/// `peer_guard::REFUSAL_WINDOW` at which the `peer_refusals` signal saturates.
const REFUSALS_SATURATE: f64 = 1000.0;

/// Outbox rows waiting for the daemon at which the signal saturates.
const OUTBOX_SATURATE: f64 = 10_000.0;
/// Slow clients dropped within the window at which the signal saturates.
const DROPPED_SATURATE: f64 = 3.0;
/// Slow-client drops within this window count towards `dropped_clients`.
pub const DROP_WINDOW_SECS: u64 = 300;

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
    /// Messages accepted by the API and not yet handed to the network.
    pub outbox_depth: u64,
    /// Event-stream clients dropped for falling behind, within
    /// [`DROP_WINDOW_SECS`].
    pub dropped_clients: usize,
    /// Connected peers, and how many the operator wants (0 = no target).
    pub peers: usize,
    pub peer_target: usize,
    /// Child nodes this host supervises, and how many of them are not running.
    pub children: usize,
    pub children_down: usize,
    /// Catch-ups with peers the daemon has waiting or running: it knows it
    /// may be behind.
    pub catching_up: usize,
    /// Remote peers' messages and requests refused over their rate, and
    /// inbox messages evicted over its byte budget, within the last minute.
    pub peer_refusals: u64,
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
    let outbox = clamp01(inputs.outbox_depth as f64 / OUTBOX_SATURATE);
    let dropped_clients = clamp01(inputs.dropped_clients as f64 / DROPPED_SATURATE);
    let peers_missing = if inputs.peer_target == 0 || !inputs.daemon_running {
        0.0
    } else {
        clamp01(inputs.peer_target.saturating_sub(inputs.peers) as f64 / inputs.peer_target as f64)
    };
    let children_down = if inputs.children == 0 {
        0.0
    } else {
        clamp01(inputs.children_down as f64 / inputs.children as f64)
    };

    let catching_up = clamp01(inputs.catching_up as f64 / CATCHING_UP_SATURATE);

    let peer_refusals = clamp01(inputs.peer_refusals as f64 / REFUSALS_SATURATE);
    let weighted = [
        (W_DAEMON_DOWN, daemon_down),
        (W_RESTARTS, restarts),
        (W_IPC_LATENCY, ipc_latency),
        (W_BACKLOG, backlog),
        (W_OUTBOX, outbox),
        (W_DROPPED_CLIENTS, dropped_clients),
        (W_PEERS, peers_missing),
        (W_CHILDREN, children_down),
        (W_CATCHING_UP, catching_up),
        (W_REFUSALS, peer_refusals),
    ];
    let calm: f64 = weighted.iter().map(|(w, s)| 1.0 - w * s).product();
    let signals = BTreeMap::from([
        ("daemon_down", daemon_down),
        ("restarts", restarts),
        ("ipc_latency", ipc_latency),
        ("backlog", backlog),
        ("outbox", outbox),
        ("dropped_clients", dropped_clients),
        ("peers_below_target", peers_missing),
        ("children_down", children_down),
        ("catching_up", catching_up),
        ("peer_refusals", peer_refusals),
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
            ..Default::default()
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
            ..Default::default()
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

#[cfg(test)]
mod more_signals {
    use super::*;

    fn running() -> Inputs<'static> {
        Inputs {
            daemon_running: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_node_without_its_target_of_peers_is_strained_but_not_broken() {
        let t = compute(&Inputs {
            peer_target: 2,
            peers: 0,
            ..running()
        });
        assert!((t.signals["peers_below_target"] - 1.0).abs() < 1e-9);
        // The documented weight of peers_below_target, 0.25.
        assert!((t.value - 0.25).abs() < 1e-9);
        let met = compute(&Inputs {
            peer_target: 2,
            peers: 3,
            ..running()
        });
        assert_eq!(met.value, 0.0);
    }

    #[test]
    fn outbox_dropped_clients_and_children_compound_below_one() {
        let t = compute(&Inputs {
            outbox_depth: 5_000,
            dropped_clients: 3,
            children: 4,
            children_down: 2,
            ..running()
        });
        assert!((t.signals["outbox"] - 0.5).abs() < 1e-9);
        assert_eq!(t.signals["dropped_clients"], 1.0);
        assert!((t.signals["children_down"] - 0.5).abs() < 1e-9);
        // The documented weights (docs/01_ARCHITECTURE.md, "System
        // tension"), as literals: outbox 0.5, dropped clients 0.3, children
        // 0.5.
        let calm = (1.0 - 0.5 * 0.5) * (1.0 - 0.3) * (1.0 - 0.5 * 0.5);
        assert!((t.value - (1.0 - calm)).abs() < 1e-9);
        assert!(t.value < 1.0);
    }

    #[test]
    fn refused_peers_strain_but_never_break_a_node() {
        let at = |n| {
            compute(&Inputs {
                peer_refusals: n,
                ..running()
            })
        };
        assert_eq!(at(0).value, 0.0);
        assert!((at(500).signals["peer_refusals"] - 0.5).abs() < 1e-9);
        let flooded = at(1_000_000);
        assert_eq!(flooded.signals["peer_refusals"], 1.0);
        assert!((flooded.value - 0.3).abs() < 1e-9, "{flooded:?}");
    }
}
