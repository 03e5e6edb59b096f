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
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;
use utoipa_axum::{router::OpenApiRouter, routes};

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

/// Who may call a group of routes (see `auth`).
#[derive(Clone, Copy)]
enum Access {
    /// Any valid token with the admin scope (or no token configured).
    Admin,
    /// A token that may publish and send.
    Write,
    /// Any valid token.
    AnyToken,
}

/// Puts a group of routes behind its access rule; [`openapi::document`]
/// builds the same routes with none, since only their description counts.
type Guard<'a> = &'a dyn Fn(OpenApiRouter<AppState>, Access) -> OpenApiRouter<AppState>;

/// The whole API. Routes come in three groups, each with its own access
/// rule (see `auth`): public ones (the dashboard's files, `/healthz`, the
/// API's description), the node-level routes of [`node_routes`] — mounted
/// once at `/api` for the first node and once under `/api/nodes/{id}` for
/// any node — and the hive's own routes (the node list, `/metrics`).
///
/// Every route but the dashboard's files and the description itself is
/// added with `routes!`, which takes its path and method from the
/// handler's `#[utoipa::path]`: the OpenAPI document is what the router
/// serves, by construction (audit row 56).
pub fn router(state: AppState) -> Router {
    let guard = |group: OpenApiRouter<AppState>, access: Access| {
        let state = state.clone();
        match access {
            Access::Admin => group.route_layer(from_fn_with_state(state, auth::admin)),
            Access::Write => group.route_layer(from_fn_with_state(state, auth::write)),
            Access::AnyToken => group.route_layer(from_fn_with_state(state, auth::any_token)),
        }
    };
    let (api, document) = documented(&guard).split_for_parts();
    let document = Arc::new(openapi::finish(document));
    let public = Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::app_js))
        .route("/style.css", get(dashboard::style_css))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/docs", get(openapi::docs_page))
        .layer(axum::Extension(document));
    // Unknown paths need a token too: which paths exist is no business of a
    // caller without one.
    let not_found = Handler::layer(not_found, from_fn_with_state(state.clone(), auth::admin));
    public
        .merge(api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), guard::check))
        .layer(axum::middleware::from_fn(crate::trace::request_id))
        .with_state(state)
}

/// Every documented route, each group behind `guard`.
fn documented(guard: Guard) -> OpenApiRouter<AppState> {
    let hive = OpenApiRouter::new()
        .routes(routes!(nodes::list, nodes::spawn))
        .routes(routes!(nodes::show, nodes::delete))
        .routes(routes!(operations::metrics));
    let node_metrics = OpenApiRouter::new().routes(routes!(operations::metrics));
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(operations::healthz))
        .merge(guard(hive, Access::Admin))
        .nest("/api", node_routes(guard))
        .nest(
            "/api/nodes/{id}",
            node_routes(guard).merge(guard(node_metrics, Access::Admin)),
        )
}

/// The routes of one node, written once. Handlers find their node with the
/// [`NodeCtx`] extractor: the `{id}` of the mount, or the first node.
fn node_routes(guard: Guard) -> OpenApiRouter<AppState> {
    let writes = OpenApiRouter::new()
        .routes(routes!(routes::subscribe))
        .routes(routes!(routes::unsubscribe))
        .routes(routes!(routes::publish))
        .routes(routes!(routes::send));
    let whoami = OpenApiRouter::new().routes(routes!(auth::whoami));
    let reads = OpenApiRouter::new()
        .routes(routes!(routes::status))
        .routes(routes!(routes::peers))
        .routes(routes!(routes::dial))
        .routes(routes!(routes::topics))
        .routes(routes!(events::events))
        .routes(routes!(events::messages))
        .routes(routes!(routes::outbox))
        .routes(routes!(operations::tension))
        .routes(routes!(nodes::reproduce));
    guard(reads, Access::Admin)
        .merge(guard(writes, Access::Write))
        .merge(guard(whoami, Access::AnyToken))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}
