//! The host's HTTP/WebSocket API.
//!
//! Handlers are thin: they take typed extractors, forward one operation to
//! the daemon through the supervisor's IPC link, and reshape the result.
//! Errors become responses in [`error`] only.

pub mod auth;
mod dashboard;
mod error;
mod events;
pub mod guard;
mod nodes;
mod openapi;
mod routes;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
use nodes::Scoped;

use std::sync::Arc;

use crate::ipc_client::IpcClient;
use crate::outbox::Outbox;
use crate::supervisor::Supervisor;

/// Largest request body (a published or sent message) the API accepts.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Default time an IPC operation may take.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Dialing and direct sends wait for the network, not just the daemon.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared by every handler. `supervisor`, `outbox` and `node_id` are the
/// first node's; handlers that take [`Scoped`] get the addressed node's.
#[derive(Clone)]
pub struct AppState {
    pub supervisor: Supervisor,
    pub node_id: String,
    /// Every node of this host.
    pub hive: crate::hive::Hive,
    /// Fires on SIGINT/SIGTERM; long-lived WebSockets close on it.
    pub shutdown: CancellationToken,
    /// Publishes and direct messages go through the durable outbox.
    pub outbox: Outbox,
    pub limits: Arc<ApiLimits>,
}

/// Limits and policies of the API, from the command line.
#[derive(Debug, Clone)]
pub struct ApiLimits {
    /// The API tokens and their scopes; none: the API needs no token.
    pub tokens: auth::Tokens,
    pub max_message_size: usize,
    pub direct_ttl_ms: i64,
    pub publish_ttl_ms: i64,
    /// Outbox depth beyond which publish and send answer 503.
    pub max_outbox: u64,
    /// Concurrent event-stream clients beyond which new ones get 503.
    pub max_ws_clients: i64,
    /// Publish bare payloads unless a request asks for the envelope.
    pub plain_pubsub: bool,
    /// The names and web origins the API answers to.
    pub guard: guard::Policy,
}

/// Most bytes in a topic name.
pub const MAX_TOPIC_LEN: usize = 256;

/// Topic names: 1 to 256 bytes, no control characters.
fn check_topic(topic: &str) -> Result<(), ApiError> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(ApiError::BadRequest(format!(
            "a topic name must be 1 to {MAX_TOPIC_LEN} bytes long"
        )));
    }
    if topic.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "a topic name must not contain control characters".into(),
        ));
    }
    Ok(())
}

impl AppState {
    /// τ of the addressed node, counting the nodes below it.
    fn tension(&self) -> crate::tension::Tension {
        match self.hive.get(&self.node_id) {
            Some(node) => self.hive.tension(&node),
            None => self.supervisor.tension(),
        }
    }

    /// The daemon's IPC link, or 503 when the daemon is not running.
    fn client(&self) -> Result<IpcClient, ApiError> {
        self.supervisor.client().ok_or_else(|| {
            ApiError::DaemonDown(self.supervisor.snapshot().state.as_str().to_owned())
        })
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s (JSON error bodies).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
struct JsonBody<T>(T);

/// `axum::extract::Query` whose rejections are [`ApiError`]s (a bad query
/// string gets the same JSON error body as any other bad input).
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
struct Query<T>(T);

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
struct Path<T>(T);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::app_js))
        .route("/style.css", get(dashboard::style_css))
        .route("/api/status", get(routes::status))
        .route("/api/whoami", get(auth::whoami))
        .route("/api/peers", get(routes::peers))
        .route("/api/dial", post(routes::dial))
        .route("/api/topics", get(routes::topics))
        .route("/api/topics/{topic}/subscribe", post(routes::subscribe))
        .route("/api/topics/{topic}/unsubscribe", post(routes::unsubscribe))
        .route("/api/topics/{topic}/publish", post(routes::publish))
        .route("/api/peers/{peer_id}/send", post(routes::send))
        .route("/api/events", get(events::events))
        .route("/api/messages", get(events::messages))
        .route("/api/outbox", get(routes::outbox))
        .route("/api/tension", get(routes::tension))
        .route("/api/reproduce", post(nodes::reproduce))
        .route("/api/nodes", get(nodes::list).post(nodes::spawn))
        .route("/api/nodes/{id}", get(nodes::show).delete(nodes::delete))
        .route("/healthz", get(routes::healthz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs_page))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check,
        ))
        .layer(axum::middleware::from_fn(crate::trace::request_id))
        .with_state(state)
}

/// The router, wrapped so that `/api/nodes/{id}/...` reaches the node-level
/// routes (the rewrite must happen before routing, hence outside the router).
pub fn with_node_paths(
    router: Router,
) -> tower::util::MapRequest<Router, fn(axum::extract::Request) -> axum::extract::Request> {
    tower::ServiceExt::map_request(router, nodes::rewrite_node_path as fn(_) -> _)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}
