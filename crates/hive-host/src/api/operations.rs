//! The operators' routes: `/healthz`, `/api/tension` and `/metrics`.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hive_proto::Op;
use serde::Serialize;

use super::{ApiError, NodeCtx};
use crate::state::DaemonState;

/// 200 only while the daemon is running: load balancers and tests use it as
/// "the node is usable".
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The daemon is running"), (status = 503, description = "It is not")))]
pub async fn healthz(state: NodeCtx) -> (StatusCode, &'static str) {
    if state.supervisor.snapshot().state == DaemonState::Running
        && state.supervisor.client().is_some()
    {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "daemon not running")
    }
}

/// `GET /api/tension`: τ now, its signals, and its history (one sample per
/// 5 s over the last 15 minutes, oldest first).
#[utoipa::path(get, path = "/tension", tag = "operations",
    responses((status = 200, description = "τ, its signals and its 15-minute history", body = super::operations::TensionNow)))]
pub async fn tension(state: NodeCtx) -> Json<TensionNow> {
    let now = state.tension();
    let history = state
        .supervisor
        .tension_history()
        .into_iter()
        .map(|(t, value)| TensionSample { t, value })
        .collect();
    Json(TensionNow {
        value: now.value,
        signals: now.signals,
        history,
    })
}

/// `GET /api/tension`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TensionNow {
    value: f64,
    #[schema(value_type = std::collections::BTreeMap<String, f64>)]
    signals: std::collections::BTreeMap<&'static str, f64>,
    /// One sample per 5 s over the last 15 minutes, oldest first.
    history: Vec<TensionSample>,
}

/// One point of τ's history.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TensionSample {
    /// Unix time in milliseconds.
    t: u64,
    value: f64,
}

/// How long `/metrics` waits for the daemon's own libp2p metrics.
const DAEMON_METRICS_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /metrics`: the host's families, then the daemon's libp2p families
/// (fetched over the IPC), as one OpenMetrics document.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text: the host's families, then the daemon's libp2p ones",
               content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
pub async fn metrics(state: NodeCtx) -> Result<Response, ApiError> {
    let sup = &state.supervisor;
    let tension = state.tension();
    sup.metrics().set_tension(&tension);
    sup.metrics().set_process(sup.snapshot().pid);
    let mut text = sup
        .metrics()
        .encode()
        .map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
    let daemon = match sup.client() {
        Some(client) => client
            .request_typed::<hive_proto::MetricsResult>(Op::Metrics, DAEMON_METRICS_TIMEOUT)
            .await
            .ok(),
        None => None,
    };
    if let Some(daemon) = daemon {
        // One document has one `# EOF`, at its end.
        let host_part = text.trim_end().strip_suffix("# EOF").unwrap_or(&text);
        let daemon_part = daemon.text.trim_end();
        let daemon_part = daemon_part
            .strip_suffix("# EOF")
            .unwrap_or(daemon_part)
            .trim_end();
        text = format!(
            "{}{}\n# EOF\n",
            host_part,
            daemon_part.trim_start_matches('\n')
        );
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
