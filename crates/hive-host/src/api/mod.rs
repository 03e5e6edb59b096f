//! The host's HTTP/WebSocket API.
//!
//! Handlers are thin: they take typed extractors, forward one operation to
//! the daemon through the supervisor's IPC link, and reshape the result.
//! Errors become responses in [`error`] only.

mod error;
mod events;
mod routes;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

use crate::ipc_client::IpcClient;
use crate::supervisor::{DaemonState, Supervisor};

/// Largest request body (a published or sent message) the API accepts.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Default time an IPC operation may take.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Dialing and direct sends wait for the network, not just the daemon.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub supervisor: Supervisor,
    /// Fires on SIGINT/SIGTERM; long-lived WebSockets close on it.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// The daemon's IPC link, or 503 when the daemon is not running.
    fn client(&self) -> Result<IpcClient, ApiError> {
        self.supervisor.client().ok_or_else(|| {
            let state = self.supervisor.snapshot().state;
            let state = match state {
                DaemonState::Starting => "starting",
                DaemonState::Running => "running",
                DaemonState::Restarting => "restarting",
                DaemonState::Stopped => "stopped",
            };
            ApiError::DaemonDown(state.to_owned())
        })
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s (JSON error bodies).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
struct JsonBody<T>(T);

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
struct Path<T>(T);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/status", get(routes::status))
        .route("/api/peers", get(routes::peers))
        .route("/api/dial", post(routes::dial))
        .route("/api/topics", get(routes::topics))
        .route("/api/topics/{topic}/subscribe", post(routes::subscribe))
        .route("/api/topics/{topic}/unsubscribe", post(routes::unsubscribe))
        .route("/api/topics/{topic}/publish", post(routes::publish))
        .route("/api/peers/{peer_id}/send", post(routes::send))
        .route("/api/events", get(events::events))
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}
