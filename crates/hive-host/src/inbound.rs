//! The inbound path: messages from the daemon into the host's store, none
//! lost and none twice.
//!
//! The daemon numbers every message it keeps (`history_seq`, consecutive
//! per daemon history). The host stores what it is pushed in batches, one
//! transaction per batch that also records the last number stored. A number
//! skipped (a queue between the daemon and here dropped something), a
//! `lagged` event, or a new connection (the host or its daemon restarted)
//! makes the host fetch what it has not stored from the daemon's history
//! (`Op::History`). So the queues in between may stay bounded: every drop
//! is a gap that is seen and repaired.

use hive_proto::fanout::Fanout;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hive_proto::{Event, HistoryResult, Op};

use crate::inbox::NewIn;
use crate::ipc_client::IpcClient;
use crate::kinds::InKind;
use crate::metrics::Metrics;
use crate::state::HostEvent;
use crate::store::Store;

/// Most rows stored in one transaction.
pub const MAX_BATCH: usize = 4096;
const HISTORY_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters of the repair work, for `/api/status` and `/metrics`.
#[derive(Debug, Default)]
pub struct InboundStats {
    /// Holes seen: a skipped number, a `lagged` event.
    pub gaps: AtomicU64,
    /// Messages fetched from the daemon's history to fill them.
    pub repaired: AtomicU64,
    /// Messages the daemon's history no longer had (pruned) when asked.
    pub lost: AtomicU64,
    /// Last history number stored.
    pub position: AtomicU64,
    /// The inbox's byte budget and what remote peers were refused.
    pub guard: crate::peer_guard::GuardStats,
}

/// How the host's store keeps up with its daemon's numbered history, as
/// `/api/status` shows it.
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Inbound)]
pub struct InboundSnapshot {
    /// Last history number stored.
    pub position: u64,
    /// The newest history number the daemon pushed to the host, stored or
    /// not: `received - position` is what waits for the store.
    pub received: u64,
    /// Holes seen (a queue dropped events, the host or daemon restarted).
    pub gaps: u64,
    /// Messages fetched from the daemon's history to fill them.
    pub repaired: u64,
    /// Messages pruned or evicted from the daemon's history before the host
    /// stored them.
    pub lost: u64,
}

impl InboundStats {
    pub fn snapshot(&self) -> InboundSnapshot {
        InboundSnapshot {
            position: self.position.load(Ordering::Relaxed),
            received: 0, // the link's, filled in by the supervisor
            gaps: self.gaps.load(Ordering::Relaxed),
            repaired: self.repaired.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

/// Why a batch could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot read the daemon's history: {0}")]
    History(#[from] crate::ipc_client::IpcError),
}

/// The host's place in one daemon's history, for one IPC connection.
pub struct Inbound {
    store: Store,
    client: IpcClient,
    events: Fanout<HostEvent>,
    metrics: Arc<Metrics>,
    stats: Arc<InboundStats>,
    journal: String,
    /// Last number stored.
    last: u64,
    /// Rows waiting for the next transaction (with their events).
    todo: Vec<Event>,
}

impl Inbound {
    /// Learn the daemon's journal and store whatever of it the host has not
    /// (everything after the stored position).
    pub async fn connect(
        store: Store,
        client: IpcClient,
        events: Fanout<HostEvent>,
        metrics: Arc<Metrics>,
        stats: Arc<InboundStats>,
    ) -> Result<Inbound, InboundError> {
        let page = fetch(&client, 0, 1).await?;
        let last = match store.daemon_position().await? {
            Some((journal, seq)) if journal == page.journal => seq,
            _ => 0,
        };
        let mut inbound = Inbound {
            store,
            client,
            events,
            metrics,
            stats,
            journal: page.journal,
            last,
            todo: Vec::new(),
        };
        inbound.stats.position.store(last, Ordering::Relaxed);
        let caught_up = inbound.repair(None).await?;
        if caught_up > 0 {
            tracing::info!(
                messages = caught_up,
                "stored what the daemon received while the host was not storing"
            );
        }
        Ok(inbound)
    }

    /// Take a batch of `message` / `direct` events as pushed (`lagged`:
    /// some were dropped on the way) and store it, with whatever it shows
    /// missing, before it is broadcast to the host's clients.
    pub async fn absorb(&mut self, batch: Vec<Event>, lagged: bool) -> Result<(), InboundError> {
        if lagged {
            self.note_gap();
        }
        for event in batch {
            match event.history_seq() {
                // Not numbered (an older daemon, or its history failed):
                // stored as it comes, deduplicated by id.
                None => self.todo.push(event),
                Some(seq) if seq <= self.last => {}
                Some(seq) => {
                    if seq > self.last + 1 {
                        self.note_gap();
                        self.repair(Some(seq)).await?;
                    }
                    self.last = seq;
                    self.todo.push(event);
                }
            }
            if self.todo.len() >= MAX_BATCH {
                self.flush().await?;
            }
        }
        if lagged {
            self.repair(None).await?;
        }
        self.flush().await
    }

    fn note_gap(&self) {
        self.stats.gaps.fetch_add(1, Ordering::Relaxed);
        self.metrics.inbound_gaps.inc();
    }

    /// Fetch from the daemon's history what follows `last`, up to (not
    /// including) `until`, or to its head. Returns how many were fetched.
    async fn repair(&mut self, until: Option<u64>) -> Result<u64, InboundError> {
        let mut fetched = 0;
        loop {
            if until.is_some_and(|u| self.last + 1 >= u) {
                break;
            }
            let page = fetch(&self.client, self.last, crate::inbound::MAX_BATCH as u32).await?;
            if page.first > self.last + 1 {
                let gone = page.first - self.last - 1;
                let gone = until.map_or(gone, |u| gone.min(u - self.last - 1));
                tracing::warn!(
                    missed = gone,
                    "messages were pruned from the daemon's history before the host stored them"
                );
                self.stats.lost.fetch_add(gone, Ordering::Relaxed);
            }
            let mut progressed = false;
            for event in page.events {
                let Some(seq) = event.history_seq() else {
                    continue;
                };
                if until.is_some_and(|u| seq >= u) {
                    break;
                }
                if seq > self.last {
                    self.last = seq;
                    self.todo.push(event);
                    fetched += 1;
                    progressed = true;
                }
            }
            if !progressed {
                if let Some(u) = until {
                    // The rest was pruned: skip to the event that showed the hole.
                    self.last = self.last.max(u - 1);
                }
                break;
            }
            self.flush().await?;
        }
        self.stats.repaired.fetch_add(fetched, Ordering::Relaxed);
        self.metrics.inbound_repaired.inc_by(fetched);
        Ok(fetched)
    }

    /// Store the pending rows in one transaction, then broadcast the new
    /// ones with their cursors.
    async fn flush(&mut self) -> Result<(), InboundError> {
        let events = std::mem::take(&mut self.todo);
        let rows: Vec<NewIn> = events.iter().filter_map(new_in).collect();
        let stored = self
            .store
            .insert_inbound_batch(
                rows,
                self.journal.clone(),
                self.last,
                self.stats.guard.budget,
            )
            .await?;
        self.stats.position.store(self.last, Ordering::Relaxed);
        let m = &self.metrics;
        self.stats
            .guard
            .count_evictions(stored.evicted, stored.bytes);
        m.guard.evicted(stored.evicted, stored.bytes);
        let cursors = stored.cursors;
        for (mut event, cursor) in events.into_iter().zip(cursors) {
            let Some(cursor) = cursor else {
                m.duplicates_dropped.inc();
                continue;
            };
            match event {
                Event::Message { .. } => {
                    m.received.inc();
                }
                Event::Direct { .. } => {
                    m.direct_in.inc();
                }
                _ => {}
            }
            event.clear_history_seq();
            // The daemon's number stays inside the host: API clients
            // resume by the inbox cursor.
            let _ = self.events.send(HostEvent::Stored { cursor, event });
        }
        Ok(())
    }
}

async fn fetch(client: &IpcClient, after: u64, limit: u32) -> Result<HistoryResult, InboundError> {
    let op = Op::History {
        after,
        limit: Some(limit),
    };
    Ok(client.request_typed(op, HISTORY_TIMEOUT).await?)
}

/// The inbox row of a `message` or `direct` event.
fn new_in(event: &Event) -> Option<NewIn> {
    match event {
        Event::Message {
            topic,
            from,
            id,
            data,
            ..
        } => Some(NewIn {
            kind: InKind::Message,
            id: id.clone(),
            topic: Some(topic.clone()),
            peer: from.clone(),
            data: data.0.clone(),
        }),
        Event::Direct { from, id, data, .. } => Some(NewIn {
            kind: InKind::Direct,
            id: id.clone(),
            topic: None,
            peer: from.clone(),
            data: data.0.clone(),
        }),
        _ => None,
    }
}
