//! `GET /api/events`: the host's event stream as WebSocket JSON text frames,
//! each with a `"type"`.
//!
//! Daemon events keep their IPC field names with `event` renamed to `type`,
//! payloads as base64 `data` plus `text` when the bytes are UTF-8. Supervisor
//! state changes arrive as `{"type": "daemon", ...}`, and a client that falls
//! behind gets `{"type": "lagged", "missed": n}` instead of the lost events.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use hive_proto::Event;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::AppState;
use crate::supervisor::{DaemonSnapshot, HostEvent};

pub async fn events(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    // Subscribe before the upgrade completes: a client that opens the socket
    // and then subscribes to a topic must not miss the first messages.
    let rx = state.supervisor.subscribe_events();
    ws.on_upgrade(move |socket| stream(socket, state, rx))
}

/// Decrements the client gauge however the connection ends.
struct ClientGuard(AppState);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.supervisor.metrics().ws_clients.dec();
    }
}

async fn stream(mut socket: WebSocket, state: AppState, mut rx: broadcast::Receiver<HostEvent>) {
    state.supervisor.metrics().ws_clients.inc();
    let _guard = ClientGuard(state.clone());

    let first = state_frame(&state.supervisor.snapshot());
    if socket.send(text(&first)).await.is_err() {
        return;
    }
    loop {
        let frame = tokio::select! {
            event = rx.recv() => match event {
                Ok(event) => encode(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "events client lagged");
                    Some(json!({"type": "lagged", "missed": missed}))
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                // Pings are answered by the WebSocket layer; other input is
                // ignored: the stream is one-way.
                Some(Ok(_)) => continue,
            },
            _ = state.shutdown.cancelled() => break,
        };
        if let Some(frame) = frame {
            if socket.send(text(&frame)).await.is_err() {
                return;
            }
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

fn text(value: &Value) -> Message {
    Message::Text(value.to_string().into())
}

fn state_frame(s: &DaemonSnapshot) -> Value {
    json!({"type": "daemon", "state": s.state, "pid": s.pid, "restarts": s.restarts})
}

/// The API frame for one host event.
pub fn encode(event: &HostEvent) -> Option<Value> {
    match event {
        HostEvent::State(s) => Some(state_frame(s)),
        HostEvent::Daemon(event) => encode_daemon_event(event),
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
    use crate::supervisor::DaemonState;
    use hive_proto::Bytes;

    #[test]
    fn message_frames_carry_base64_and_text() {
        let frame = encode(&HostEvent::Daemon(Event::Message {
            topic: "chat".into(),
            from: "12D3A".into(),
            id: "m1".into(),
            data: Bytes(b"hi".to_vec()),
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
        }))
        .unwrap();
        assert_eq!(
            frame,
            json!({"type":"daemon","state":"restarting","pid":null,"restarts":2})
        );
        let frame = encode(&HostEvent::Daemon(Event::Lagged { missed: 3 })).unwrap();
        assert_eq!(frame, json!({"type":"lagged","missed":3}));
    }
}
