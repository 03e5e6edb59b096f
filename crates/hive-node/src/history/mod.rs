//! The node's history: every gossipsub message and direct message it
//! received, numbered, in SQLite in its data directory (`history.db`).
//!
//! Why at the node (see docs/01_ARCHITECTURE.md, "Delivery guarantees"):
//! every client reaches the node (the host, the Python `Daemon`, the control
//! protocol), so one numbered history there lets each of them resume from a
//! position after it fell behind, restarted or crashed, without a copy of
//! this logic per client. Clients learn of a hole by a skipped
//! `history_seq` (or a `lagged` event) and fetch it with `Op::History`;
//! the event queues in between may therefore stay bounded and drop, because
//! a drop is always a detected gap that the history repairs.
//!
//! One writer thread owns the database: the node loop hands it entries
//! through a bounded channel, it writes whatever is queued in one
//! transaction, then pushes the stored events (each with its number) to the
//! clients and hands back the direct messages' acknowledgements: a direct
//! message is acknowledged to its sender only once it is in the WAL on disk,
//! where neither a crash of the daemon nor of its client can lose it. When
//! the writer falls behind, the node stops reading the network until it
//! catches up (push-back, not loss).

pub(crate) mod budget;
mod db;
mod own;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_proto::{Event, HistoryResult};
use libp2p::request_response::ResponseChannel;
use tokio::sync::mpsc;

use crate::behaviour::DirectAck;

pub use db::{HistoryError, Kept};

/// Entries queued for the writer before the node stops reading the network.
const INTAKE_CAPACITY: usize = 8192;
/// Most entries written in one transaction.
const MAX_BATCH: usize = 4096;
/// About the most payload bytes written in one transaction (always at least
/// one entry): what one commit adds to the WAL before the budget holds.
const MAX_BATCH_BYTES: usize = 32 << 20;
/// Most entries, and about the most payload bytes, in one `history` answer.
pub const MAX_PAGE: usize = 1000;
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// How much history a node keeps.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// The database file; `None`: a private in-memory database (tests, and
    /// nodes that must leave nothing on disk).
    pub path: Option<PathBuf>,
    /// Entries older than this are pruned.
    pub max_age: Duration,
    /// Entries kept per topic (and for direct messages), newest first.
    pub max_per_topic: u64,
    /// Most bytes kept in all (payloads and what is stored with them);
    /// past it the oldest entries are evicted and counted (0 = no budget).
    pub max_bytes: u64,
    /// Every batch's commit is fsynced (SQLite `synchronous = FULL`) before
    /// its direct messages are acknowledged to their senders and its
    /// entries pushed to clients; otherwise (`NORMAL`) a committed batch
    /// survives the process being killed but not a power loss.
    pub fsync: bool,
}

/// The default byte budget: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

impl HistoryConfig {
    /// The defaults: a day, 100,000 entries per topic and 1 GiB.
    pub fn at(path: Option<PathBuf>) -> Self {
        HistoryConfig {
            path,
            max_age: Duration::from_secs(24 * 3600),
            max_per_topic: 100_000,
            max_bytes: DEFAULT_MAX_BYTES,
            fsync: false,
        }
    }
}

/// Something the node received, on its way to the history.
pub(crate) enum Entry {
    Message {
        topic: String,
        from: String,
        id: String,
        /// The payload as clients see it (the envelope taken off).
        data: Vec<u8>,
        /// What the author signed with, as gossipsub delivered it (go's
        /// daemon clients deduplicate on `seqno`).
        seqno: Option<hive_proto::Bytes>,
        signature: Option<hive_proto::Bytes>,
        key: Option<hive_proto::Bytes>,
        /// Where it came from.
        origin: Origin,
    },
    Direct {
        from: String,
        id: String,
        data: Vec<u8>,
        /// Answered once the entry is on disk.
        ack: ResponseChannel<DirectAck>,
    },
}

/// Where a message came from.
pub(crate) enum Origin {
    /// Gossip.
    Gossip,
    /// This node published it: kept (with its signature) so that other
    /// nodes can fetch it by sync, never handed to clients (gossipsub does
    /// not hand a node its own messages either).
    Own,
    /// Fetched from another node by sync; told whether it was new (not
    /// kept already, from gossip or another peer's answer).
    Fetched(tokio::sync::oneshot::Sender<bool>),
}

impl Entry {
    /// Its payload's length.
    fn len(&self) -> usize {
        match self {
            Entry::Message { data, .. } | Entry::Direct { data, .. } => data.len(),
        }
    }
}

/// A direct message now stored: its acknowledgement may go out.
pub struct Acked {
    pub channel: ResponseChannel<DirectAck>,
    pub id: String,
}

/// Reads of the history; cheap to clone.
#[derive(Clone)]
pub struct History {
    reader: Arc<Mutex<rusqlite::Connection>>,
    journal: Arc<str>,
    head: Arc<AtomicU64>,
    newest: Arc<AtomicU64>,
    /// The writer's intake, for messages fetched from other nodes
    /// ([`crate::sync`]); weak, so that the writer still ends with the node.
    intake: mpsc::WeakSender<Entry>,
    /// Signs this node's own messages for the peers that ask ([`own`]).
    signer: Option<Arc<libp2p::identity::Keypair>>,
}

impl History {
    /// This node's key, to sign its own messages with when peers ask.
    pub(crate) fn with_signer(mut self, key: Option<libp2p::identity::Keypair>) -> Self {
        self.signer = key.map(Arc::new);
        self
    }

    /// The newest `history_seq` written.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// The highest entry number kept, own messages included: the number
    /// space of peers' sync cursors (not the clients' [`History::head`],
    /// which own messages do not move). Nothing kept has a number above it.
    pub fn newest(&self) -> u64 {
        self.newest.load(Ordering::Acquire)
    }

    /// Entries after `after`, oldest first (bounded by [`MAX_PAGE`] and
    /// [`MAX_PAGE_BYTES`]).
    pub async fn page(&self, after: u64, limit: Option<u32>) -> Result<HistoryResult, ReadError> {
        let limit = limit.map_or(MAX_PAGE, |l| (l as usize).clamp(1, MAX_PAGE));
        let reader = self.reader.clone();
        let journal = self.journal.to_string();
        tokio::task::spawn_blocking(move || {
            let conn = crate::lock(&reader);
            db::page(&conn, journal, after, limit)
        })
        .await
        .map_err(|e| ReadError::Task(e.to_string()))?
        .map_err(ReadError::Db)
    }

    /// Run `read` on the reader connection, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, HistoryError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = crate::lock(&reader);
            read(&conn)
        })
        .await
        .map_err(|e| HistoryError::Thread(std::io::Error::other(e.to_string())))?
        .map_err(HistoryError::Sql)
    }

    /// Signed messages of `topic` received since `since_ms` (Unix ms), after
    /// number `after`: what another node that was away asks for.
    pub async fn signed_since(
        &self,
        topic: String,
        since_ms: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Kept>, HistoryError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let signer = self.signer.clone();
        self.read(move |conn| {
            let kept = db::signed_since(conn, &topic, since_ms, after, limit)?;
            Ok(own::finish(kept, signer.as_ref()))
        })
        .await
    }

    /// Ids of what [`History::signed_since`] would answer: (number,
    /// author, id, received at).
    pub async fn signed_ids_since(
        &self,
        topic: String,
        since_ms: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String, String, i64)>, HistoryError> {
        let limit = limit.clamp(1, MAX_PAGE);
        self.read(move |conn| db::signed_ids_since(conn, &topic, since_ms, after, limit))
            .await
    }

    /// The signed messages of `topic` with these (author, id), at most
    /// [`MAX_PAGE`] asked.
    pub async fn signed_by_ids(
        &self,
        topic: String,
        mut keys: Vec<(String, String)>,
    ) -> Result<Vec<Kept>, HistoryError> {
        keys.truncate(MAX_PAGE);
        let signer = self.signer.clone();
        self.read(move |conn| {
            let kept = db::signed_by_ids(conn, &topic, &keys)?;
            Ok(own::finish(kept, signer.as_ref()))
        })
        .await
    }

    /// Which of these (author, id) messages this history does not hold.
    pub async fn missing(
        &self,
        keys: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, HistoryError> {
        if keys.is_empty() {
            // An idle round lists nothing: no trip to the blocking pool.
            return Ok(keys);
        }
        self.read(move |conn| db::missing(conn, keys)).await
    }

    /// Per topic, when its newest message was received (Unix ms).
    pub async fn newest_by_topic(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, HistoryError> {
        self.read(db::newest_by_topic).await
    }

    /// Keep a message fetched from another node (already verified, origin
    /// [`Origin::Fetched`], which hears whether it was new): a new one is
    /// numbered and pushed to the clients like gossip; one kept already
    /// (same author and id) is dropped by the writer. False once the node
    /// has stopped.
    pub(crate) async fn keep_fetched(&self, message: Entry) -> bool {
        match self.intake.upgrade() {
            Some(tx) => tx.send(message).await.is_ok(),
            None => false,
        }
    }
}

/// Why a page of the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Call(#[from] crate::node::CallError),
    /// The blocking read panicked or was cancelled.
    #[error("{0}")]
    Task(String),
    #[error("history: {0}")]
    Db(rusqlite::Error),
}

/// The node loop's side: hands entries to the writer and takes the
/// acknowledgements it hands back.
pub(crate) struct Intake {
    tx: mpsc::Sender<Entry>,
    /// One entry the full channel refused; the node reads no more from the
    /// network until it is handed over.
    backlog: Option<Entry>,
    /// The byte budget's counters, kept by the writer.
    budget: Arc<budget::Stats>,
}

impl Intake {
    /// Open (or create) the history and start its writer thread. Also
    /// returns where the acknowledgements of stored direct messages come.
    pub fn open(
        config: &HistoryConfig,
        events: hive_proto::fanout::Fanout<Event>,
    ) -> Result<(Intake, History, mpsc::UnboundedReceiver<Acked>), HistoryError> {
        let (writer, reader, journal, head) = db::open(config.path.as_deref())?;
        if config.fsync {
            writer.pragma_update(None, "synchronous", "FULL")?;
        }
        let head = Arc::new(AtomicU64::new(head));
        let newest = Arc::new(AtomicU64::new(db::newest_seq(&writer)?));
        let (tx, rx) = mpsc::channel(INTAKE_CAPACITY);
        let (acks_tx, acks) = mpsc::unbounded_channel();
        let limits = db::Limits {
            max_age_ms: config.max_age.as_millis() as i64,
            max_per_topic: config.max_per_topic,
            max_bytes: config.max_bytes,
        };
        let budget = Arc::new(budget::Stats::new(
            config.max_bytes,
            budget::stored_bytes(&writer)?,
        ));
        let writer_state = Writer {
            conn: writer,
            events,
            acks: acks_tx,
            limits,
            head: head.clone(),
            newest: newest.clone(),
            budget: budget.clone(),
        };
        std::thread::Builder::new()
            .name("hive-history".into())
            .spawn(move || writer_state.run(rx))
            .map_err(HistoryError::Thread)?;
        let history = History {
            reader: Arc::new(Mutex::new(reader)),
            journal: journal.into(),
            head,
            newest,
            intake: tx.downgrade(),
            signer: None,
        };
        let intake = Intake {
            tx,
            backlog: None,
            budget,
        };
        Ok((intake, history, acks))
    }

    /// The history against its byte budget (for `status`), as the writer
    /// keeps it.
    pub fn budget(&self) -> Arc<budget::Stats> {
        self.budget.clone()
    }

    /// Queue an entry; past the channel's capacity it is held and the node
    /// stops polling the network (see [`Intake::accepting`]).
    pub fn offer(&mut self, entry: Entry) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(entry)) => {
                tracing::debug!("history writer behind; pausing network reads");
                self.backlog = Some(entry);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("history writer stopped; entry dropped");
            }
        }
    }

    /// False while an entry waits for room: the node then reads nothing
    /// more from the network.
    pub fn accepting(&self) -> bool {
        self.backlog.is_none()
    }

    /// Wait for room and hand the held entry over.
    pub async fn flush(&mut self) {
        let Some(entry) = self.backlog.take() else {
            return;
        };
        if self.tx.send(entry).await.is_err() {
            tracing::error!("history writer stopped; entry dropped");
        }
    }
}

/// The writer thread's state: it owns the writing connection.
struct Writer {
    conn: rusqlite::Connection,
    events: hive_proto::fanout::Fanout<Event>,
    acks: mpsc::UnboundedSender<Acked>,
    limits: db::Limits,
    head: Arc<AtomicU64>,
    newest: Arc<AtomicU64>,
    budget: Arc<budget::Stats>,
}

impl Writer {
    /// One transaction per batch (which also holds the byte budget), then
    /// the stored events to the clients and the acknowledgements to the
    /// node. Ends when the node drops its [`Intake`].
    fn run(mut self, mut rx: mpsc::Receiver<Entry>) {
        let mut pruned_at = std::time::Instant::now();
        self.prune();
        while let Some(first) = rx.blocking_recv() {
            let batch = collect_batch(first, &mut rx);
            let (committed, seqs) = match db::write(&mut self.conn, &batch, self.limits.max_bytes) {
                Ok(w) => {
                    self.budget.record(w.evicted, w.bytes);
                    self.newest.fetch_max(w.newest, Ordering::AcqRel);
                    (true, w.seqs)
                }
                Err(e) => {
                    // Not stored: messages still go out live (without a
                    // number, so clients cannot resume them), direct
                    // messages stay unacknowledged and their senders try
                    // again.
                    tracing::error!(error = %e, n = batch.len(), "cannot write to the history");
                    (false, vec![None; batch.len()])
                }
            };
            if let Some(max) = seqs.iter().flatten().max() {
                self.head.fetch_max(*max, Ordering::AcqRel);
            }
            for (entry, seq) in batch.into_iter().zip(seqs) {
                deliver(entry, seq, committed, &self.events, &self.acks);
            }
            if pruned_at.elapsed() >= db::PRUNE_INTERVAL {
                pruned_at = std::time::Instant::now();
                self.prune();
            }
        }
        tracing::debug!("history writer stopped");
    }

    /// The retention policy by age and count (the byte budget holds at
    /// every write).
    fn prune(&self) {
        let pruned =
            db::prune(&self.conn, &self.limits).and_then(|_| budget::stored_bytes(&self.conn));
        match pruned {
            Ok(bytes) => self.budget.record(budget::Evicted::default(), bytes),
            Err(e) => tracing::warn!(error = %e, "history prune failed"),
        }
    }
}

/// `first` and whatever else is queued, up to [`MAX_BATCH`] entries and
/// about [`MAX_BATCH_BYTES`].
fn collect_batch(first: Entry, rx: &mut mpsc::Receiver<Entry>) -> Vec<Entry> {
    let mut bytes = first.len();
    let mut batch = Vec::with_capacity(64);
    batch.push(first);
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        match rx.try_recv() {
            Ok(entry) => {
                bytes += entry.len();
                batch.push(entry);
            }
            Err(_) => break,
        }
    }
    batch
}

/// Push one written entry to the clients (when new) and release its ack.
/// `committed`: the batch reached the disk (a duplicate gets its ack too:
/// its first copy is stored).
fn deliver(
    entry: Entry,
    seq: Option<u64>,
    committed: bool,
    events: &hive_proto::fanout::Fanout<Event>,
    acks: &mpsc::UnboundedSender<Acked>,
) {
    match entry {
        Entry::Message {
            topic,
            from,
            id,
            data,
            seqno,
            signature,
            key,
            origin,
        } => {
            let new = seq.is_some() || !committed;
            let own = match origin {
                Origin::Own => true,
                Origin::Gossip => false,
                Origin::Fetched(verdict) => {
                    let _ = verdict.send(new);
                    false
                }
            };
            if !own && new {
                let _ = events.send(Event::Message {
                    topic,
                    from,
                    id,
                    data: hive_proto::Bytes(data),
                    seqno,
                    signature,
                    key,
                    history_seq: seq,
                });
            }
        }
        Entry::Direct {
            from,
            id,
            data,
            ack,
        } => {
            if seq.is_some() {
                let _ = events.send(Event::Direct {
                    from,
                    id: id.clone(),
                    data: hive_proto::Bytes(data),
                    history_seq: seq,
                });
            }
            if committed {
                let _ = acks.send(Acked { channel: ack, id });
            }
        }
    }
}

/// Where a daemon keeps its history inside its data directory.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("history.db")
}
