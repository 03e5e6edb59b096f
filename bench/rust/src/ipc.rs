//! A client of the Hive IPC, speaking it through `hive-proto`'s types and
//! codec: a change of the protocol breaks this build, not a benchmark run.

use futures_util::{SinkExt, StreamExt};
use hive_proto::codec::{decode_server_frame, encode};
use hive_proto::{ClientFrame, ErrorBody, Event, Op, Request, ServerFrame, PROTOCOL_VERSION};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::args::AnyResult;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn ws_connect(url: &str) -> AnyResult<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    Ok(ws)
}

/// Connect and authenticate (any answer to the hello is accepted, so the
/// echo server passes too).
pub async fn connect(url: &str, token: Option<&str>) -> AnyResult<Ws> {
    let mut ws = ws_connect(url).await?;
    let hello = ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        token: token.unwrap_or("").to_string(),
    };
    ws.send(Message::text(encode(&hello)?)).await?;
    match ws.next().await {
        Some(Ok(Message::Text(_))) => Ok(ws),
        other => Err(format!("no answer to the hello: {other:?}").into()),
    }
}

/// The request frame for `op`.
pub fn request_frame(id: u64, op: Op) -> AnyResult<Message> {
    let frame = ClientFrame::Request(Request {
        id,
        trace: None,
        op,
    });
    Ok(Message::text(encode(&frame)?))
}

/// The operation `ipc-rtt` repeats, named on its command line.
#[derive(Clone)]
pub enum RttOp {
    /// An operation of the protocol (without arguments).
    Known(Op),
    /// A name the protocol does not know (`no_such_op`): the IPC layer
    /// answers it with `unknown_op` without asking the node, which is what
    /// the benchmark measures. Such a frame cannot be built from `Op`, so
    /// it is written here, deliberately outside the contract.
    Unknown(String),
}

impl RttOp {
    pub fn parse(name: &str) -> RttOp {
        match serde_json::from_value(serde_json::json!({ "op": name })) {
            Ok(op) => RttOp::Known(op),
            Err(_) => RttOp::Unknown(name.to_string()),
        }
    }

    pub fn frame(&self, id: u64) -> AnyResult<Message> {
        match self {
            RttOp::Known(op) => request_frame(id, op.clone()),
            RttOp::Unknown(name) => {
                let frame = serde_json::json!({"type": "request", "id": id, "op": name});
                Ok(Message::text(frame.to_string()))
            }
        }
    }
}

/// The head of a frame `ipc-rtt` reads: a Hive answer (`type: response`),
/// or its own request sent back by the echo server (`type: request`). The
/// result is skipped, not decoded, so the client's own cost stays small
/// beside a round trip and nearly the same for the Hive and the echo rows
/// (per `status` answer: 0.3 µs, against 1.3 µs to decode the whole
/// `ServerFrame` and 0.9 µs when hbench read it as a `serde_json::Value`;
/// per echoed request 0.1 µs). The field names
/// are `hive_proto::Response`'s; `tests::heads_of_encoded_frames` checks
/// them against frames that `hive-proto` itself encodes.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    id: Option<u64>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

/// The id of an answer and whether it is an error; `None` for events and
/// anything else. The echo server's answer is the request itself.
pub fn answer_id(text: &str) -> Option<(u64, bool)> {
    let head: Head = serde_json::from_str(text).ok()?;
    match head.kind.as_str() {
        "response" | "request" => Some((head.id?, head.error.is_some())),
        _ => None,
    }
}

/// One request and its typed result; events that arrive meanwhile are dropped.
pub async fn call<T: DeserializeOwned>(ws: &mut Ws, id: u64, op: Op) -> AnyResult<T> {
    let name = op.name();
    ws.send(request_frame(id, op)?).await?;
    loop {
        let msg = ws.next().await.ok_or("IPC closed")??;
        let Message::Text(text) = msg else { continue };
        let ServerFrame::Response(r) = decode_server_frame(&text)? else {
            continue;
        };
        if r.id != Some(id) {
            continue;
        }
        if let Some(e) = r.error {
            return Err(format!("{name}: {}", serde_json::to_string(&e)?).into());
        }
        let result = r.result.unwrap_or(serde_json::Value::Null);
        return Ok(serde_json::from_value(result)?);
    }
}

/// A pushed event, if `text` is one.
pub fn event(text: &str) -> Option<Event> {
    match decode_server_frame(text) {
        Ok(ServerFrame::Event(e)) => Some(e),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_ops_known_and_unknown() {
        assert!(matches!(RttOp::parse("status"), RttOp::Known(Op::Status)));
        assert!(matches!(RttOp::parse("no_such_op"), RttOp::Unknown(_)));
        let Message::Text(text) = RttOp::parse("status").frame(7).unwrap() else {
            panic!("a text frame");
        };
        // The echo server sends the request back: it counts as its answer.
        assert_eq!(answer_id(&text), Some((7, false)));
        let Message::Text(text) = RttOp::parse("no_such_op").frame(8).unwrap() else {
            panic!("a text frame");
        };
        assert_eq!(answer_id(&text), Some((8, false)));
    }

    #[test]
    fn heads_of_encoded_frames() {
        use hive_proto::{ErrorCode, Response};
        let encoded = |frame: ServerFrame| encode(&frame).unwrap();
        let err = ErrorBody::new(ErrorCode::UnknownOp, "x");
        let err = encoded(ServerFrame::Response(Response::err(Some(3), err)));
        assert_eq!(answer_id(&err), Some((3, true)));
        let ok = encoded(ServerFrame::Response(Response::ok(
            4,
            serde_json::json!({"a": [1]}),
        )));
        assert_eq!(answer_id(&ok), Some((4, false)));
        let lagged = encoded(ServerFrame::Event(Event::Lagged { missed: 5 }));
        assert_eq!(answer_id(&lagged), None);
        assert_eq!(event(&lagged), Some(Event::Lagged { missed: 5 }));
        let welcome = encoded(ServerFrame::Welcome {
            version: PROTOCOL_VERSION,
            peer_id: "p".into(),
            daemon_version: "v".into(),
        });
        assert_eq!(answer_id(&welcome), None);
    }
}
