//! A client of the Hive IPC, speaking it through `hive-proto`'s types and
//! codec: a change of the protocol breaks this build, not a benchmark run.

use futures_util::{SinkExt, StreamExt};
use hive_proto::codec::{decode_server_frame, encode};
use hive_proto::{ClientFrame, Event, Op, Request, ServerFrame, PROTOCOL_VERSION};
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

/// A request frame as the echo server sends it back.
#[derive(Deserialize)]
struct Echoed {
    #[serde(rename = "type")]
    kind: String,
    id: u64,
}

/// The id of an answer and whether it is an error; `None` for events and
/// anything else. The echo server's answer is the request itself.
pub fn answer_id(text: &str) -> Option<(u64, bool)> {
    match decode_server_frame(text) {
        Ok(ServerFrame::Response(r)) => Some((r.id?, r.error.is_some())),
        Ok(_) => None,
        Err(_) => {
            let echoed: Echoed = serde_json::from_str(text).ok()?;
            (echoed.kind == "request").then_some((echoed.id, false))
        }
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
    fn answers_and_events() {
        let err = r#"{"type":"response","id":3,"error":{"code":"unknown_op","message":"x"}}"#;
        assert_eq!(answer_id(err), Some((3, true)));
        let ok = r#"{"type":"response","id":4,"result":{}}"#;
        assert_eq!(answer_id(ok), Some((4, false)));
        let lagged = r#"{"type":"event","event":"lagged","missed":5}"#;
        assert_eq!(answer_id(lagged), None);
        assert_eq!(event(lagged), Some(Event::Lagged { missed: 5 }));
    }
}
