//! `/hive/sync/1.0.0` frames: a 4-byte big-endian length, then JSON. The
//! asking node sends a [`Request`], the other answers one [`Response`]; the
//! asker may send the next request (the next page) on the same stream.

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
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub messages: Vec<Message>,
    /// More may follow: ask again with `after` = the last message's `seq`.
    pub more: bool,
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

pub async fn write<T: Serialize>(stream: &mut libp2p::Stream, frame: &T) -> Result<(), WireError> {
    let body = serde_json::to_vec(frame)?;
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len()));
    }
    stream.write_all(&(body.len() as u32).to_be_bytes()).await?;
    stream.write_all(&body).await?;
    stream.flush().await?;
    Ok(())
}

/// The next frame; `None` when the other side closed the stream cleanly.
pub async fn read<T: for<'de> Deserialize<'de>>(
    stream: &mut libp2p::Stream,
) -> Result<Option<T>, WireError> {
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
    Ok(Some(serde_json::from_slice(&body)?))
}
