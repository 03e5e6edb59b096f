//! Request/response handlers.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hive_proto::{
    DialResult, Op, PeerInfo, PeersResult, PublishResult, StatusResult, TopicInfo, TopicsResult,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use axum::Json;

use super::{ApiError, JsonBody, NodeCtx, Path, NETWORK_TIMEOUT, OP_TIMEOUT};
use crate::store::OutKind;

/// `{topic}` of a topic route, by name: under `/api/nodes/{id}` the path
/// holds the node's id too.
#[derive(Deserialize)]
pub struct TopicPath {
    topic: String,
}

/// `{peer_id}` of a direct-message route, by name (see [`TopicPath`]).
#[derive(Deserialize)]
pub struct PeerPath {
    peer_id: String,
}

/// A live status query must not make `/api/status` slow when the daemon is.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /api/status`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Status)]
pub struct StatusBody {
    peer_id: String,
    /// Full multiaddrs ending in `/p2p/<peer id>`.
    listen_addrs: Vec<String>,
    daemon: crate::state::DaemonSnapshot,
    peers: usize,
    /// System tension τ in [0, 1].
    tension: f64,
    #[schema(value_type = std::collections::BTreeMap<String, f64>)]
    signals: std::collections::BTreeMap<&'static str, f64>,
    topics: Vec<String>,
    /// The host's version.
    #[schema(value_type = String)]
    version: &'static str,
    /// The daemon's version (from its ready line); absent before the first
    /// daemon was ready.
    daemon_version: Option<String>,
    /// How the store keeps up with the daemon's numbered history: last
    /// number stored, holes seen, messages fetched to fill them, messages
    /// the history no longer had.
    inbound: crate::inbound::InboundSnapshot,
    /// The daemon's connection watermarks (absent when its manager is off
    /// or the daemon does not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    connections: Option<hive_proto::ConnectionLimits>,
    /// The daemon catching up on what it missed from its peers (absent when
    /// it does not, as in go mode, or does not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    sync: Option<hive_proto::SyncStatus>,
    /// Whether others can dial the node directly, AutoNAT's verdict and its
    /// relay slots (absent when the daemon does not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    reach: Option<hive_proto::ReachStatus>,
    /// The daemon's history against its byte budget, as the daemon counts
    /// since it started (absent when it does not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<hive_proto::HistoryStatus>,
    /// The inbox's byte budget, bytes stored, and what remote peers were
    /// refused (over their rate) or had evicted (over the budget).
    peer_limits: crate::peer_guard::GuardStatus,
}

/// Answers whatever the daemon's state: live data when it responds, the last
/// known values otherwise.
#[utoipa::path(get, path = "/status", tag = "node",
    responses((status = 200, description = "Identity, daemon state, tension", body = super::routes::StatusBody)))]
pub async fn status(state: NodeCtx) -> Json<StatusBody> {
    let sup = &state.supervisor;
    let live = match sup.client() {
        Some(client) => client
            .request_typed::<StatusResult>(Op::Status, STATUS_TIMEOUT)
            .await
            .ok(),
        None => None,
    };
    let known = sup.status();
    let tension = state.tension();
    let body = match live {
        Some(st) => StatusBody {
            peer_id: st.peer_id,
            listen_addrs: st.listen_addrs,
            daemon: known.daemon,
            peers: st.peers,
            tension: tension.value,
            signals: tension.signals,
            topics: st.topics,
            version: env!("CARGO_PKG_VERSION"),
            daemon_version: Some(st.daemon_version),
            inbound: sup.inbound_stats(),
            connections: st.connections,
            sync: st.sync,
            reach: st.reach,
            history: st.history,
            peer_limits: sup.guard_status(),
        },
        None => StatusBody {
            peer_id: known.peer_id,
            listen_addrs: known.listen_addrs,
            daemon: known.daemon,
            peers: known.peers,
            tension: tension.value,
            signals: tension.signals,
            topics: sup.desired_topics(),
            version: env!("CARGO_PKG_VERSION"),
            daemon_version: known.daemon_version,
            inbound: sup.inbound_stats(),
            connections: None,
            sync: None,
            reach: None,
            history: None,
            peer_limits: sup.guard_status(),
        },
    };
    Json(body)
}

#[utoipa::path(get, path = "/peers", tag = "node",
    responses((status = 200, body = [hive_proto::PeerInfo]), (status = 503, body = super::error::ErrorResponse)))]
pub async fn peers(state: NodeCtx) -> Result<Json<Vec<PeerInfo>>, ApiError> {
    let result: PeersResult = state.client()?.request_typed(Op::Peers, OP_TIMEOUT).await?;
    Ok(Json(result.peers))
}

/// `POST /api/dial`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = DialRequest)]
pub struct DialBody {
    /// A multiaddr, with or without `/p2p/<peer id>`.
    addr: String,
}

#[utoipa::path(post, path = "/dial", tag = "node", request_body = super::routes::DialBody,
    responses((status = 200, body = hive_proto::DialResult), (status = 400, body = super::error::ErrorResponse),
               (status = 502, body = super::error::ErrorResponse), (status = 503, body = super::error::ErrorResponse)))]
pub async fn dial(
    state: NodeCtx,
    JsonBody(body): JsonBody<DialBody>,
) -> Result<Json<DialResult>, ApiError> {
    let addr = body.addr.trim();
    if !addr.starts_with('/') {
        return Err(ApiError::BadRequest("\"addr\" must be a multiaddr".into()));
    }
    let result = state
        .client()?
        .request_typed(
            Op::Dial {
                addr: addr.to_owned(),
            },
            NETWORK_TIMEOUT,
        )
        .await?;
    Ok(Json(result))
}

#[utoipa::path(get, path = "/topics", tag = "pubsub",
    responses((status = 200, body = [hive_proto::TopicInfo]), (status = 503, body = super::error::ErrorResponse)))]
pub async fn topics(state: NodeCtx) -> Result<Json<Vec<TopicInfo>>, ApiError> {
    let result: TopicsResult = state
        .client()?
        .request_typed(Op::Topics, OP_TIMEOUT)
        .await?;
    Ok(Json(result.topics))
}

/// What subscribe and unsubscribe answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Subscription)]
pub struct SubscriptionBody {
    topic: String,
    subscribed: bool,
    /// False when the call changed nothing.
    changed: bool,
}

#[derive(Deserialize)]
struct Changed {
    #[serde(default)]
    changed: Option<bool>,
}

#[utoipa::path(post, path = "/topics/{topic}/subscribe", tag = "pubsub",
    params(("topic" = String, Path, description = "1-256 bytes, no control characters")),
    responses((status = 200, body = super::routes::SubscriptionBody), (status = 400, body = super::error::ErrorResponse),
               (status = 503, body = super::error::ErrorResponse)))]
pub async fn subscribe(
    state: NodeCtx,
    Path(TopicPath { topic }): Path<TopicPath>,
) -> Result<Json<SubscriptionBody>, ApiError> {
    super::check_topic(&topic)?;
    let client = state.client()?;
    // Record the intent first: a daemon restarting right now then picks it
    // up in its re-subscribe pass.
    let already = state.supervisor.want_topic(&topic).await;
    let result = client
        .request(
            Op::Subscribe {
                topic: topic.clone(),
            },
            OP_TIMEOUT,
        )
        .await;
    match result {
        Ok(value) => Ok(Json(SubscriptionBody {
            changed: changed(value),
            topic,
            subscribed: true,
        })),
        Err(e) => {
            if !already {
                state.supervisor.unwant_topic(&topic).await;
            }
            Err(e.into())
        }
    }
}

#[utoipa::path(post, path = "/topics/{topic}/unsubscribe", tag = "pubsub",
    params(("topic" = String, Path)),
    responses((status = 200, body = super::routes::SubscriptionBody), (status = 400, body = super::error::ErrorResponse),
               (status = 503, body = super::error::ErrorResponse)))]
pub async fn unsubscribe(
    state: NodeCtx,
    Path(TopicPath { topic }): Path<TopicPath>,
) -> Result<Json<SubscriptionBody>, ApiError> {
    let client = state.client()?;
    state.supervisor.unwant_topic(&topic).await;
    let value = client
        .request(
            Op::Unsubscribe {
                topic: topic.clone(),
            },
            OP_TIMEOUT,
        )
        .await?;
    Ok(Json(SubscriptionBody {
        changed: changed(value),
        topic,
        subscribed: false,
    }))
}

fn changed(value: Value) -> bool {
    serde_json::from_value::<Changed>(value)
        .ok()
        .and_then(|c| c.changed)
        .unwrap_or(true)
}

/// Check the body against the message size limit and take room in the
/// outbox under its bound, before anything is written; the room is held
/// until the returned reservation is dropped (after the push).
async fn admit(
    state: &NodeCtx,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Bytes, crate::store::Reservation), ApiError> {
    let data = body?;
    let limit = state.app.limits.max_message_size;
    if data.len() > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "message of {} bytes exceeds the limit of {limit} bytes",
            data.len()
        )));
    }
    let max = state.app.limits.max_outbox;
    let Some(room) = state.outbox.store().reserve(max) else {
        let depth = state.outbox.store().depth().await?;
        return Err(ApiError::Overloaded(format!(
            "{depth} messages are waiting to go out (limit {max}); retry shortly"
        )));
    };
    Ok((data, room))
}

/// Header carrying a client's idempotency key: the message id to use, so
/// that a request retried after a lost response is not queued twice.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or("");
    if key.is_empty() || key.len() > 64 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest(
            "Idempotency-Key must be 1 to 64 printable ASCII characters".into(),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// The body is the message: raw bytes of any content type. Answered once
/// the message is durably in the outbox; it reaches the daemon in order,
/// and is retried across daemon and host restarts until acknowledged.
#[derive(Debug, Deserialize)]
pub struct PublishQuery {
    /// `false` publishes the bare bytes (for topics shared with libp2p peers
    /// that are not Hive nodes); `true` wraps them in Hive's envelope, which
    /// keeps the message id across retries. Default: the host's
    /// `--plain-pubsub` setting (enveloped unless it is given).
    envelope: Option<bool>,
}

#[utoipa::path(post, path = "/topics/{topic}/publish", tag = "pubsub",
    params(("topic" = String, Path),
           ("envelope" = Option<bool>, Query, description = "false: publish the bare bytes (for non-Hive libp2p peers); true: Hive's envelope, which keeps the id across retries so Hive receivers drop duplicates. Default: enveloped unless the host runs with --plain-pubsub"),
           ("Idempotency-Key" = Option<String>, Header, description = "1-64 printable ASCII; a retry with the same key is not queued twice")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The message: raw bytes"),
    responses((status = 200, description = "Durably queued", body = hive_proto::PublishResult),
               (status = 400, body = super::error::ErrorResponse), (status = 413, body = super::error::ErrorResponse),
               (status = 503, description = "Outbox full (Retry-After)", body = super::error::ErrorResponse)))]
pub async fn publish(
    state: NodeCtx,
    Path(TopicPath { topic }): Path<TopicPath>,
    super::Query(q): super::Query<PublishQuery>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PublishResult>, ApiError> {
    super::check_topic(&topic)?;
    let key = idempotency_key(&headers)?;
    let (data, room) = admit(&state, body).await?;
    let kind = if q.envelope.unwrap_or(!state.app.limits.plain_pubsub) {
        OutKind::Publish
    } else {
        OutKind::PublishPlain
    };
    let pushed = state
        .outbox
        .store()
        .push_reserved(
            room,
            kind,
            topic,
            data.to_vec(),
            state.app.limits.publish_ttl_ms,
            key,
        )
        .await?;
    if pushed.inserted {
        // The span carries the request id; the daemon logs the message as
        // trace `msg:<id>`, which links the two.
        tracing::debug!(id = %pushed.id, "publish queued");
    } else {
        tracing::debug!(id = %pushed.id, "publish retried with a known idempotency key");
    }
    state.outbox.wake();
    Ok(Json(PublishResult { id: pushed.id }))
}

/// How long `send` waits for the remote acknowledgement before answering
/// 202 (the message stays queued and is retried).
const SEND_WAIT: Duration = Duration::from_secs(30);

/// What a direct send answers.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SendAnswer)]
pub struct SendBody {
    id: String,
    /// True once the remote daemon acknowledged the message.
    acknowledged: bool,
}

/// 200 `{"id", "acknowledged": true}` once the remote daemon acknowledged the
/// message; 202 with `false` if it did not within `?wait=SECS` (default 30 s,
/// at most 60; 0 answers at once): the message stays in
/// the outbox and is retried until acknowledged or expired (`--direct-ttl`).
#[derive(Deserialize)]
pub struct SendQuery {
    /// Seconds to wait for the acknowledgement (default 30, at most 60); 0
    /// only queues.
    wait: Option<u64>,
}

#[utoipa::path(post, path = "/peers/{peer_id}/send", tag = "direct",
    params(("peer_id" = String, Path),
           ("wait" = Option<u64>, Query, description = "Seconds to wait for the acknowledgement (default 30, max 60); 0 only queues (always 202)"),
           ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "Acknowledged by the remote daemon", body = super::routes::SendBody),
               (status = 202, description = "Queued; retried until acknowledged or expired", body = super::routes::SendBody),
               (status = 400, body = super::error::ErrorResponse), (status = 413, body = super::error::ErrorResponse),
               (status = 503, body = super::error::ErrorResponse)))]
pub async fn send(
    state: NodeCtx,
    Path(PeerPath { peer_id }): Path<PeerPath>,
    super::Query(q): super::Query<SendQuery>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if !looks_like_peer_id(&peer_id) {
        return Err(ApiError::BadRequest(format!(
            "{peer_id:?} is not a peer id (base58 multihash such as 12D3KooW...)"
        )));
    }
    let key = idempotency_key(&headers)?;
    let (data, room) = admit(&state, body).await?;
    // The committed row takes the room over, so the wait below does not
    // hold it twice.
    let pushed = state
        .outbox
        .store()
        .push_reserved(
            room,
            OutKind::Direct,
            peer_id,
            data.to_vec(),
            state.app.limits.direct_ttl_ms,
            key,
        )
        .await?;
    let id = pushed.id;
    tracing::debug!(%id, "direct message queued");
    if !pushed.pending {
        // A retry of a message that was acknowledged already.
        return Ok(Json(SendBody {
            id,
            acknowledged: true,
        })
        .into_response());
    }
    let wait = q
        .wait
        .map(|s| Duration::from_secs(s.min(60)))
        .unwrap_or(SEND_WAIT);
    if wait.is_zero() {
        // `?wait=0` only queues: its answer must not depend on whether the
        // daemon happened to refuse the message before this line ran.
        state.outbox.wake();
        return Ok(queued(id));
    }
    let ack = state.outbox.wait_for_ack(&id);
    state.outbox.wake();
    match tokio::time::timeout(wait, ack).await {
        Ok(Ok(Ok(()))) => Ok(Json(SendBody {
            id,
            acknowledged: true,
        })
        .into_response()),
        Ok(Ok(Err(reason))) => Err(ApiError::BadRequest(format!(
            "direct message {id} will not be delivered: {reason}"
        ))),
        // Not yet: it stays queued.
        Ok(Err(_)) | Err(_) => Ok(queued(id)),
    }
}

/// 202: the message is in the outbox, not yet acknowledged.
fn queued(id: String) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(SendBody {
            id,
            acknowledged: false,
        }),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct OutboxQuery {
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Outbox)]
pub struct OutboxBody {
    depth: u64,
    pending: Vec<crate::store::OutItem>,
}

/// Messages accepted and not yet acknowledged, oldest first.
#[utoipa::path(get, path = "/outbox", tag = "history",
    params(("limit" = Option<u64>, Query)),
    responses((status = 200, body = super::routes::OutboxBody), (status = 400, body = super::error::ErrorResponse)))]
pub async fn outbox(
    state: NodeCtx,
    super::Query(q): super::Query<OutboxQuery>,
) -> Result<Json<OutboxBody>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(1000);
    let store = state.outbox.store();
    Ok(Json(OutboxBody {
        depth: store.depth().await?,
        pending: store.pending(limit).await?,
    }))
}

/// A syntactic check only, so that obvious garbage gets a 400 without a
/// round trip; the daemon (which links libp2p) does the real parsing. Peer
/// ids are base58btc multihashes (`12D3KooW...`, `Qm...`) or, rarely, CIDv1
/// in base32 (`b...`).
fn looks_like_peer_id(s: &str) -> bool {
    const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let base58 = s.chars().all(|c| BASE58.contains(c));
    let cid = s.starts_with('b')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c));
    (32..=128).contains(&s.len()) && (base58 || cid)
}

#[cfg(test)]
mod tests {
    use super::looks_like_peer_id;

    #[test]
    fn peer_id_syntax() {
        assert!(looks_like_peer_id(
            "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
        ));
        assert!(looks_like_peer_id(
            "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
        ));
        assert!(!looks_like_peer_id("not-a-peer-id"));
        assert!(!looks_like_peer_id(""));
        assert!(!looks_like_peer_id("12D3KooW0OIl"));
    }
}
