//! A gossipsub message's signature and key, for the node's message event.
//!
//! go's daemon hands its clients each message's `seqno`, `signature` and
//! `key` (clients deduplicate on `seqno`; some check the signature
//! themselves). rust-libp2p's gossipsub checks the signature and then drops
//! it: its `Message` has the sequence number but neither signature nor
//! key. Only its inbound data transform sees the raw message, so
//! [`KeepSignature`] notes them there, by author and sequence number, and
//! the node takes them back ([`Signatures::take`]) when it emits the
//! message. The transform also runs for duplicates the node never emits,
//! so the notes are bounded: the oldest go first.
//!
//! The same handle learns the sequence number gossipsub gives this node's
//! own publishes (it computes the message id from it, through
//! [`KeepSignature::message_id`]), so that the node can keep its own
//! messages in its history signed exactly as they went out (see
//! `Node::keep_own`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use libp2p::gossipsub::{DataTransform, Message, MessageId, RawMessage, TopicHash};
use libp2p::PeerId;

/// Notes kept for messages not emitted yet.
const CAPACITY: usize = 4096;

type Id = (PeerId, u64);

/// What gossipsub verified and then dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub signature: Vec<u8>,
    /// The author's public key, when its peer id does not inline it (RSA).
    pub key: Option<Vec<u8>>,
}

#[derive(Default)]
struct Notes {
    by_id: HashMap<Id, Signed>,
    order: VecDeque<Id>,
    /// The id and sequence number of this node's latest own message, as
    /// gossipsub numbered it inside `publish`.
    own: Option<(MessageId, u64)>,
}

/// The node's side: takes the notes back.
#[derive(Clone, Default)]
pub struct Signatures(Arc<Mutex<Notes>>);

/// Gossipsub's side: an identity transform that notes signatures.
#[derive(Clone)]
pub struct KeepSignature {
    notes: Signatures,
    /// This node: its own messages' sequence numbers are noted.
    me: PeerId,
}

/// A transform for gossipsub and the handle that reads what it noted;
/// `me` is this node's peer id.
pub fn new(me: PeerId) -> (KeepSignature, Signatures) {
    let signatures = Signatures::default();
    let keep = KeepSignature {
        notes: signatures.clone(),
        me,
    };
    (keep, signatures)
}

impl Signatures {
    fn note(&self, id: Id, signed: Signed) {
        let Ok(mut notes) = self.0.lock() else {
            return;
        };
        if notes.by_id.insert(id, signed).is_none() {
            notes.order.push_back(id);
        }
        while notes.order.len() > CAPACITY {
            if let Some(old) = notes.order.pop_front() {
                notes.by_id.remove(&old);
            }
        }
    }

    /// The signature noted for the message of `source` with `seqno`.
    pub fn take(&self, source: Option<PeerId>, seqno: Option<u64>) -> Option<Signed> {
        let id = (source?, seqno?);
        let mut notes = self.0.lock().ok()?;
        // Its place in `order` stays until it is evicted (a no-op then).
        notes.by_id.remove(&id)
    }

    /// The sequence number gossipsub gave this node's message `id`, when
    /// it was the latest one it published (taken once).
    pub fn take_own(&self, id: &MessageId) -> Option<u64> {
        let mut notes = self.0.lock().ok()?;
        match notes.own.take() {
            Some((own, seqno)) if own == *id => Some(seqno),
            _ => None,
        }
    }
}

impl KeepSignature {
    /// Gossipsub's message id ([`crate::envelope::message_id`]); for this
    /// node's own messages it also notes the sequence number. Gossipsub
    /// calls it inside `publish`, so the note is the publish's when the
    /// node takes it right after.
    pub fn message_id(&self, message: &Message) -> MessageId {
        let id = crate::envelope::message_id(message);
        if let (Some(source), Some(seqno)) = (message.source, message.sequence_number) {
            if source == self.me {
                if let Ok(mut notes) = self.notes.0.lock() {
                    notes.own = Some((id.clone(), seqno));
                }
            }
        }
        id
    }
}

impl DataTransform for KeepSignature {
    fn inbound_transform(&self, raw: RawMessage) -> Result<Message, std::io::Error> {
        if let (Some(source), Some(seqno), Some(signature)) =
            (raw.source, raw.sequence_number, raw.signature)
        {
            let key = raw.key;
            self.notes.note((source, seqno), Signed { signature, key });
        }
        Ok(Message {
            source: raw.source,
            data: raw.data,
            sequence_number: raw.sequence_number,
            topic: raw.topic,
        })
    }

    fn outbound_transform(
        &self,
        _topic: &TopicHash,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, std::io::Error> {
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(source: PeerId, seqno: u64, signature: &[u8]) -> RawMessage {
        RawMessage {
            source: Some(source),
            data: b"payload".to_vec(),
            sequence_number: Some(seqno),
            topic: TopicHash::from_raw("t"),
            signature: Some(signature.to_vec()),
            key: None,
            validated: true,
        }
    }

    #[test]
    fn the_signature_comes_back_once_for_its_message() {
        let (transform, signatures) = new(PeerId::random());
        let author = PeerId::random();
        let message = transform.inbound_transform(raw(author, 7, b"sig")).unwrap();
        assert_eq!(message.data, b"payload");
        assert_eq!(signatures.take(Some(author), Some(8)), None);
        let signed = signatures.take(Some(author), Some(7)).unwrap();
        assert_eq!(signed.signature, b"sig");
        assert_eq!(signatures.take(Some(author), Some(7)), None);
    }

    #[test]
    fn notes_never_taken_are_bounded() {
        let (transform, signatures) = new(PeerId::random());
        let author = PeerId::random();
        for seqno in 0..(CAPACITY as u64 + 10) {
            transform
                .inbound_transform(raw(author, seqno, b"s"))
                .unwrap();
        }
        assert_eq!(signatures.take(Some(author), Some(0)), None);
        assert!(signatures
            .take(Some(author), Some(CAPACITY as u64 + 9))
            .is_some());
        let notes = signatures.0.lock().unwrap();
        assert!(notes.by_id.len() <= CAPACITY);
        assert!(notes.order.len() <= CAPACITY);
    }
}
