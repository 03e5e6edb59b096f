//! The one error type of the HTTP API and its JSON shape:
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! Every handler returns `Result<_, ApiError>`; the mapping from what went
//! wrong to an HTTP status lives here and nowhere else.

use axum::extract::rejection::{
    BytesRejection, JsonRejection, PathRejection, QueryRejection, RawPathParamsRejection,
};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hive_proto::ErrorCode;
use serde::Serialize;

use crate::ipc_client::IpcError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the daemon is not running (state: {0})")]
    DaemonDown(String),
    #[error(transparent)]
    Ipc(#[from] IpcError),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Unauthorized(String),
    /// The token is valid but lacks the scope the request needs.
    #[error("the API token {token:?} lacks the {scope} scope this request needs")]
    MissingScope {
        scope: super::auth::Scope,
        token: String,
    },
    /// A foreign `Host` or `Origin` (see `guard`).
    #[error("{0}")]
    Forbidden(String),
    /// The outbox is full: the client should slow down and retry.
    #[error("{0}")]
    Overloaded(String),
    /// The request contradicts the current state (a limit reached, the
    /// first node deleted, a parent that is not running).
    #[error("{0}")]
    Conflict(String),
    /// The machine lacks the memory for what was asked.
    #[error("{0}")]
    InsufficientResources(String),
}

/// What every failed request answers: `{"error": {...}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// One error: a stable code to match on, and a message for people.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable error code, e.g. `bad_args`, `unauthorized`, `daemon_unavailable`.
    pub code: String,
    pub message: String,
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<crate::hive::HiveError> for ApiError {
    fn from(e: crate::hive::HiveError) -> Self {
        match e {
            crate::hive::HiveError::BadRequest(m) => ApiError::BadRequest(m),
            crate::hive::HiveError::UnknownNode(id) => {
                ApiError::NotFound(format!("no node {id:?}; GET /api/nodes lists them"))
            }
            crate::hive::HiveError::Conflict(m) => ApiError::Conflict(m),
            crate::hive::HiveError::NoMemory(m) => ApiError::InsufficientResources(m),
            crate::hive::HiveError::Io(m) => ApiError::Internal(m),
        }
    }
}

impl ApiError {
    /// HTTP status and stable error code.
    fn classify(&self) -> (StatusCode, String) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_args".into()),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found".into()),
            ApiError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
            }
            ApiError::DaemonDown(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "daemon_unavailable".into())
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal".into()),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized".into()),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden".into()),
            ApiError::MissingScope { .. } => (StatusCode::FORBIDDEN, "missing_scope".into()),
            ApiError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded".into()),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict".into()),
            ApiError::InsufficientResources(_) => (
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_resources".into(),
            ),
            ApiError::Ipc(e) => match e {
                IpcError::Daemon(body) => (status_for(body.code), body.code.to_string()),
                IpcError::LinkClosed(_) | IpcError::Connect { .. } | IpcError::Handshake(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "daemon_unavailable".into())
                }
                IpcError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout".into()),
                IpcError::BadResult { .. } => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal".into())
                }
            },
        }
    }
}

fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadArgs | ErrorCode::BadFrame | ErrorCode::UnknownOp => StatusCode::BAD_REQUEST,
        ErrorCode::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::PublishFailed | ErrorCode::Busy | ErrorCode::ShuttingDown => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorCode::DialFailed | ErrorCode::NotConnected | ErrorCode::SendFailed => {
            StatusCode::BAD_GATEWAY
        }
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unsupported => StatusCode::CONFLICT,
        ErrorCode::ProtocolViolation | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.classify();
        let message = match &self {
            // The daemon's own message is the useful part; the code is
            // already in `code`.
            ApiError::Ipc(IpcError::Daemon(body)) => body.message.clone(),
            other => other.to_string(),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(%status, %code, %message, "API error");
        } else {
            tracing::debug!(%status, %code, %message, "API error");
        }
        let body = Json(ErrorResponse {
            error: ErrorBody { code, message },
        });
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Overloaded(_) => {
                headers.insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static("1"),
                );
            }
            ApiError::Unauthorized(_) => {
                headers.insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!(
                "request body exceeds the limit of {} bytes",
                super::MAX_BODY_BYTES
            ))
        } else {
            ApiError::BadRequest(r.body_text())
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(r.body_text())
        } else {
            ApiError::BadRequest(r.body_text())
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<RawPathParamsRejection> for ApiError {
    fn from(r: RawPathParamsRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}
