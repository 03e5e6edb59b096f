//! `GET /openapi.json` and a readable page at `/docs`.
//!
//! The document is built by `utoipa` from the routes the router serves
//! (`utoipa_axum`'s `routes!` takes each route's path and method from its
//! handler's `#[utoipa::path]`, so a served route cannot be missing from
//! the document) and from those attributes (their doc comments become the summaries) and the
//! schemas of the real types they answer with: the host's own derive
//! `ToSchema` where they are defined, `hive-proto`'s results derive it
//! behind that crate's `openapi` feature (which only the host turns on, so
//! the daemon builds without utoipa). Nothing here repeats a type.
//! `tests/tests/http_api.rs` calls every documented operation against a
//! real host (a route documented but not served fails CI), and
//! `tests/tests/openapi_fields.rs` checks that every field a real host
//! serves is declared.

use std::sync::Arc;

use axum::response::{Html, IntoResponse};
use axum::{Extension, Json};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Hive host API", description = "The HTTP/WebSocket API of `hive up`. Top-level routes address the first node; every node-level route is also served under `/api/nodes/{id}/...` for any node of the hive."),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The document's frame (title, security scheme); the router adds every
/// path it serves ([`super::router`]).
pub(super) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Completes the operations the router mounted under `/api/nodes/{id}`:
/// the `id` parameter, a 404 for an unknown node, and operation ids of
/// their own (`…_of_node`: the same handler is mounted at `/api` too).
pub(super) fn finish(mut openapi: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::Required;
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
    let id = ParameterBuilder::new()
        .name("id")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some("Node id, e.g. n1"))
        .schema(Some(utoipa::openapi::schema::Object::with_type(
            utoipa::openapi::schema::Type::String,
        )))
        .build();
    for (path, item) in openapi.paths.paths.iter_mut() {
        if !path.starts_with("/api/nodes/{id}/") {
            continue;
        }
        for op in [item.get.as_mut(), item.post.as_mut(), item.delete.as_mut()]
            .into_iter()
            .flatten()
        {
            let params = op.parameters.get_or_insert_with(Vec::new);
            if !params.iter().any(|p| p.name == "id") {
                params.insert(0, id.clone());
            }
            if let Some(op_id) = op.operation_id.as_mut() {
                op_id.push_str("_of_node");
            }
            op.responses
                .responses
                .entry("404".to_owned())
                .or_insert_with(|| unknown_node.clone().into());
        }
    }
    openapi
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

#[cfg(test)]
/// The OpenAPI 3 document, as [`super::router`] serves it (built from the
/// same routes, without their access layers).
pub fn document() -> utoipa::openapi::OpenApi {
    finish(super::documented(&|group, _| group).split_for_parts().1)
}

pub async fn openapi_json(
    Extension(doc): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> impl IntoResponse {
    Json(doc.as_ref().clone())
}

/// A plain, dependency-free page listing every operation of the document.
pub async fn docs_page(Extension(doc): Extension<Arc<utoipa::openapi::OpenApi>>) -> Html<String> {
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
