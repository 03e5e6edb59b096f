//! The hive's nodes: `GET/POST /api/nodes`, `GET/DELETE /api/nodes/{id}`,
//! `POST /api/reproduce`, and the addressing of every node-level route under
//! `/api/nodes/{id}/...`.
//!
//! Node-level routes are written once. A request for
//! `/api/nodes/n3/topics/t/publish` is rewritten, before routing, to
//! `/api/topics/t/publish` with the node's id attached; the [`Scoped`]
//! extractor then hands the handler that node's supervisor and outbox
//! instead of the first node's.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Json;
use hive_proto::{Op, ReproduceResult};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, AppState, Path, OP_TIMEOUT};
use crate::hive::{HiveError, NodeView};

/// Which node a rewritten request addresses.
#[derive(Debug, Clone)]
pub struct NodeSelector(pub String);

/// The [`AppState`] of the node a request addresses: the first node for
/// top-level routes, the named one under `/api/nodes/{id}/...`.
pub struct Scoped(pub AppState);

impl FromRequestParts<AppState> for Scoped {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(NodeSelector(id)) = parts.extensions.get::<NodeSelector>() else {
            return Ok(Scoped(state.clone()));
        };
        let node = state.hive.get(id).ok_or_else(|| {
            ApiError::NotFound(format!("no node {id:?}; GET /api/nodes lists them"))
        })?;
        Ok(Scoped(AppState {
            supervisor: node.supervisor.clone(),
            outbox: node.outbox.clone(),
            node_id: node.record.id.clone(),
            ..state.clone()
        }))
    }
}

/// Rewrite `/api/nodes/{id}/{rest}` to the node-level route `/api/{rest}`
/// (`metrics` to `/metrics`), remembering the node. Paths without a rest
/// (`/api/nodes`, `/api/nodes/{id}`) are the nodes API itself and pass as
/// they are.
pub fn rewrite_node_path(mut request: Request) -> Request {
    let path = request.uri().path();
    let Some(tail) = path.strip_prefix("/api/nodes/") else {
        return request;
    };
    let Some((id, rest)) = tail.split_once('/') else {
        return request;
    };
    if id.is_empty() || rest.is_empty() {
        return request;
    }
    let new_path = if rest == "metrics" {
        "/metrics".to_owned()
    } else {
        format!("/api/{rest}")
    };
    let id = id.to_owned();
    let path_and_query = match request.uri().query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    let mut parts = request.uri().clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return request,
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
        request.extensions_mut().insert(NodeSelector(id));
    }
    request
}

impl From<HiveError> for ApiError {
    fn from(e: HiveError) -> Self {
        match e {
            HiveError::BadRequest(m) => ApiError::BadRequest(m),
            HiveError::UnknownNode(id) => {
                ApiError::NotFound(format!("no node {id:?}; GET /api/nodes lists them"))
            }
            HiveError::Conflict(m) => ApiError::Conflict(m),
            HiveError::NoMemory(m) => ApiError::InsufficientResources(m),
            HiveError::Io(m) => ApiError::Internal(m),
        }
    }
}

/// `GET /api/nodes`
pub async fn list(State(state): State<AppState>) -> Json<Vec<NodeView>> {
    Json(state.hive.views())
}

/// `GET /api/nodes/{id}`
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    let node = state.hive.get(&id).ok_or(HiveError::UnknownNode(id))?;
    Ok(Json(state.hive.view(&node)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpawnBody {
    parent: Option<String>,
    count: Option<i64>,
}

/// `POST /api/nodes` `{"parent"?, "count"?}` → 201 with the new nodes, once
/// each is running.
pub async fn spawn(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let body: SpawnBody = optional_json(&body)?;
    let count = match body.count {
        None => None,
        Some(n) if (1..=i64::from(crate::hive::MAX_COUNT)).contains(&n) => Some(n as u32),
        Some(n) => {
            return Err(ApiError::BadRequest(format!(
                "count must be 1 to {}, not {n}",
                crate::hive::MAX_COUNT
            )))
        }
    };
    let nodes = state.hive.spawn(body.parent.as_deref(), count).await?;
    Ok((StatusCode::CREATED, Json(nodes)))
}

/// `DELETE /api/nodes/{id}`: stop the node and everything below it.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stopped = state.hive.delete(&id).await?;
    Ok(Json(json!({ "stopped": stopped })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReproduceBody {
    count: Option<u32>,
}

/// `POST /api/reproduce` (and `/api/nodes/{id}/reproduce`): ask the node's
/// daemon, over the IPC, to reproduce. Under a host the daemon hands the work
/// back as a `reproduce` event, and the host starts the children; they show
/// up in `GET /api/nodes` once running.
pub async fn reproduce(
    Scoped(state): Scoped,
    body: axum::body::Bytes,
) -> Result<Json<ReproduceResult>, ApiError> {
    let count = optional_json::<ReproduceBody>(&body)?.count;
    let result = state
        .client()?
        .request_typed(Op::Reproduce { count }, OP_TIMEOUT)
        .await?;
    Ok(Json(result))
}

/// A JSON body that may be left out entirely (then every field defaults).
fn optional_json<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(uri: &str) -> (String, Option<String>) {
        let req = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let req = rewrite_node_path(req);
        let node = req.extensions().get::<NodeSelector>().map(|n| n.0.clone());
        (req.uri().to_string(), node)
    }

    #[test]
    fn node_level_routes_are_rewritten_and_the_rest_left_alone() {
        assert_eq!(
            rewrite("/api/nodes/n3/topics/t/publish?x=1"),
            ("/api/topics/t/publish?x=1".into(), Some("n3".into()))
        );
        assert_eq!(
            rewrite("/api/nodes/n3/metrics"),
            ("/metrics".into(), Some("n3".into()))
        );
        assert_eq!(rewrite("/api/nodes/n3"), ("/api/nodes/n3".into(), None));
        assert_eq!(rewrite("/api/nodes"), ("/api/nodes".into(), None));
        assert_eq!(rewrite("/api/nodes/n3/"), ("/api/nodes/n3/".into(), None));
        assert_eq!(rewrite("/api/status"), ("/api/status".into(), None));
    }
}
