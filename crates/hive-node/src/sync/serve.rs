//! The answering side of `/hive/sync/1.0.0`: pages of this node's history
//! for other nodes, as messages, as ids, or by id.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use hive_proto::Bytes;
use libp2p::PeerId;
use tokio::sync::Semaphore;

use super::{now_ms, wire, Stats, CONCURRENT, MAX_REQUESTS_PER_STREAM, PAGE, STEP_TIMEOUT};
use crate::history::{History, Kept};
use crate::lock;

/// Per-peer rate limit on the requests (pages) this node answers; shared by
/// all streams, so reopening a stream does not reset it.
#[derive(Clone)]
pub(super) struct RequestLimiter {
    pub(super) buckets: Arc<std::sync::Mutex<crate::limits::PerPeer>>,
    pub(super) refusals: Arc<crate::limits::RefusalCounts>,
}

impl RequestLimiter {
    /// May `peer` have one more page now? Counts a refusal when not.
    fn admit(&self, peer: PeerId) -> bool {
        if lock(&self.buckets).try_take(peer, 1.0, std::time::Instant::now()) {
            return true;
        }
        let n = self
            .refusals
            .sync
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if n.is_power_of_two() {
            tracing::warn!(%peer, refused = n, "sync requests refused: peer over its rate limit");
        }
        false
    }
}

/// Answer other nodes' requests from this node's history: one stream per
/// peer at a time and [`CONCURRENT`] in all, so a peer that floods requests
/// is refused while the others are served; past its rate limit a peer's
/// stream is closed (it asks again on a later connection).
pub(super) async fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    history: History,
    stats: Stats,
    limiter: RequestLimiter,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENT));
    let busy: Arc<std::sync::Mutex<HashSet<PeerId>>> = Arc::default();
    while let Some((peer, stream)) = incoming.next().await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "sync request refused: busy");
            stats.refused();
            continue;
        };
        if !lock(&busy).insert(peer) {
            tracing::debug!(%peer, "sync request refused: this peer has one open");
            stats.refused();
            continue;
        }
        let (history, busy, stats) = (history.clone(), busy.clone(), stats.clone());
        let limiter = limiter.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &history, &stats, |_| limiter.admit(peer)).await {
                tracing::debug!(%peer, error = %e, "sync stream ended");
            }
            lock(&busy).remove(&peer);
            drop(slot);
        });
    }
}

async fn answer(
    mut stream: libp2p::Stream,
    history: &History,
    stats: &Stats,
    admit: impl Fn(&wire::Request) -> bool,
) -> Result<(), wire::WireError> {
    for _ in 0..MAX_REQUESTS_PER_STREAM {
        let request = match tokio::time::timeout(
            STEP_TIMEOUT,
            wire::read::<wire::Request>(&mut stream),
        )
        .await
        {
            Ok(Ok(Some((request, size)))) => {
                stats.traffic(0, size);
                request
            }
            Ok(Ok(None)) | Err(_) => return Ok(()),
            Ok(Err(e)) => return Err(e),
        };
        if !admit(&request) {
            return Ok(());
        }
        let response = respond(history, request).await;
        let sent = tokio::time::timeout(STEP_TIMEOUT, wire::write(&mut stream, &response))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        stats.traffic(sent, 0);
        stats.served();
    }
    Ok(())
}

/// What one request gets: the messages kept since a moment, their ids, or
/// the messages asked for by id. An unreadable history answers nothing.
async fn respond(history: &History, request: wire::Request) -> wire::Response {
    let limit = request.limit.clamp(1, PAGE) as usize;
    // On the asker's clock: shifted onto this node's.
    let since_ms = match request.clock_ms {
        Some(clock) => request
            .since_ms
            .saturating_add(now_ms().saturating_sub(clock)),
        None => request.since_ms,
    };
    let topic = request.topic;
    let mut response = wire::Response {
        messages: Vec::new(),
        more: false,
        ids: Vec::new(),
        now_ms: Some(now_ms()),
    };
    // No entry has a number above the newest, so nothing is kept after it:
    // the answer of an idle round, given without a trip to the blocking
    // pool (most rounds of a quiet topic; each trip woke two threads).
    if request.only.is_empty() && request.after >= history.newest() {
        return response;
    }
    let read = if !request.only.is_empty() {
        let keys = request.only.into_iter().map(|k| (k.from, k.id)).collect();
        history.signed_by_ids(topic, keys).await.map(|kept| {
            response.messages = messages(kept);
        })
    } else if request.ids_only {
        let listed = history.signed_ids_since(topic, since_ms, request.after, limit);
        listed.await.map(|ids| {
            response.more = ids.len() == limit;
            response.ids = ids
                .into_iter()
                .map(|(seq, from, id, ms)| wire::Listed { seq, from, id, ms })
                .collect();
        })
    } else {
        let kept = history.signed_since(topic, since_ms, request.after, limit);
        kept.await.map(|kept| {
            response.more = kept.len() == limit;
            response.messages = messages(kept);
        })
    };
    if let Err(e) = read {
        tracing::warn!(error = %e, "sync: history not readable");
    }
    response
}

fn messages(kept: Vec<Kept>) -> Vec<wire::Message> {
    kept.into_iter()
        .filter_map(|k| {
            Some(wire::Message {
                seq: k.seq,
                from: k.from,
                id: k.id,
                data: Bytes(k.data),
                seqno: Bytes(k.seqno?),
                signature: Bytes(k.signature?),
                key: k.key.map(Bytes),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Entry, HistoryConfig, Intake, Origin};

    fn ids_after(after: u64) -> wire::Request {
        wire::Request {
            topic: "t".into(),
            since_ms: 0,
            after,
            limit: PAGE,
            ids_only: true,
            only: Vec::new(),
            clock_ms: None,
        }
    }

    /// The idle answer comes from the newest entry number; it must not hide
    /// that entry itself, nor one kept after the asker's cursor, nor this
    /// node's own messages (which take no client number, so the clients'
    /// head does not move for them: the author of a message is often its
    /// only source).
    #[tokio::test]
    async fn an_idle_round_is_answered_empty_and_a_new_message_is_still_listed() {
        let events = hive_proto::fanout::Fanout::new(16);
        let (mut intake, history, _acks) = Intake::open(&HistoryConfig::at(None), events).unwrap();
        assert!(respond(&history, ids_after(0)).await.ids.is_empty());
        let message = |id: &str, origin| Entry::Message {
            topic: "t".into(),
            from: "author".into(),
            id: id.into(),
            data: b"x".to_vec(),
            seqno: Some(Bytes(vec![1])),
            signature: Some(Bytes(vec![2])),
            key: None,
            origin,
        };
        intake.offer(message("own", Origin::Own));
        intake.offer(message("gossip", Origin::Gossip));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        // Both written (the newest number is published before the head).
        while history.newest() < 2 || history.head() < 1 {
            assert!(tokio::time::Instant::now() < deadline, "never written");
            tokio::task::yield_now().await;
        }
        assert_eq!(history.head(), 1, "the own message has no client number");
        let listed = |r: wire::Response| r.ids.into_iter().map(|l| l.id).collect::<Vec<_>>();
        assert_eq!(
            listed(respond(&history, ids_after(0)).await),
            ["own", "gossip"]
        );
        assert_eq!(listed(respond(&history, ids_after(1)).await), ["gossip"]);
        assert!(respond(&history, ids_after(2)).await.ids.is_empty());
    }
}
