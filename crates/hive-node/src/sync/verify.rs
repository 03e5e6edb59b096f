//! Checking a message another node hands over: it must carry its author's
//! valid gossipsub signature, so that a node cannot pass off a message of
//! its own making as someone else's. What gossipsub signs (the libp2p pubsub
//! spec): `"libp2p-pubsub:"` followed by the protobuf `Message` with fields
//! `from` (1), `data` (2), `seqno` (3), `topic` (4), without `signature`
//! and `key`.

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;

use crate::envelope;

const PREFIX: &[u8] = b"libp2p-pubsub:";
/// Multihash code of an identity hash (the key inlined in the peer id).
const IDENTITY: u64 = 0x00;

/// A message as kept, with what its author signed.
pub struct Signed<'a> {
    pub topic: &'a str,
    pub from: &'a str,
    pub id: &'a str,
    /// The payload as clients see it (envelope taken off).
    pub data: &'a [u8],
    pub seqno: &'a [u8],
    pub signature: &'a [u8],
    /// The author's public key (protobuf) when its peer id does not inline it.
    pub key: Option<&'a [u8]>,
}

/// Whether `message` is signed by its author.
pub fn verify(message: &Signed<'_>) -> bool {
    let Ok(author) = message.from.parse::<PeerId>() else {
        return false;
    };
    let Some(key) = public_key(&author, message.key) else {
        return false;
    };
    // What went over gossip: the envelope (when the id is one a publisher
    // chose) or the payload as it is.
    let enveloped =
        envelope::valid_id(message.id).then(|| envelope::wrap(message.id, message.data));
    enveloped
        .iter()
        .map(Vec::as_slice)
        .chain(std::iter::once(message.data))
        .any(|raw| key.verify(&signed_bytes(&author, raw, message), message.signature))
}

/// This node's signature over a message it published, as gossipsub made
/// it (`raw`: the bytes that went over gossip), and the public key to keep
/// with it when the peer id does not inline it. For the node's own
/// messages in its history: gossipsub does not hand its signature back.
pub fn sign(
    key: &Keypair,
    topic: &str,
    raw: &[u8],
    seqno: &[u8],
) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let author = key.public().to_peer_id();
    let probe = Signed {
        topic,
        from: "",
        id: "",
        data: &[],
        seqno,
        signature: &[],
        key: None,
    };
    let signature = key.sign(&signed_bytes(&author, raw, &probe)).ok()?;
    let inline = (author.as_ref().code() != IDENTITY).then(|| key.public().encode_protobuf());
    Some((signature, inline))
}

fn public_key(author: &PeerId, key: Option<&[u8]>) -> Option<PublicKey> {
    let key = match key {
        Some(bytes) => PublicKey::try_decode_protobuf(bytes).ok()?,
        None => {
            let hash = author.as_ref();
            if hash.code() != IDENTITY {
                return None;
            }
            PublicKey::try_decode_protobuf(hash.digest()).ok()?
        }
    };
    (key.to_peer_id() == *author).then_some(key)
}

fn signed_bytes(author: &PeerId, raw: &[u8], message: &Signed<'_>) -> Vec<u8> {
    let from = author.to_bytes();
    let mut out = Vec::with_capacity(PREFIX.len() + from.len() + raw.len() + 64);
    out.extend_from_slice(PREFIX);
    field(&mut out, 1, &from);
    field(&mut out, 2, raw);
    field(&mut out, 3, message.seqno);
    field(&mut out, 4, message.topic.as_bytes());
    out
}

/// A length-delimited protobuf field.
fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, (number << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed_by(key: &Keypair, _id: &str, _data: &[u8], raw: &[u8]) -> (String, Vec<u8>) {
        let (signature, inline) = sign(key, "t", raw, &[0, 0, 0, 0, 0, 0, 0, 7]).unwrap();
        assert_eq!(inline, None, "an ed25519 peer id inlines its key");
        (key.public().to_peer_id().to_string(), signature)
    }

    #[test]
    fn only_the_authors_signature_over_these_bytes_passes() {
        let author = Keypair::generate_ed25519();
        let (from, sig) = signed_by(&author, "id-1", b"hello", &envelope::wrap("id-1", b"hello"));
        let message = |data: &'static [u8], from: &str, sig: &[u8]| {
            let m = Signed {
                topic: "t",
                from,
                id: "id-1",
                data,
                seqno: &[0, 0, 0, 0, 0, 0, 0, 7],
                signature: sig,
                key: None,
            };
            verify(&m)
        };
        assert!(message(b"hello", &from, &sig), "the author's own message");
        assert!(!message(b"hellO", &from, &sig), "payload changed");
        let other = Keypair::generate_ed25519()
            .public()
            .to_peer_id()
            .to_string();
        assert!(
            !message(b"hello", &other, &sig),
            "claimed by another author"
        );
        let mut bad = sig.clone();
        bad[0] ^= 1;
        assert!(!message(b"hello", &from, &bad), "signature changed");
        // A plain (not enveloped) message is checked over its payload.
        let (from, sig) = signed_by(&author, "id-1", b"plain", b"plain");
        assert!(message(b"plain", &from, &sig));
    }
}
