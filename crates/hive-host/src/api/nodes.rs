//! The hive's nodes: `GET/POST /api/nodes`, `GET/DELETE /api/nodes/{id}`,
//! `POST /api/reproduce`, and [`NodeCtx`], the extractor that gives every
//! node-level handler the node its request addresses.

use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use hive_proto::{Op, ReproduceResult};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, Path, OP_TIMEOUT};
use crate::hive::{HiveError, NodeView, ROOT_ID};
use crate::ipc_client::IpcClient;
use crate::outbox::Outbox;
use crate::supervisor::Supervisor;

/// The node a request addresses, and the global state: the `{id}` of the
/// `/api/nodes/{id}` mount, or the first node for routes mounted at `/api`.
/// An id that names no node is a 404.
#[derive(Clone)]
pub struct NodeCtx {
    pub node_id: String,
    pub supervisor: Supervisor,
    pub outbox: Outbox,
    pub app: AppState,
}

impl FromRequestParts<AppState> for NodeCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, state).await?;
        let id = params
            .iter()
            .find(|(name, _)| *name == "id")
            .map_or(ROOT_ID, |(_, id)| id);
        let node = state
            .hive
            .get(id)
            .ok_or_else(|| HiveError::UnknownNode(id.to_owned()))?;
        Ok(NodeCtx {
            node_id: node.record.id.clone(),
            supervisor: node.supervisor.clone(),
            outbox: node.outbox.clone(),
            app: state.clone(),
        })
    }
}

impl NodeCtx {
    /// τ of the addressed node, counting the nodes below it.
    pub fn tension(&self) -> crate::tension::Tension {
        match self.app.hive.get(&self.node_id) {
            Some(node) => self.app.hive.tension(&node),
            None => self.supervisor.tension(),
        }
    }

    /// The daemon's IPC link, or 503 when the daemon is not running.
    pub fn client(&self) -> Result<IpcClient, ApiError> {
        self.supervisor.client().ok_or_else(|| {
            ApiError::DaemonDown(self.supervisor.snapshot().state.as_str().to_owned())
        })
    }
}

/// `GET /api/nodes`
#[utoipa::path(operation_id = "nodes_list", get, path = "/api/nodes", tag = "nodes",
    responses((status = 200, description = "Every node of this host, the first one first", body = [crate::hive::NodeView])))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<NodeView>> {
    Json(state.hive.views())
}

/// `GET /api/nodes/{id}`
#[utoipa::path(operation_id = "nodes_show", get, path = "/api/nodes/{id}", tag = "nodes",
    params(("id" = String, Path, description = "Node id, e.g. n0")),
    responses((status = 200, body = crate::hive::NodeView), (status = 404, body = super::error::ErrorResponse)))]
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<NodeView>, ApiError> {
    let node = state.hive.get(&id).ok_or(HiveError::UnknownNode(id))?;
    Ok(Json(state.hive.view(&node)))
}

/// `POST /api/nodes`'s body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SpawnRequest)]
pub struct SpawnBody {
    /// Parent node id (default: the first node, `n0`).
    parent: Option<String>,
    /// 1 to 64 (default 1).
    #[schema(value_type = Option<u32>)]
    count: Option<i64>,
}

/// `POST /api/nodes` `{"parent"?, "count"?}` → 201 with the new nodes, once
/// each is running.
#[utoipa::path(operation_id = "nodes_spawn", post, path = "/api/nodes", tag = "nodes",
    request_body(content = super::nodes::SpawnBody, description = "Optional; default one child of the first node"),
    responses((status = 201, description = "The new nodes, once each is running", body = [crate::hive::NodeView]),
               (status = 400, body = super::error::ErrorResponse), (status = 404, description = "Unknown parent", body = super::error::ErrorResponse),
               (status = 409, description = "--max-nodes reached or parent not running", body = super::error::ErrorResponse),
               (status = 507, description = "Not enough memory", body = super::error::ErrorResponse)))]
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
#[utoipa::path(operation_id = "nodes_delete", delete, path = "/api/nodes/{id}", tag = "nodes",
    params(("id" = String, Path)),
    responses((status = 200, description = "The node and its subtree stopped and forgotten", body = super::nodes::Stopped),
               (status = 404, body = super::error::ErrorResponse),
               (status = 409, description = "The first node cannot be deleted", body = super::error::ErrorResponse)))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Stopped>, ApiError> {
    let stopped = state.hive.delete(&id).await?;
    Ok(Json(Stopped { stopped }))
}

/// What `DELETE /api/nodes/{id}` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Stopped {
    /// Ids of the nodes stopped, deepest first.
    stopped: Vec<String>,
}

/// `POST /api/reproduce`'s body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReproduceRequest)]
pub struct ReproduceBody {
    /// 1 to 64 (default 1).
    count: Option<u32>,
}

/// `POST /api/reproduce` (and `/api/nodes/{id}/reproduce`): ask the node's
/// daemon, over the IPC, to reproduce. Under a host the daemon hands the work
/// back as a `reproduce` event, and the host starts the children; they show
/// up in `GET /api/nodes` once running.
#[utoipa::path(post, path = "/reproduce", tag = "nodes",
    request_body(content = super::nodes::ReproduceBody, description = "Optional"),
    responses((status = 200, description = "The daemon asked its host for children", body = hive_proto::ReproduceResult),
               (status = 400, body = super::error::ErrorResponse), (status = 503, body = super::error::ErrorResponse)))]
pub async fn reproduce(
    state: NodeCtx,
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
