//! `GET /openapi.json` and a readable page at `/docs`.
//!
//! The document is built by `utoipa` from the `#[utoipa::path]` attributes
//! on the real handlers (their doc comments become the summaries). The
//! host's own request and response types (status, dial, subscription, send,
//! whoami, nodes) derive their schemas where they are defined; the ones
//! that live in `hive-proto` (which must not depend on an HTTP
//! documentation crate) or are built as JSON values are described here as
//! schemas of their own. A test in `tests/tests/http_api.rs`
//! calls every documented operation against a real host, so a route that is
//! documented but not served fails CI.

use axum::response::{Html, IntoResponse};
use axum::Json;
use utoipa::OpenApi;

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ErrorBody {
    /// Stable error code, e.g. `bad_args`, `unauthorized`, `daemon_unavailable`.
    code: String,
    message: String,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ErrorResponse {
    error: ErrorBody,
}

/// Connections the daemon keeps: at least `low`, trimmed past `high`, new
/// ones spared for `grace_secs`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ConnectionWatermarks {
    low: u64,
    high: u64,
    grace_secs: u64,
}

/// How the daemon catches up on what it missed (`/hive/sync/1.0.0`),
/// counted since it started.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct SyncStatus {
    /// Catch-ups with peers waiting or running: above 0 the node knows it
    /// may be behind.
    behind: u64,
    /// Messages fetched from peers that passed verification (the history
    /// keeps the new ones and drops the rest as duplicates).
    fetched: u64,
    /// Messages peers offered without their author's valid signature.
    rejected: u64,
    /// Catch-ups that failed (no answer, or a broken exchange).
    failed: u64,
    /// Pages of history served to other nodes.
    served: u64,
    /// Requests from other nodes refused (too many at once).
    refused: u64,
    /// The peers caught up with most recently, newest first (at most 32).
    peers: Vec<PeerSync>,
}

/// Whether others can dial the node directly, and its relay slots.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ReachStatus {
    /// `public` or `private` when forced, otherwise `auto`.
    mode: String,
    /// Whether the node counts itself as directly dialable now.
    reachable: bool,
    /// AutoNAT's verdict (`public`, `private`, `unknown`); absent when off.
    autonat: Option<String>,
    /// Addresses others confirmed (external, not relayed).
    confirmed_addrs: Vec<String>,
    relays: Vec<RelaySlot>,
}

/// A slot on one relay.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct RelaySlot {
    peer_id: String,
    /// `reserved`, `reserving`, `refused` (asked again later) or `none`.
    state: String,
    /// The relayed address announced while reserved.
    addr: Option<String>,
}

/// The last catch-up with one peer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct PeerSync {
    peer_id: String,
    /// When it ended, Unix milliseconds.
    last_ms: i64,
    /// Messages fetched from this peer that passed verification.
    fetched: u64,
    /// Messages refused from this peer.
    rejected: u64,
}

/// How the host's store keeps up with its daemon's numbered history.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct Inbound {
    /// Last history number stored.
    position: u64,
    /// Holes seen (a queue dropped events, the host or daemon restarted).
    gaps: u64,
    /// Messages fetched from the daemon's history to fill them.
    repaired: u64,
    /// Messages pruned from the daemon's history before the host stored them.
    lost: u64,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct Peer {
    peer_id: String,
    /// Where the peer can be dialed: the addresses it announced.
    addrs: Vec<String>,
    /// The remote address of each open connection (circuits end in `/p2p-circuit`).
    connections: Vec<String>,
    /// Last round trip measured by libp2p ping; absent before the first.
    rtt_ms: Option<f64>,
    /// Seconds since the first of the current connections was established.
    connected_secs: Option<f64>,
    /// The peer's gossipsub score: 0 for an honest peer; below -80 it is
    /// graylisted (what it sends over gossipsub is ignored).
    gossip_score: Option<f64>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct PeerIdBody {
    peer_id: String,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct Topic {
    topic: String,
    peers: u64,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct MessageId {
    id: String,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct History {
    /// Event frames, as `/api/events` sends them.
    messages: Vec<serde_json::Value>,
    /// Pass back as `after` for the next page.
    cursor: u64,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct Outbox {
    depth: u64,
    pending: Vec<serde_json::Value>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct TensionSample {
    /// Unix time in milliseconds.
    t: u64,
    value: f64,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct TensionNow {
    value: f64,
    signals: std::collections::BTreeMap<String, f64>,
    /// One sample per 5 s over the last 15 minutes, oldest first.
    history: Vec<TensionSample>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct SpawnRequest {
    /// Parent node id (default: the first node, `n0`).
    parent: Option<String>,
    /// 1 to 64 (default 1).
    count: Option<u32>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ReproduceRequest {
    /// 1 to 64 (default 1).
    count: Option<u32>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct ReproduceAnswer {
    /// True when the host starts the children (always, under a host).
    delegated: bool,
    children: Vec<serde_json::Value>,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct Stopped {
    /// Ids of the nodes stopped, deepest first.
    stopped: Vec<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Hive host API", description = "The HTTP/WebSocket API of `hive up`. Top-level routes address the first node; every node-level route is also served under `/api/nodes/{id}/...` for any node of the hive."),
    paths(super::routes::status, super::routes::peers, super::routes::dial, super::routes::topics, super::routes::subscribe, super::routes::unsubscribe, super::routes::publish, super::routes::send, super::events::messages, super::routes::outbox, super::events::events, super::routes::healthz, super::routes::metrics,
          super::routes::tension, super::auth::whoami, super::nodes::reproduce, super::nodes::list, super::nodes::spawn, super::nodes::show, super::nodes::delete),
    modifiers(&BearerAuth, &PerNode),
)]
struct ApiDoc;

/// Repeats every node-level operation under `/api/nodes/{id}`, where the
/// host serves it for that node.
struct PerNode;

impl utoipa::Modify for PerNode {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::Required;
        let node_level: Vec<(String, utoipa::openapi::PathItem)> = openapi
            .paths
            .paths
            .iter()
            .filter(|(path, _)| {
                (path.starts_with("/api/")
                    && !path.starts_with("/api/nodes")
                    && path.as_str() != "/api/whoami")
                    || path.as_str() == "/metrics"
            })
            .map(|(path, item)| {
                let rest = path.strip_prefix("/api").unwrap_or(path);
                (format!("/api/nodes/{{id}}{rest}"), item.clone())
            })
            .collect();
        let unknown_node = utoipa::openapi::ResponseBuilder::new()
            .description("No node with this id in the hive (`GET /api/nodes` lists them)")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name(
                        "ErrorResponse",
                    )))
                    .build(),
            )
            .build();
        for (path, mut item) in node_level {
            let id = ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("Node id, e.g. n1"))
                .schema(Some(utoipa::openapi::schema::Object::with_type(
                    utoipa::openapi::schema::Type::String,
                )))
                .build();
            for op in [item.get.as_mut(), item.post.as_mut(), item.delete.as_mut()]
                .into_iter()
                .flatten()
            {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .insert(0, id.clone());
                if let Some(op_id) = op.operation_id.as_mut() {
                    op_id.push_str("_of_node");
                }
                op.responses
                    .responses
                    .entry("404".to_owned())
                    .or_insert_with(|| unknown_node.clone().into());
            }
            openapi.paths.paths.insert(path, item);
        }
    }
}

/// Documents the optional bearer token.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI 3 document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn openapi_json() -> impl IntoResponse {
    Json(document())
}

/// A plain, dependency-free page listing every operation of the document.
pub async fn docs_page() -> Html<String> {
    let doc = document();
    let mut rows = String::new();
    for (path, item) in doc.paths.paths.iter() {
        let ops = [
            ("GET", item.get.as_ref()),
            ("POST", item.post.as_ref()),
            ("DELETE", item.delete.as_ref()),
        ];
        for (method, op) in ops {
            if let Some(op) = op {
                let summary = op
                    .summary
                    .clone()
                    .or_else(|| op.description.clone())
                    .unwrap_or_default();
                rows.push_str(&format!(
                    "<tr><td><code>{method}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                    html_escape(path),
                    html_escape(&summary)
                ));
            }
        }
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><meta name=viewport content='width=device-width'>\
         <title>Hive API</title><style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         td{{padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}}</style></head><body>\
         <h1>Hive host API</h1><p>The machine-readable document is <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3).</p>\
         <table>{rows}</table></body></html>"
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_and_lists_every_route() {
        let doc = serde_json::to_value(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        for p in [
            "/api/status",
            "/api/peers",
            "/api/dial",
            "/api/topics",
            "/api/topics/{topic}/subscribe",
            "/api/topics/{topic}/unsubscribe",
            "/api/topics/{topic}/publish",
            "/api/peers/{peer_id}/send",
            "/api/events",
            "/api/messages",
            "/api/outbox",
            "/healthz",
            "/metrics",
            "/api/tension",
            "/api/whoami",
            "/api/reproduce",
            "/api/nodes",
            "/api/nodes/{id}",
            "/api/nodes/{id}/status",
            "/api/nodes/{id}/topics/{topic}/publish",
            "/api/nodes/{id}/events",
            "/api/nodes/{id}/metrics",
        ] {
            assert!(paths.iter().any(|q| q.as_str() == p), "{p} missing");
        }
    }
}
