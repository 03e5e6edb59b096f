//! This node's own messages, signed when another node asks for them.
//!
//! Gossipsub signs each message it publishes and does not hand the
//! signature back, so the node keeps what went over gossip (payload with
//! its envelope, sequence number) and signs it again here, on the read
//! side, only for the pages peers ask for: most own messages are never
//! asked for, and the publish path stays as cheap as before. The bytes
//! gossipsub signs are fixed and ed25519 signatures are deterministic, so
//! the signature is the one that went out.

use std::sync::Arc;

use libp2p::identity::Keypair;

use super::Kept;
use crate::envelope;

/// Kept messages as peers get them: own ones signed with `signer` and
/// their envelope taken off (what a receiving node keeps); own ones that
/// cannot be signed (no key, or an identity other than the one they were
/// published with) left out, since a peer would refuse them.
pub(super) fn finish(kept: Vec<Kept>, signer: Option<&Arc<Keypair>>) -> Vec<Kept> {
    kept.into_iter()
        .filter_map(|k| if k.own { signed(k, signer?) } else { Some(k) })
        .collect()
}

fn signed(mut kept: Kept, signer: &Keypair) -> Option<Kept> {
    if kept.from != signer.public().to_peer_id().to_string() {
        return None;
    }
    let seqno = kept.seqno.as_deref()?;
    let (signature, key) = crate::sync::sign(signer, &kept.topic, &kept.data, seqno)?;
    if let Some((_, payload)) = envelope::unwrap(&kept.data) {
        kept.data = payload.to_vec();
    }
    kept.signature = Some(signature);
    kept.key = key;
    kept.own = false;
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{verify, Signed};

    fn own(signer: &Keypair, raw: Vec<u8>, id: &str) -> Kept {
        Kept {
            seq: 1,
            own: true,
            topic: "t".into(),
            from: signer.public().to_peer_id().to_string(),
            id: id.into(),
            data: raw,
            seqno: Some(vec![0, 0, 0, 0, 0, 0, 0, 9]),
            signature: None,
            key: None,
        }
    }

    fn verifies(k: &Kept) -> bool {
        verify(&Signed {
            topic: &k.topic,
            from: &k.from,
            id: &k.id,
            data: &k.data,
            seqno: k.seqno.as_deref().unwrap_or_default(),
            signature: k.signature.as_deref().unwrap_or_default(),
            key: k.key.as_deref(),
        })
    }

    #[test]
    fn own_messages_go_out_signed_as_a_receiver_checks_them() {
        let me = Arc::new(Keypair::generate_ed25519());
        let enveloped = own(&me, envelope::wrap("m-1", b"hello"), "m-1");
        let plain = own(&me, b"plain".to_vec(), "not-an-envelope-id");
        let out = finish(vec![enveloped, plain], Some(&me));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data, b"hello", "the envelope is taken off");
        assert_eq!(out[1].data, b"plain");
        assert!(out.iter().all(verifies), "a receiving node accepts them");
    }

    #[test]
    fn own_messages_another_key_cannot_sign_are_left_out() {
        let me = Arc::new(Keypair::generate_ed25519());
        let other = Arc::new(Keypair::generate_ed25519());
        let kept = vec![own(&me, b"x".to_vec(), "x")];
        assert!(finish(kept.clone(), Some(&other)).is_empty());
        assert!(finish(kept, None).is_empty());
    }
}
