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
mod operations;
#[cfg(test)]
mod router_tests;
mod routes;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use axum::handler::Handler;
use axum::middleware::from_fn_with_state;
pub use error::ApiError;
pub use nodes::NodeCtx;

use std::sync::Arc;

/// Largest request body (a published or sent message) the API accepts.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Default time an IPC operation may take.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Dialing and direct sends wait for the network, not just the daemon.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares, whichever node a request addresses: global
/// things only. The addressed node comes from the [`NodeCtx`] extractor.
#[derive(Clone)]
pub struct AppState {
    /// Every node of this host.
    pub hive: crate::hive::Hive,
    /// Fires on SIGINT/SIGTERM; long-lived WebSockets close on it.
    pub shutdown: CancellationToken,
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

/// The whole API. Routes come in three groups, each with its own access
/// rule (see `auth`): public ones (the dashboard's files, `/healthz`, the
/// API's description), the node-level routes of [`node_routes`] — mounted
/// once at `/api` for the first node and once under `/api/nodes/{id}` for
/// any node — and the hive's own routes (the node list, `/metrics`).
pub fn router(state: AppState) -> Router {
    let public = Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::app_js))
        .route("/style.css", get(dashboard::style_css))
        .route("/healthz", get(operations::healthz))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs_page));
    let hive = Router::new()
        .route("/api/nodes", get(nodes::list).post(nodes::spawn))
        .route("/api/nodes/{id}", get(nodes::show).delete(nodes::delete))
        .route("/metrics", get(operations::metrics))
        .route_layer(from_fn_with_state(state.clone(), auth::admin));
    let node_metrics = Router::new()
        .route("/metrics", get(operations::metrics))
        .route_layer(from_fn_with_state(state.clone(), auth::admin));
    // Unknown paths need a token too: which paths exist is no business of a
    // caller without one.
    let not_found = Handler::layer(not_found, from_fn_with_state(state.clone(), auth::admin));
    public
        .merge(hive)
        .nest("/api", node_routes(&state))
        .nest("/api/nodes/{id}", node_routes(&state).merge(node_metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), guard::check))
        .layer(axum::middleware::from_fn(crate::trace::request_id))
        .with_state(state)
}

/// The routes of one node, written once. Handlers find their node with the
/// [`NodeCtx`] extractor: the `{id}` of the mount, or the first node.
fn node_routes(state: &AppState) -> Router<AppState> {
    let writes = Router::new()
        .route("/topics/{topic}/subscribe", post(routes::subscribe))
        .route("/topics/{topic}/unsubscribe", post(routes::unsubscribe))
        .route("/topics/{topic}/publish", post(routes::publish))
        .route("/peers/{peer_id}/send", post(routes::send))
        .route_layer(from_fn_with_state(state.clone(), auth::write));
    let whoami = Router::new()
        .route("/whoami", get(auth::whoami))
        .route_layer(from_fn_with_state(state.clone(), auth::any_token));
    Router::new()
        .route("/status", get(routes::status))
        .route("/peers", get(routes::peers))
        .route("/dial", post(routes::dial))
        .route("/topics", get(routes::topics))
        .route("/events", get(events::events))
        .route("/messages", get(events::messages))
        .route("/outbox", get(routes::outbox))
        .route("/tension", get(operations::tension))
        .route("/reproduce", post(nodes::reproduce))
        .route_layer(from_fn_with_state(state.clone(), auth::admin))
        .merge(writes)
        .merge(whoami)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}
