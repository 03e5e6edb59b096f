//! Prometheus metrics of the host, served as text on `GET /metrics`.
//!
//! The metric handles are cheap clones of shared atomics: the supervisor and
//! the API update them where things happen, and the registry only reads.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ipc_stats::IpcStats;
use crate::state::DaemonState;
use crate::tension::Tension;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum StateValue {
    starting,
    running,
    restarting,
    stopped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: StateValue,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabel {
    direction: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabel {
    signal: String,
}

/// Every metric the host exports.
pub struct Metrics {
    registry: Registry,
    pub published: Counter,
    pub received: Counter,
    pub direct_in: Counter,
    pub direct_out: Counter,
    pub restarts: Counter,
    pub peers: Gauge,
    pub ws_clients: Gauge,
    /// Messages accepted by the API and not yet acknowledged by the daemon.
    pub outbox_depth: Gauge,
    /// Inbound messages dropped because their id was already stored.
    pub duplicates_dropped: Counter,
    /// Event-stream clients disconnected for falling behind.
    pub slow_clients_dropped: Counter,
    /// Holes seen in the daemon's numbered messages (see `inbound.rs`).
    pub inbound_gaps: Counter,
    /// Messages fetched from the daemon's history to fill them.
    pub inbound_repaired: Counter,
    /// The daemon's catching up with its peers.
    pub catch_up: crate::catch_up::CatchUpMetrics,
    daemon_state: Family<StateLabel, Gauge>,
    messages: Family<MessageLabel, Counter>,
    daemon_rss: Gauge,
    daemon_cpu: Gauge<f64, AtomicU64>,
    tension: Gauge<f64, AtomicU64>,
    signals: Family<SignalLabel, Gauge<f64, AtomicU64>>,
    /// Refusals of remote peers and inbox evictions (`peer_guard`).
    pub guard: crate::peer_guard::GuardMetrics,
}

impl Metrics {
    pub fn new(ipc: &IpcStats) -> Self {
        let mut registry = Registry::with_prefix("hive");
        // The per-kind counters are handles into one labelled family, so
        // that both spellings always agree.
        let messages = Family::<MessageLabel, Counter>::default();
        let by = |direction, kind| {
            messages
                .get_or_create(&MessageLabel { direction, kind })
                .clone()
        };
        let m = Metrics {
            published: by("out", "pubsub"),
            received: by("in", "pubsub"),
            direct_in: by("in", "direct"),
            direct_out: by("out", "direct"),
            messages: messages.clone(),
            daemon_rss: Gauge::default(),
            daemon_cpu: Gauge::default(),
            restarts: Counter::default(),
            peers: Gauge::default(),
            ws_clients: Gauge::default(),
            outbox_depth: Gauge::default(),
            duplicates_dropped: Counter::default(),
            slow_clients_dropped: Counter::default(),
            inbound_gaps: Counter::default(),
            inbound_repaired: Counter::default(),
            catch_up: Default::default(),
            daemon_state: Family::default(),
            tension: Gauge::default(),
            signals: Family::default(),
            guard: Default::default(),
            registry: Registry::default(),
        };
        register_delivery(&mut registry, &m);
        register_daemon(&mut registry, &m, ipc);
        register_clients(&mut registry, &m);
        m.catch_up.register(&mut registry);
        m.guard.register(&mut registry);
        Metrics { registry, ..m }
    }

    pub fn set_state(&self, state: DaemonState) {
        for (value, s) in [
            (StateValue::starting, DaemonState::Starting),
            (StateValue::running, DaemonState::Running),
            (StateValue::restarting, DaemonState::Restarting),
            (StateValue::stopped, DaemonState::Stopped),
        ] {
            self.daemon_state
                .get_or_create(&StateLabel { state: value })
                .set(i64::from(s == state));
        }
    }

    pub fn set_tension(&self, tension: &Tension) {
        self.tension.set(tension.value);
        for (name, value) in &tension.signals {
            self.signals
                .get_or_create(&SignalLabel {
                    signal: (*name).to_owned(),
                })
                .set(*value);
        }
    }

    /// Read the daemon's memory and CPU from /proc (zero when not running).
    pub fn set_process(&self, pid: Option<u32>) {
        let usage = pid.and_then(read_proc);
        let (rss, cpu) = usage.unwrap_or((0, 0.0));
        self.daemon_rss.set(rss as i64);
        self.daemon_cpu.set(cpu);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `(resident bytes, CPU seconds)` of a process, from /proc.
fn read_proc(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces.
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((rss_kib * 1024, (utime + stime) as f64 / ticks))
}

/// Messages in and out, the outbox, and the inbound path's repair work.
fn register_delivery(registry: &mut Registry, m: &Metrics) {
    registry.register(
        "outbox_depth",
        "Messages accepted by the API and not yet acknowledged by the daemon",
        m.outbox_depth.clone(),
    );
    registry.register(
        "inbound_duplicates_dropped",
        "Inbound messages dropped because their id was already stored",
        m.duplicates_dropped.clone(),
    );
    registry.register(
        "inbound_gaps",
        "Holes seen in the daemon's numbered messages (a queue dropped, the host or daemon restarted)",
        m.inbound_gaps.clone(),
    );
    registry.register(
        "inbound_repaired",
        "Messages fetched from the daemon's history to fill holes",
        m.inbound_repaired.clone(),
    );
    registry.register(
        "messages_published",
        "Messages published through the API",
        m.published.clone(),
    );
    registry.register(
        "messages_received",
        "Gossipsub messages received from the daemon",
        m.received.clone(),
    );
    registry.register(
        "direct_messages_in",
        "Direct messages received from peers",
        m.direct_in.clone(),
    );
    registry.register(
        "direct_messages_out",
        "Direct messages sent and acknowledged",
        m.direct_out.clone(),
    );
    registry.register(
        "messages",
        "Messages by direction (in, out) and kind (pubsub, direct)",
        m.messages.clone(),
    );
}

/// The daemon: its IPC latency, restarts, state, peers and resources.
fn register_daemon(registry: &mut Registry, m: &Metrics, ipc: &IpcStats) {
    registry.register(
        "ipc_request_duration_seconds",
        "Round-trip time of IPC requests to the daemon, by op",
        ipc.histogram(),
    );
    registry.register(
        "daemon_restarts",
        "Times the daemon was restarted",
        m.restarts.clone(),
    );
    registry.register(
        "daemon_state",
        "1 for the daemon's current supervision state",
        m.daemon_state.clone(),
    );
    registry.register("peers", "Connected peers", m.peers.clone());
    registry.register(
        "daemon_resident_memory_bytes",
        "Resident memory of the daemon process (VmRSS from /proc)",
        m.daemon_rss.clone(),
    );
    registry.register(
        "daemon_cpu_seconds",
        "CPU time (user + system) the daemon process has used, from /proc",
        m.daemon_cpu.clone(),
    );
}

/// Event-stream clients and the tension.
fn register_clients(registry: &mut Registry, m: &Metrics) {
    registry.register(
        "event_clients_dropped_slow",
        "Event-stream clients disconnected for falling behind",
        m.slow_clients_dropped.clone(),
    );
    registry.register(
        "websocket_clients",
        "Open /api/events WebSocket connections",
        m.ws_clients.clone(),
    );
    registry.register(
        "tension",
        "Tension: 1 - prod(1 - w*s) over the signals",
        m.tension.clone(),
    );
    registry.register(
        "tension_signal",
        "Each signal feeding the tension, in [0, 1]",
        m.signals.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu() {
        // Burn a little CPU so that the figure is not zero.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let (rss, cpu) = read_proc(std::process::id()).expect("/proc readable");
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(cpu >= 0.0);
    }

    #[test]
    fn every_family_is_exposed() {
        let stats = IpcStats::default();
        stats
            .histogram()
            .get_or_create(&crate::ipc_stats::OpLabel {
                op: "status".into(),
            })
            .observe(0.001);
        let m = Metrics::new(&stats);
        m.published.inc();
        m.set_process(Some(std::process::id()));
        let text = m.encode().unwrap();
        for family in [
            "hive_ipc_request_duration_seconds",
            "hive_messages_total{direction=\"out\",kind=\"pubsub\"} 1",
            "hive_messages_published_total 1",
            "hive_outbox_depth",
            "hive_daemon_restarts",
            "hive_daemon_resident_memory_bytes",
            "hive_daemon_cpu_seconds",
            "hive_peers",
            "hive_websocket_clients",
            "hive_tension",
        ] {
            assert!(text.contains(family), "{family} missing from\n{text}");
        }
    }
}
