//! Decoding of frames with errors precise enough to answer them.
//!
//! A plain `serde_json::from_str::<ClientFrame>` would turn every mistake into
//! one opaque error and lose the request id. The daemon must answer a bad
//! request *with its id* and a code saying what was wrong (unknown op vs. bad
//! arguments vs. not JSON at all), so decoding goes through a `Value` first.

use serde_json::Value;

use crate::{ClientFrame, ErrorBody, ErrorCode, Op, Request, ServerFrame};

/// Why a frame could not be decoded, with the request id when it was readable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct FrameError {
    pub id: Option<u64>,
    pub error: ErrorBody,
}

impl FrameError {
    fn new(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        FrameError {
            id,
            error: ErrorBody::new(code, message),
        }
    }
}

/// Decode one client frame (the text of a WebSocket message), checking its
/// size against `max_bytes` first.
pub fn decode_client_frame(text: &str, max_bytes: usize) -> Result<ClientFrame, FrameError> {
    if text.len() > max_bytes {
        return Err(FrameError::new(
            None,
            ErrorCode::FrameTooLarge,
            format!(
                "frame of {} bytes exceeds the limit of {max_bytes} bytes",
                text.len()
            ),
        ));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| FrameError::new(None, ErrorCode::BadFrame, format!("invalid JSON: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(FrameError::new(
            None,
            ErrorCode::BadFrame,
            "a frame must be a JSON object",
        ));
    };
    let id = map.get("id").and_then(Value::as_u64);
    let kind = map.get("type").and_then(Value::as_str);
    match kind {
        Some("hello") => serde_json::from_value::<ClientFrame>(value.clone())
            .map_err(|e| FrameError::new(id, ErrorCode::BadFrame, format!("invalid hello: {e}"))),
        Some("request") => {
            let Some(id) = id else {
                return Err(FrameError::new(
                    None,
                    ErrorCode::BadFrame,
                    "a request needs a numeric \"id\" (unsigned integer)",
                ));
            };
            let op_name = match map.get("op") {
                Some(Value::String(name)) => name.as_str(),
                Some(_) => {
                    return Err(FrameError::new(
                        Some(id),
                        ErrorCode::BadFrame,
                        "\"op\" must be a string",
                    ))
                }
                None => {
                    return Err(FrameError::new(
                        Some(id),
                        ErrorCode::BadFrame,
                        "a request needs an \"op\"",
                    ))
                }
            };
            if !Op::NAMES.contains(&op_name) {
                return Err(FrameError::new(
                    Some(id),
                    ErrorCode::UnknownOp,
                    format!(
                        "unknown op {op_name:?}; known ops: {}",
                        Op::NAMES.join(", ")
                    ),
                ));
            }
            let mut op_value = serde_json::Map::new();
            op_value.insert("op".into(), Value::String(op_name.to_owned()));
            if let Some(args) = map.get("args") {
                if !args.is_null() {
                    op_value.insert("args".into(), args.clone());
                }
            }
            let op: Op = serde_json::from_value(Value::Object(op_value)).map_err(|e| {
                FrameError::new(
                    Some(id),
                    ErrorCode::BadArgs,
                    format!("invalid args for {op_name:?}: {e}"),
                )
            })?;
            Ok(ClientFrame::Request(Request { id, op }))
        }
        Some(other) => Err(FrameError::new(
            id,
            ErrorCode::BadFrame,
            format!("unknown frame type {other:?}; expected \"hello\" or \"request\""),
        )),
        None => Err(FrameError::new(
            id,
            ErrorCode::BadFrame,
            "a frame needs a string \"type\"",
        )),
    }
}

/// Decode one server frame. Clients use this; it is a plain serde decode
/// because the daemon only ever sends well-formed frames.
pub fn decode_server_frame(text: &str) -> Result<ServerFrame, serde_json::Error> {
    serde_json::from_str(text)
}

/// Encode a frame as JSON text. Serializing these types cannot fail (all keys
/// are strings, no non-finite floats are produced by the daemon), but a
/// failure is still reported rather than panicking.
pub fn encode<T: serde::Serialize>(frame: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bytes, Event, Response};

    const MAX: usize = 1024;

    #[test]
    fn request_round_trips_through_json() {
        let frame = ClientFrame::Request(Request {
            id: 7,
            op: Op::Publish {
                topic: "chat".into(),
                data: Bytes(vec![0, 255, 1]),
                id: None,
            },
        });
        let text = encode(&frame).unwrap();
        assert_eq!(
            text,
            r#"{"type":"request","id":7,"op":"publish","args":{"topic":"chat","data":"AP8B"}}"#
        );
        assert_eq!(decode_client_frame(&text, MAX).unwrap(), frame);
    }

    #[test]
    fn op_without_args_round_trips() {
        let text = r#"{"type":"request","id":1,"op":"status"}"#;
        let frame = decode_client_frame(text, MAX).unwrap();
        assert_eq!(
            frame,
            ClientFrame::Request(Request {
                id: 1,
                op: Op::Status
            })
        );
        let back = encode(&frame).unwrap();
        assert_eq!(decode_client_frame(&back, MAX).unwrap(), frame);
    }

    #[test]
    fn unknown_op_keeps_the_id() {
        let err = decode_client_frame(r#"{"type":"request","id":9,"op":"fly"}"#, MAX).unwrap_err();
        assert_eq!(err.id, Some(9));
        assert_eq!(err.error.code, ErrorCode::UnknownOp);
    }

    #[test]
    fn bad_args_keep_the_id() {
        let err = decode_client_frame(
            r#"{"type":"request","id":3,"op":"publish","args":{"topic":1}}"#,
            MAX,
        )
        .unwrap_err();
        assert_eq!(err.id, Some(3));
        assert_eq!(err.error.code, ErrorCode::BadArgs);
        let err = decode_client_frame(
            r#"{"type":"request","id":4,"op":"publish","args":{"topic":"t","data":"***"}}"#,
            MAX,
        )
        .unwrap_err();
        assert_eq!(err.error.code, ErrorCode::BadArgs);
        assert!(
            err.error.message.contains("base64"),
            "{}",
            err.error.message
        );
    }

    #[test]
    fn malformed_and_oversized_frames_are_classified() {
        assert_eq!(
            decode_client_frame("{not json", MAX)
                .unwrap_err()
                .error
                .code,
            ErrorCode::BadFrame
        );
        assert_eq!(
            decode_client_frame("[1,2]", MAX).unwrap_err().error.code,
            ErrorCode::BadFrame
        );
        assert_eq!(
            decode_client_frame(r#"{"type":"request","op":"status"}"#, MAX)
                .unwrap_err()
                .error
                .code,
            ErrorCode::BadFrame
        );
        let big = format!(
            r#"{{"type":"request","id":1,"op":"status","pad":"{}"}}"#,
            "x".repeat(MAX)
        );
        assert_eq!(
            decode_client_frame(&big, MAX).unwrap_err().error.code,
            ErrorCode::FrameTooLarge
        );
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let ev = ServerFrame::Event(Event::Message {
            topic: "t".into(),
            from: "12D3".into(),
            id: "abc".into(),
            data: Bytes(b"hi".to_vec()),
        });
        let text = encode(&ev).unwrap();
        assert_eq!(
            text,
            r#"{"type":"event","event":"message","topic":"t","from":"12D3","id":"abc","data":"aGk="}"#
        );
        assert_eq!(decode_server_frame(&text).unwrap(), ev);

        let res = ServerFrame::Response(Response::err(
            Some(2),
            ErrorBody::new(ErrorCode::UnknownOp, "nope"),
        ));
        let text = encode(&res).unwrap();
        assert_eq!(
            text,
            r#"{"type":"response","id":2,"error":{"code":"unknown_op","message":"nope"}}"#
        );
        assert_eq!(decode_server_frame(&text).unwrap(), res);
    }

    #[test]
    fn every_op_name_is_known_to_the_decoder() {
        // Op::name and Op::NAMES must not drift apart.
        let ops = [
            Op::Status,
            Op::ListenAddrs,
            Op::Dial {
                addr: String::new(),
            },
            Op::Peers,
            Op::Disconnect {
                peer_id: String::new(),
            },
            Op::Subscribe {
                topic: String::new(),
            },
            Op::Unsubscribe {
                topic: String::new(),
            },
            Op::Topics,
            Op::Publish {
                topic: String::new(),
                data: Bytes::default(),
                id: Some("x".into()),
            },
            Op::Send {
                peer_id: String::new(),
                data: Bytes::default(),
                id: None,
            },
            Op::FindPeer {
                peer_id: String::new(),
            },
            Op::Provide {
                key: Bytes::default(),
            },
            Op::FindProviders {
                key: Bytes::default(),
            },
            Op::PutRecord {
                key: Bytes::default(),
                value: Bytes::default(),
            },
            Op::GetRecord {
                key: Bytes::default(),
            },
            Op::Ping {
                peer_id: String::new(),
            },
            Op::Shutdown,
        ];
        assert_eq!(ops.len(), Op::NAMES.len());
        for op in ops {
            assert!(Op::NAMES.contains(&op.name()));
            let text = encode(&ClientFrame::Request(Request {
                id: 1,
                op: op.clone(),
            }))
            .unwrap();
            assert_eq!(
                decode_client_frame(&text, MAX).unwrap(),
                ClientFrame::Request(Request { id: 1, op })
            );
        }
    }
}
