//! Handing fetched messages to the history, and counting what was new.
//!
//! A node syncs with several peers at once, and they hold the same
//! messages (every subscriber keeps what it received, every author what it
//! published). What counts as fetched is what the history did not have
//! yet, as its writer decides; checking beforehand would race with the
//! other peers' answers on their way to the same writer.

use tokio::sync::oneshot;

use super::{verify, wire, Signed};
use crate::history::{Entry, History, Origin};

/// One page's messages on their way to the history.
pub(super) struct Handover<'a> {
    history: &'a History,
    topic: &'a str,
    pending: Vec<oneshot::Receiver<bool>>,
    /// Messages the history had not kept yet.
    pub kept: usize,
    /// Messages refused: not signed by their author.
    pub rejected: usize,
}

impl<'a> Handover<'a> {
    pub fn new(history: &'a History, topic: &'a str) -> Self {
        Handover {
            history,
            topic,
            pending: Vec::new(),
            kept: 0,
            rejected: 0,
        }
    }

    /// Verify `message` and hand it to the history (refused and counted
    /// when it is not signed by its author).
    pub async fn offer(&mut self, message: wire::Message) {
        let signed = Signed {
            topic: self.topic,
            from: &message.from,
            id: &message.id,
            data: &message.data.0,
            seqno: &message.seqno.0,
            signature: &message.signature.0,
            key: message.key.as_ref().map(|k| k.0.as_slice()),
        };
        if !verify(&signed) {
            tracing::warn!(from = %message.from, id = %message.id, "sync: a message without its author's valid signature was refused");
            self.rejected += 1;
            return;
        }
        let (verdict, answer) = oneshot::channel();
        let entry = Entry::Message {
            topic: self.topic.to_string(),
            from: message.from,
            id: message.id,
            data: message.data.0,
            seqno: Some(message.seqno),
            signature: Some(message.signature),
            key: message.key,
            origin: Origin::Fetched(verdict),
        };
        if self.history.keep_fetched(entry).await {
            self.pending.push(answer);
        }
    }

    /// Wait until the history has written what was handed over (one batch,
    /// usually) and count the new ones.
    pub async fn settle(&mut self) {
        for verdict in self.pending.drain(..) {
            if verdict.await.unwrap_or(false) {
                self.kept += 1;
            }
        }
    }
}
