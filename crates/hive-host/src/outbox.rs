//! The dispatcher that drains the durable outbox into the daemon.
//!
//! The API only writes to the outbox ([`Store::push`]) and wakes this task.
//! The task hands due rows to whatever daemon is running, in order, and marks
//! them acknowledged when the daemon says so. Failures are retried with
//! backoff until the row's time to live runs out; then the row is reported
//! as an `expired` event, never dropped silently.
//!
//! Order: publishes go out in outbox order; a publish waiting for its retry
//! (no peers yet) holds back the later publishes of its topic
//! ([`Store::due`]), so they cannot overtake it. Direct messages are sent with
//! at most one in flight per peer, so a slow or absent peer holds up only its
//! own queue.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_proto::{ErrorCode, Op};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::ipc_client::{IpcClient, IpcError};
use crate::state::HostEvent;
use crate::store::{now_ms, InKind, OutItem, OutKind, Store};
use crate::supervisor::Supervisor;
use hive_proto::backoff::Backoff;
use hive_proto::sync::lock;

/// Rows fetched per pass.
const BATCH: usize = 512;
/// Pass interval when nothing wakes the dispatcher (retries come due).
const IDLE_TICK: Duration = Duration::from_millis(250);
/// With nothing waiting, sweep (forget old acknowledged rows and
/// idempotency keys) only every this many seconds: a pass and a sweep are
/// SQLite queries, and a host of hundreds of idle nodes made nine a second
/// per node (the host's largest idle cost in a profile of 100 nodes).
const IDLE_SWEEP_SECS: u32 = 30;
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Retry waits: from a quarter second, doubling, up to a minute.
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(60));

/// Why a direct message will never be delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Undeliverable {
    /// The daemon refused it for good (a bad peer id, ...).
    #[error("{0}")]
    Refused(String),
    /// Its time to live ran out; the last reason it was not delivered.
    #[error("expired: {0}")]
    Expired(String),
}

/// How a direct message ended, for an API call waiting on it.
pub type AckResult = Result<(), Undeliverable>;

#[derive(Clone)]
pub struct Outbox {
    store: Store,
    supervisor: Supervisor,
    wake: Arc<Notify>,
    /// API calls waiting for a direct message's acknowledgement, by id.
    waiters: Arc<Mutex<HashMap<String, Vec<oneshot::Sender<AckResult>>>>>,
    /// Peers with a direct message in flight.
    busy_peers: Arc<Mutex<HashSet<String>>>,
}

fn backoff_ms(attempts: i64) -> i64 {
    let failures = attempts.clamp(0, i64::from(u32::MAX)) as u32;
    RETRY_BACKOFF.delay(failures).as_millis() as i64
}

/// What to do with a row after one attempt.
enum Verdict {
    Delivered,
    /// Try again later (the peer or topic is not reachable yet).
    Retry(String),
    /// The daemon is gone; the row waits for the next one, untouched.
    NoDaemon,
    /// The daemon refused the row for good (bad topic, bad peer id...).
    Refused(String),
}

fn verdict(result: Result<serde_json::Value, IpcError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Delivered,
        Err(IpcError::Daemon(body)) => match body.code {
            ErrorCode::BadArgs | ErrorCode::UnknownOp | ErrorCode::BadFrame => {
                Verdict::Refused(body.to_string())
            }
            ErrorCode::ShuttingDown => Verdict::NoDaemon,
            _ => Verdict::Retry(body.to_string()),
        },
        Err(IpcError::Timeout { .. }) => Verdict::Retry("the daemon did not answer in time".into()),
        Err(_) => Verdict::NoDaemon,
    }
}

impl Outbox {
    pub fn new(store: Store, supervisor: Supervisor) -> Self {
        Outbox {
            store,
            supervisor,
            wake: Arc::new(Notify::new()),
            waiters: Arc::new(Mutex::new(HashMap::new())),
            busy_peers: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Something was added: run a pass now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when the direct message `id` is acknowledged, refused or expired.
    pub fn wait_for_ack(&self, id: &str) -> oneshot::Receiver<AckResult> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters)
            .entry(id.to_owned())
            .or_default()
            .push(tx);
        rx
    }

    fn resolve(&self, id: &str, result: AckResult) {
        if let Some(waiters) = lock(&self.waiters).remove(id) {
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }

    /// The dispatcher loop; returns on shutdown.
    pub async fn run(self, shutdown: CancellationToken) {
        // A host that was killed may have had acknowledged rows whose
        // messages never left its daemon: send the recent window again.
        match self.store.resend_all_acked().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                n,
                "re-sending recently acknowledged messages after a restart"
            ),
            Err(e) => tracing::error!(error = %e, "outbox resend failed"),
        }
        let mut seen_restarts = self.supervisor.snapshot().restarts;
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        let mut idle_sweeps = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_TICK) => {}
                _ = sweep.tick() => {
                    // Only waiting rows expire; the rest of a sweep can wait.
                    idle_sweeps += 1;
                    if self.store.waiting() || idle_sweeps >= IDLE_SWEEP_SECS {
                        idle_sweeps = 0;
                        self.sweep().await;
                    }
                }
            }
            let restarts = self.supervisor.snapshot().restarts;
            if restarts != seen_restarts {
                seen_restarts = restarts;
                match self.store.resend_recent().await {
                    Ok(n) if n > 0 => {
                        tracing::info!(
                            n,
                            "daemon restarted: re-sending its last acknowledged messages"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "outbox resend failed"),
                }
            }
            if !self.store.waiting() {
                self.update_depth().await;
                continue; // nothing is due: no query
            }
            let Some(client) = self.supervisor.client() else {
                continue;
            };
            if let Err(e) = self.pass(&client).await {
                tracing::error!(error = %e, "outbox pass failed");
            }
            self.update_depth().await;
        }
    }

    async fn update_depth(&self) {
        if let Ok(depth) = self.store.depth().await {
            self.supervisor.metrics().outbox_depth.set(depth as i64);
        }
    }

    /// One pass over the due rows.
    async fn pass(&self, client: &IpcClient) -> Result<(), crate::store::StoreError> {
        let due = self.store.due(BATCH).await?;
        let mut claimed_peers = HashSet::new();
        // Publishes are pipelined: every due one is sent at once, in order
        // (the daemon applies them in arrival order), then the answers are
        // settled in that order and acknowledged in one transaction.
        let mut publishing = Vec::new();
        let mut daemon_gone = false;
        for item in due {
            match item.kind {
                OutKind::Publish | OutKind::PublishPlain => {
                    if daemon_gone {
                        continue;
                    }
                    let op = Op::Publish {
                        topic: item.target.clone(),
                        data: item.data.clone().into(),
                        // The envelope carries the stable id; plain messages
                        // get gossipsub's own.
                        id: (item.kind == OutKind::Publish).then(|| item.id.clone()),
                    };
                    let trace = format!("msg:{}", item.id);
                    match crate::trace::sync_scope(trace, || client.send(op, PUBLISH_TIMEOUT)) {
                        Ok(answer) => publishing.push((item, answer)),
                        // The rest waits for the next daemon.
                        Err(_) => daemon_gone = true,
                    }
                }
                OutKind::Direct => {
                    // Only the oldest due message per peer, one in flight.
                    if !claimed_peers.insert(item.target.clone()) {
                        continue;
                    }
                    if !lock(&self.busy_peers).insert(item.target.clone()) {
                        continue;
                    }
                    let this = self.clone();
                    let client = client.clone();
                    tokio::spawn(async move {
                        let peer = item.target.clone();
                        if let Err(e) = this.send_direct(&client, item).await {
                            tracing::error!(error = %e, "outbox direct send failed");
                        }
                        lock(&this.busy_peers).remove(&peer);
                        this.wake();
                    });
                }
            }
        }
        let mut delivered = Vec::new();
        let mut retried_topics = HashSet::new();
        for (item, answer) in publishing {
            match verdict(answer.await) {
                Verdict::Delivered => {
                    delivered.push(item.seq);
                    self.supervisor.metrics().published.inc();
                }
                Verdict::Retry(why) => {
                    if retried_topics.insert(item.target.clone()) {
                        tracing::debug!(topic = %item.target, %why, "publish deferred");
                    }
                    let next = now_ms() + backoff_ms(item.attempts);
                    self.store.retry(item.seq, next, why).await?;
                }
                Verdict::Refused(why) => self.refuse(item, why).await?,
                // Left unacknowledged: the next daemon gets it.
                Verdict::NoDaemon => {}
            }
        }
        self.store.ack_many(delivered).await?;
        Ok(())
    }

    async fn send_direct(
        &self,
        client: &IpcClient,
        item: OutItem,
    ) -> Result<(), crate::store::StoreError> {
        let op = Op::Send {
            peer_id: item.target.clone(),
            data: item.data.clone().into(),
            id: Some(item.id.clone()),
        };
        let trace = format!("msg:{}", item.id);
        let answer = crate::trace::scope(trace, client.request(op, SEND_TIMEOUT)).await;
        match verdict(answer) {
            Verdict::Delivered => {
                self.store.ack(item.seq).await?;
                self.supervisor.metrics().direct_out.inc();
                self.resolve(&item.id, Ok(()));
            }
            Verdict::Retry(why) => {
                tracing::debug!(id = %item.id, peer = %item.target, %why, "direct message will be retried");
                let next = now_ms() + backoff_ms(item.attempts);
                self.store.retry(item.seq, next, why).await?;
            }
            Verdict::Refused(why) => {
                self.resolve(&item.id, Err(Undeliverable::Refused(why.clone())));
                self.refuse(item, why).await?;
            }
            Verdict::NoDaemon => {}
        }
        Ok(())
    }

    /// A row the daemon will never take: report it and drop it.
    async fn refuse(&self, item: OutItem, why: String) -> Result<(), crate::store::StoreError> {
        tracing::warn!(id = %item.id, target = %item.target, %why, "message refused by the daemon");
        self.report(InKind::Failed, &item, &why).await?;
        self.store.fail(item.seq).await
    }

    /// Take out expired rows and report each one.
    async fn sweep(&self) {
        match self.store.sweep().await {
            Ok(expired) => {
                for item in expired {
                    tracing::warn!(id = %item.id, target = %item.target, "message expired undelivered");
                    let why = item
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "time to live ran out".into());
                    self.resolve(&item.id, Err(Undeliverable::Expired(why.clone())));
                    if let Err(e) = self.report(InKind::Expired, &item, &why).await {
                        tracing::error!(error = %e, "cannot record an expired message");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "outbox sweep failed"),
        }
    }

    /// Record an undeliverable message in the inbox and the event stream.
    async fn report(
        &self,
        kind: InKind,
        item: &OutItem,
        why: &str,
    ) -> Result<(), crate::store::StoreError> {
        let topic = item.kind.is_publish().then(|| item.target.clone());
        let cursor = self
            .store
            .insert_inbound(
                kind,
                item.id.clone(),
                topic,
                item.target.clone(),
                item.data.clone(),
            )
            .await?;
        if let Some(cursor) = cursor {
            self.supervisor.publish_event(HostEvent::Undelivered {
                cursor,
                kind,
                id: item.id.clone(),
                target: item.target.clone(),
                direct: item.kind == OutKind::Direct,
                reason: why.to_owned(),
            });
        }
        Ok(())
    }
}
