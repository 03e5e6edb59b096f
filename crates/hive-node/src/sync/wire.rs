//! `/hive/sync/1.0.0` frames: a 4-byte big-endian length, then JSON. The
//! asking node sends a [`Request`], the other answers one [`Response`]; the
//! asker may send the next request (the next page) on the same stream.
//!
//! A reconcile ([`super::reconcile`]) asks for ids first (`ids_only`: the
//! answer lists [`Listed`] ids instead of messages), then for the messages
//! it lacks by id (`only`). Both are fields an older peer ignores: it then
//! answers with whole messages, which the asker keeps all the same.

use futures::{AsyncReadExt, AsyncWriteExt};
use hive_proto::Bytes;
use serde::{Deserialize, Serialize};

/// Largest frame read: a page holds about 4 MiB of payload, base64 in JSON.
pub const MAX_FRAME: usize = 16 << 20;

/// Messages of one topic kept since a moment.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub topic: String,
    /// Received at or after this (Unix ms, the answering node's clock).
    pub since_ms: i64,
    /// With a number above this (the answering node's numbers; 0 at first).
    pub after: u64,
    pub limit: u32,
    /// Answer with ids ([`Response::ids`]), not messages.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ids_only: bool,
    /// Only these messages (of `topic`, whatever `since_ms` and `after`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<Key>,
    /// The asker's clock when it sent this (Unix ms): `since_ms` is then on
    /// the asker's clock, and the answering node shifts it onto its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_ms: Option<i64>,
}

/// A message's author and id: what the history is unique by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub from: String,
    pub id: String,
}

/// A kept message named by its ids only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listed {
    pub seq: u64,
    pub from: String,
    pub id: String,
    /// When the answering node received it (its clock, Unix ms).
    pub ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub messages: Vec<Message>,
    /// More may follow: ask again with `after` = the last message's `seq`.
    pub more: bool,
    /// For `ids_only`: the messages' ids, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<Listed>,
    /// The answering node's clock (Unix ms), to tell which of `ids` it
    /// received moments ago (gossip may still be bringing those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_ms: Option<i64>,
}

/// A message with what its author signed (verified by the asker).
#[derive(Debug, Serialize, Deserialize)]
pub struct Message {
    pub seq: u64,
    pub from: String,
    pub id: String,
    pub data: Bytes,
    pub seqno: Bytes,
    pub signature: Bytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Bytes>,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("sync stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("sync frame of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("sync frame is not valid: {0}")]
    Json(#[from] serde_json::Error),
}

pub async fn write<T: Serialize>(
    stream: &mut (impl futures::AsyncWrite + Unpin),
    frame: &T,
) -> Result<usize, WireError> {
    let body = serde_json::to_vec(frame)?;
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len()));
    }
    stream.write_all(&(body.len() as u32).to_be_bytes()).await?;
    stream.write_all(&body).await?;
    stream.flush().await?;
    Ok(4 + body.len())
}

/// The next frame, with its size on the wire; `None` when the other side
/// closed the stream cleanly.
pub async fn read<T: for<'de> Deserialize<'de>>(
    stream: &mut (impl futures::AsyncRead + Unpin),
) -> Result<Option<(T, usize)>, WireError> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(Some((serde_json::from_slice(&body)?, 4 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn a_request_round_trips() {
        let mut buf = Cursor::new(Vec::new());
        let request = Request {
            topic: "t".into(),
            since_ms: -5,
            after: 7,
            limit: 1000,
            ids_only: false,
            only: Vec::new(),
            clock_ms: None,
        };
        let written = write(&mut buf, &request).await.unwrap();
        let mut rd = Cursor::new(buf.into_inner());
        let (back, size): (Request, usize) = read(&mut rd).await.unwrap().unwrap();
        assert_eq!(size, written, "the size counted is the frame's");
        assert_eq!(
            (back.topic.as_str(), back.since_ms, back.after),
            ("t", -5, 7)
        );
        assert!(
            read::<Request>(&mut rd).await.unwrap().is_none(),
            "clean end"
        );
    }

    #[tokio::test]
    async fn hostile_frames_are_errors_never_panics_or_huge_allocations() {
        // Over the limit: refused from the length alone.
        let mut rd = Cursor::new(((MAX_FRAME + 1) as u32).to_be_bytes().to_vec());
        assert!(matches!(
            read::<Response>(&mut rd).await,
            Err(WireError::TooLarge(_))
        ));
        // Truncated body, wrong JSON, wrong shape, bad base64.
        let cases: Vec<Vec<u8>> = vec![
            vec![0, 0, 0, 9, b'{'],
            frame(b"not json"),
            frame(br#"{"messages": 5, "more": false}"#),
            frame(br#"{"messages": [{"seq": 1, "from": "x", "id": "i", "data": "%%", "seqno": "", "signature": ""}], "more": false}"#),
        ];
        for case in cases {
            let mut rd = Cursor::new(case.clone());
            assert!(read::<Response>(&mut rd).await.is_err(), "{case:?}");
        }
        // Random bytes (a fixed seed, so a failure is reproducible).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..(x % 64) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(x as u8);
            }
            x = x.wrapping_add(1);
            let mut rd = Cursor::new(frame(&bytes));
            let _ = read::<Response>(&mut rd).await;
            let mut rd = Cursor::new(bytes);
            let _ = read::<Request>(&mut rd).await;
        }
    }
}
