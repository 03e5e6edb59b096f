//! The envelope that lets a pubsub message keep one id across retries.
//!
//! Gossipsub names a message by its author and a sequence number that the
//! author's node picks at publish time, so a message published again after a
//! crash gets a new name and receivers cannot tell it from a new message. A
//! publisher that wants stable ids (the host's outbox) wraps the payload as
//!
//! ```text
//! MAGIC (6 bytes: 00 'h' 'i' 'v' 'e' 01) | id length (1 byte, 1..=64) | id (ASCII) | payload
//! ```
//!
//! and every Hive node derives the gossipsub message id from author + this id,
//! so gossipsub's own duplicate filter drops the retry and the receiving host
//! sees the same id. Plain payloads (no envelope) are untouched, so other
//! libp2p implementations interoperate as usual.

use libp2p::gossipsub::{Message, MessageId};

const MAGIC: &[u8; 6] = b"\x00hive\x01";
/// Longest id an envelope carries.
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` may be carried in an envelope.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Wrap `payload` with `id`; the caller has checked [`valid_id`].
pub fn wrap(id: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 1 + id.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(id.len() as u8);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Split an enveloped message into its id and payload; `None` for plain data
/// (or anything that only looks like an envelope).
pub fn unwrap(data: &[u8]) -> Option<(&str, &[u8])> {
    let rest = data.strip_prefix(MAGIC.as_slice())?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if rest.len() < len {
        return None;
    }
    let (id, payload) = rest.split_at(len);
    let id = std::str::from_utf8(id).ok()?;
    valid_id(id).then_some((id, payload))
}

/// Gossipsub message id: author + envelope id for enveloped messages,
/// gossipsub's usual author + sequence number otherwise.
pub fn message_id(message: &Message) -> MessageId {
    let source = message.source.map(|p| p.to_string()).unwrap_or_default();
    match unwrap(&message.data) {
        Some((id, _)) => MessageId::from(format!("{source}/{id}")),
        None => {
            let seqno = message.sequence_number.unwrap_or_default();
            MessageId::from(format!("{source}{seqno}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_then_unwrap() {
        let data = wrap("abc-123", b"\x00\xffpayload");
        assert_eq!(unwrap(&data), Some(("abc-123", &b"\x00\xffpayload"[..])));
        assert_eq!(unwrap(&wrap("x", b"")), Some(("x", &b""[..])));
    }

    #[test]
    fn plain_and_truncated_data_is_not_an_envelope() {
        assert_eq!(unwrap(b"hello"), None);
        assert_eq!(unwrap(b""), None);
        assert_eq!(unwrap(b"\x00hive\x01"), None);
        assert_eq!(unwrap(b"\x00hive\x01\x05ab"), None);
        assert_eq!(unwrap(b"\x00hive\x01\x00payload"), None);
        assert_eq!(unwrap(b"\x00hive\x01\x02a\x07"), None);
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("0123abcdef"));
        assert!(!valid_id(""));
        assert!(!valid_id("has space"));
        assert!(!valid_id(&"x".repeat(65)));
    }
}
