//! `GET /api/events`: the host's event stream as WebSocket JSON text frames,
//! each with a `"type"`.
//!
//! Daemon events keep their IPC field names with `event` renamed to `type`,
//! payloads as base64 `data` plus `text` when the bytes are UTF-8. Supervisor
//! state changes arrive as `{"type": "daemon", ...}`, and a client that falls
//! behind gets `{"type": "lagged", "missed": n}` instead of the lost events.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::Json;
use hive_proto::{Bytes, Event};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::{ApiError, NodeCtx, Query};
use crate::state::{DaemonSnapshot, HostEvent};
use crate::store::{InKind, InRow};

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Replay every stored event after this cursor before going live.
    after: Option<u64>,
}

#[utoipa::path(get, path = "/events", tag = "events",
    params(("after" = Option<u64>, Query, description = "Replay stored events after this cursor first"),
           ("token" = Option<String>, Query, description = "API token, for browsers' WebSockets")),
    responses((status = 101, description = "WebSocket of JSON event frames"),
               (status = 400, description = "Not a WebSocket upgrade"),
               (status = 503, body = super::error::ErrorResponse)))]
pub async fn events(
    ws: WebSocketUpgrade,
    state: NodeCtx,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let clients = state.supervisor.metrics().ws_clients.get();
    if clients >= state.app.limits.max_ws_clients {
        return Err(ApiError::Overloaded(format!(
            "{clients} event clients are connected (limit {}); retry later",
            state.app.limits.max_ws_clients
        )));
    }
    // Subscribe before the upgrade completes: a client that opens the socket
    // and then subscribes to a topic must not miss the first messages.
    let rx = state.supervisor.subscribe_events();
    Ok(ws.on_upgrade(move |socket| stream(socket, state, rx, q.after)))
}

#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    topic: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    /// `message` (default), `direct`, `expired` or `failed`.
    kind: Option<String>,
}

/// One page of stored history: `{"messages": [frames], "cursor": last}`.
/// Pass `cursor` back as `after` for the next page.
#[utoipa::path(get, path = "/messages", tag = "history",
    params(("topic" = Option<String>, Query), ("after" = Option<u64>, Query),
           ("limit" = Option<u64>, Query, description = "1-1000, default 100"),
           ("kind" = Option<String>, Query, description = "message (default), direct, expired or failed")),
    responses((status = 200, body = super::events::History), (status = 400, body = super::error::ErrorResponse)))]
pub async fn messages(
    state: NodeCtx,
    Query(q): Query<MessagesQuery>,
) -> Result<Json<History>, ApiError> {
    let kind: InKind = q.kind.as_deref().unwrap_or("message").parse().map_err(
        |e: crate::kinds::UnknownKind| {
            ApiError::BadRequest(format!(
                "unknown kind {:?}; use message, direct, expired or failed",
                e.name
            ))
        },
    )?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state
        .supervisor
        .store()
        .inbound_after(q.after, Some(kind), q.topic, limit)
        .await?;
    let cursor = rows.last().map(|r| r.cursor).unwrap_or(q.after);
    let frames: Vec<Value> = rows.iter().map(row_frame).collect();
    Ok(Json(History {
        messages: frames,
        cursor,
    }))
}

/// One page of `GET /api/messages`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct History {
    /// Event frames, as `/api/events` sends them.
    messages: Vec<Value>,
    /// Pass back as `after` for the next page.
    cursor: u64,
}

/// Rows replayed per database read.
const REPLAY_PAGE: usize = 500;

/// Decrements the client gauge however the connection ends.
struct ClientGuard(NodeCtx);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.supervisor.metrics().ws_clients.dec();
    }
}

async fn stream(
    mut socket: WebSocket,
    state: NodeCtx,
    rx: hive_proto::fanout::Receiver<HostEvent>,
    after: Option<u64>,
) {
    state.supervisor.metrics().ws_clients.inc();
    let _guard = ClientGuard(state.clone());
    let store = state.supervisor.store().clone();

    let mut first = state_frame(&state.supervisor.snapshot());
    first["cursor"] = json!(store.last_cursor());
    if socket.send(text(&first)).await.is_err() {
        return;
    }
    // Replay what was stored after the client's cursor, then go live,
    // skipping live events the replay already covered: nothing missed,
    // nothing twice.
    let last_sent = match after {
        Some(after) => match replay(&mut socket, &store, after).await {
            Some(last) => last,
            None => return,
        },
        None => 0,
    };
    live(socket, &state, rx, last_sent).await;
}

/// Send the stored events after `after`; the cursor of the last one sent,
/// or `None` when the socket is gone (or closed for a store failure).
async fn replay(socket: &mut WebSocket, store: &crate::store::Store, after: u64) -> Option<u64> {
    let mut last_sent = after;
    loop {
        let rows = match store
            .inbound_after(last_sent, None, None, REPLAY_PAGE)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "event replay failed");
                let _ = socket
                    .send(close(1011, "cannot read stored events; retry"))
                    .await;
                return None;
            }
        };
        if rows.is_empty() {
            return Some(last_sent);
        }
        for row in &rows {
            if send_or_give_up(socket, text(&row_frame(row)), last_sent).await != Sent::Yes {
                return None;
            }
            last_sent = row.cursor;
        }
    }
}

/// Forward live events past `last_sent` until the client, the host or the
/// broadcast ends; a client that falls behind is closed with its cursor.
async fn live(
    mut socket: WebSocket,
    state: &NodeCtx,
    mut rx: hive_proto::fanout::Receiver<HostEvent>,
    mut last_sent: u64,
) {
    let store = state.supervisor.store();
    loop {
        let frame = tokio::select! {
            event = rx.recv() => match event {
                Ok(event) => {
                    let cursor = event_cursor(&event);
                    if cursor.is_some_and(|c| c <= last_sent) {
                        continue;
                    }
                    let frame = encode(&event).map(|mut f| {
                        f["cursor"] = json!(cursor.unwrap_or_else(|| store.last_cursor()));
                        f
                    });
                    if let Some(c) = cursor {
                        last_sent = c;
                    }
                    frame
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Buffering for a slow client would grow without bound;
                    // it reconnects and resumes from its cursor instead.
                    tracing::warn!(missed, last_sent, "events client too slow; disconnecting it");
                    state.supervisor.note_client_dropped();
                    slow_consumer(&mut socket, last_sent).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                // Pings are answered by the WebSocket layer; other input is
                // ignored: the stream is one-way.
                Some(Ok(_)) => continue,
            },
            _ = state.app.shutdown.cancelled() => break,
        };
        if let Some(frame) = frame {
            match send_or_give_up(&mut socket, text(&frame), last_sent).await {
                Sent::Yes => {}
                Sent::ClientGone => return,
                Sent::Dropped => {
                    state.supervisor.note_client_dropped();
                    return;
                }
            }
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(None))).await;
}

/// Longest a client may leave one frame unread (its socket buffers full)
/// before it is dropped: a page that opens the stream and never reads would
/// otherwise hold its task, its socket and one of `--max-ws-clients` slots
/// for as long as the TCP connection lives.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the close frame of a dropped client may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What became of one frame.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Yes,
    /// The client closed or the connection broke.
    ClientGone,
    /// The client did not take it within [`SEND_TIMEOUT`]: it was told to
    /// resume (if it still listens) and is dropped.
    Dropped,
}

async fn send_or_give_up(socket: &mut WebSocket, frame: Message, last_sent: u64) -> Sent {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(frame)).await {
        Ok(Ok(())) => Sent::Yes,
        Ok(Err(_)) => Sent::ClientGone,
        Err(_) => {
            tracing::warn!(
                last_sent,
                "events client took no frame for 30 s; dropping it"
            );
            slow_consumer(socket, last_sent).await;
            Sent::Dropped
        }
    }
}

/// Close a client that fell behind with 4008 and the cursor to resume from.
async fn slow_consumer(socket: &mut WebSocket, last_sent: u64) {
    let reason = format!("slow consumer: reconnect with ?after={last_sent}");
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(close(4008, &reason))).await;
}

fn text(value: &Value) -> Message {
    Message::Text(value.to_string().into())
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }))
}

/// The inbox cursor of a stored event.
fn event_cursor(event: &HostEvent) -> Option<u64> {
    match event {
        HostEvent::Stored { cursor, .. } | HostEvent::Undelivered { cursor, .. } => Some(*cursor),
        HostEvent::Daemon(_) | HostEvent::State(_) => None,
    }
}

/// The frame of a stored row; the same shape as the live frame.
pub fn row_frame(row: &InRow) -> Value {
    let mut frame = match row.kind {
        InKind::Message => encode_daemon_event(&Event::Message {
            topic: row.topic.clone().unwrap_or_default(),
            from: row.peer.clone(),
            id: row.id.clone(),
            data: Bytes(row.data.clone()),
            seqno: None,
            signature: None,
            key: None,
            history_seq: None,
        }),
        InKind::Direct => encode_daemon_event(&Event::Direct {
            from: row.peer.clone(),
            id: row.id.clone(),
            data: Bytes(row.data.clone()),
            history_seq: None,
        }),
        kind @ (InKind::Expired | InKind::Failed) => Some(json!({
            "type": kind,
            "id": row.id,
            "target": row.peer,
            "direct": row.topic.is_none(),
        })),
    }
    .unwrap_or_else(|| json!({"type": row.kind}));
    frame["cursor"] = json!(row.cursor);
    frame["received_ms"] = json!(row.received_ms);
    frame
}

fn state_frame(s: &DaemonSnapshot) -> Value {
    let mut frame =
        json!({"type": "daemon", "state": s.state, "pid": s.pid, "restarts": s.restarts});
    if let Some(ms) = s.restart_delay_ms {
        frame["restart_delay_ms"] = json!(ms);
    }
    frame
}

/// The API frame for one host event.
pub fn encode(event: &HostEvent) -> Option<Value> {
    match event {
        HostEvent::State(s) => Some(state_frame(s)),
        HostEvent::Daemon(event) => encode_daemon_event(event),
        HostEvent::Stored { cursor, event } => encode_daemon_event(event).map(|mut f| {
            f["cursor"] = json!(cursor);
            f
        }),
        HostEvent::Undelivered {
            cursor,
            kind,
            id,
            target,
            direct,
            reason,
        } => Some(json!({
            "type": kind,
            "id": id,
            "target": target,
            "direct": direct,
            "reason": reason,
            "cursor": cursor,
        })),
    }
}

fn encode_daemon_event(event: &Event) -> Option<Value> {
    let text = match event {
        Event::Message { data, .. } | Event::Direct { data, .. } => {
            Some(data.as_text().map(str::to_owned))
        }
        _ => None,
    };
    let Ok(Value::Object(fields)) = serde_json::to_value(event) else {
        tracing::warn!(?event, "cannot encode daemon event");
        return None;
    };
    let mut out = Map::with_capacity(fields.len() + 1);
    for (key, value) in fields {
        if key == "event" {
            out.insert("type".to_owned(), value);
        } else {
            out.insert(key, value);
        }
    }
    if let Some(Some(text)) = text {
        out.insert("text".to_owned(), Value::String(text));
    }
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DaemonState;

    #[test]
    fn message_frames_carry_base64_and_text() {
        let frame = encode(&HostEvent::Daemon(Event::Message {
            topic: "chat".into(),
            from: "12D3A".into(),
            id: "m1".into(),
            data: Bytes(b"hi".to_vec()),
            seqno: None,
            signature: None,
            key: None,
            history_seq: None,
        }))
        .unwrap();
        assert_eq!(
            frame,
            json!({"type":"message","topic":"chat","from":"12D3A","id":"m1","data":"aGk=","text":"hi"})
        );
        let frame = encode(&HostEvent::Daemon(Event::Direct {
            from: "P".into(),
            id: "d".into(),
            data: Bytes(vec![0xff, 0x00]),
            history_seq: None,
        }))
        .unwrap();
        assert_eq!(
            frame,
            json!({"type":"direct","from":"P","id":"d","data":"/wA="})
        );
    }

    #[test]
    fn peer_and_state_frames() {
        let frame = encode(&HostEvent::Daemon(Event::PeerConnected {
            peer_id: "P".into(),
            addr: "/ip4/1.2.3.4/tcp/1".into(),
        }))
        .unwrap();
        assert_eq!(
            frame,
            json!({"type":"peer_connected","peer_id":"P","addr":"/ip4/1.2.3.4/tcp/1"})
        );
        let frame = encode(&HostEvent::State(DaemonSnapshot {
            state: DaemonState::Restarting,
            pid: None,
            restarts: 2,
            uptime_secs: None,
            restart_delay_ms: Some(500),
        }))
        .unwrap();
        assert_eq!(
            frame,
            json!({"type":"daemon","state":"restarting","pid":null,"restarts":2,"restart_delay_ms":500})
        );
        let frame = encode(&HostEvent::Daemon(Event::Lagged { missed: 3 })).unwrap();
        assert_eq!(frame, json!({"type":"lagged","missed":3}));
    }
}
