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

use crate::ipc_client::IpcStats;
use crate::supervisor::DaemonState;
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
    daemon_state: Family<StateLabel, Gauge>,
    tension: Gauge<f64, AtomicU64>,
    signals: Family<SignalLabel, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    pub fn new(ipc: &IpcStats) -> Self {
        let mut registry = Registry::with_prefix("hive");
        let m = Metrics {
            published: Counter::default(),
            received: Counter::default(),
            direct_in: Counter::default(),
            direct_out: Counter::default(),
            restarts: Counter::default(),
            peers: Gauge::default(),
            ws_clients: Gauge::default(),
            outbox_depth: Gauge::default(),
            duplicates_dropped: Counter::default(),
            slow_clients_dropped: Counter::default(),
            daemon_state: Family::default(),
            tension: Gauge::default(),
            signals: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ipc_request_duration_seconds",
            "Round-trip time of IPC requests to the daemon, by op",
            ipc.histogram(),
        );
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
            "event_clients_dropped_slow",
            "Event-stream clients disconnected for falling behind",
            m.slow_clients_dropped.clone(),
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

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
