//! [`NodeHandle`]: the typed, in-process API of a running node.
//!
//! One method per operation, with typed arguments and results, in the shape
//! of rust-libp2p's file-sharing example: each method builds a [`Command`]
//! carrying a `oneshot` sender for its answer, and the node's loop answers
//! it. A method returns a [`Call`]: awaiting it runs the operation to its
//! end; [`Call::submit`] instead hands it to the node now and returns the
//! answer still to come ([`Pending`]), for a caller that pipelines (the IPC
//! connection), so that operations submitted one after another reach the
//! node in that order even when their answers are awaited concurrently.
//! Every answer is bounded by [`OP_TIMEOUT`]: a reply that never comes is an
//! error, not a hang.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hive_proto::{
    ClosestPeersResult, DialResult, Event, FindPeerResult, FindProvidersResult, GetRecordResult,
    HistoryResult, ListenAddrsResult, MetricsResult, PeersResult, PingResult, PublishResult,
    SendResult, StatusResult, SubscribeResult, TopicPeersResult, TopicsResult,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot, watch};

use super::errors::{
    CallError, DialError, DirectError, KadError, MetricsError, PingError, PubsubError,
};
use super::Command;
use crate::history::ReadError;

/// Longest any operation may wait for its answer.
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the loop sends an answer.
pub(crate) type Reply<T, E = CallError> = oneshot::Sender<Result<T, E>>;

type NamedInbound = Arc<std::sync::Mutex<Option<mpsc::Receiver<(PeerId, String, libp2p::Stream)>>>>;

/// A cheap, cloneable handle to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) events: hive_proto::fanout::Fanout<Event>,
    pub(super) peer_id: PeerId,
    pub(super) listen_addrs: Vec<String>,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) streams: libp2p_stream::Control,
    pub(super) named: crate::named::NamedStreams,
    pub(super) conn_tags: crate::connmgr::Tags,
    /// Inbound named streams; one consumer takes them (the control server).
    pub(super) named_inbound: NamedInbound,
    pub(super) history: crate::history::History,
    pub(super) sync: crate::sync::Stats,
    /// What was refused from remote peers (shared with the node loop).
    pub(super) refusals: Arc<crate::limits::RefusalCounts>,
    pub(super) peer_limits: crate::limits::PeerLimits,
    pub(super) status_cache: Arc<super::status_cache::StatusCache>,
}

/// An operation built and not yet handed to the node. Await it for its
/// answer, or [`Call::submit`] it to keep its place in line.
#[must_use = "a call does nothing until it is awaited or submitted"]
pub struct Call<T, E = CallError> {
    name: &'static str,
    commands: mpsc::Sender<Command>,
    command: Command,
    rx: oneshot::Receiver<Result<T, E>>,
}

impl<T, E: From<CallError>> Call<T, E> {
    /// Hand the operation to the node now and return its answer to come.
    pub async fn submit(self) -> Result<Pending<T, E>, E> {
        let Call {
            name,
            commands,
            command,
            rx,
        } = self;
        commands
            .send(command)
            .await
            .map_err(|_| E::from(CallError::Stopped))?;
        Ok(Pending { name, rx })
    }
}

impl<T, E> IntoFuture for Call<T, E>
where
    T: Send + 'static,
    E: From<CallError> + Send + 'static,
{
    type Output = Result<T, E>;
    type IntoFuture = BoxFuture<'static, Result<T, E>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.submit().await?.answer().await })
    }
}

/// The answer to a submitted operation, still to come.
pub struct Pending<T, E = CallError> {
    name: &'static str,
    rx: oneshot::Receiver<Result<T, E>>,
}

impl<T, E: From<CallError>> Pending<T, E> {
    /// Wait for the answer (bounded by [`OP_TIMEOUT`]).
    pub async fn answer(self) -> Result<T, E> {
        match tokio::time::timeout(OP_TIMEOUT, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallError::Dropped.into()),
            Err(_) => Err(CallError::Timeout {
                op: self.name,
                after: OP_TIMEOUT,
            }
            .into()),
        }
    }
}

/// The operations, one method each.
impl NodeHandle {
    fn call<T, E>(
        &self,
        name: &'static str,
        command: impl FnOnce(Reply<T, E>) -> Command,
    ) -> Call<T, E> {
        let (reply, rx) = oneshot::channel();
        Call {
            name,
            commands: self.commands.clone(),
            command: command(reply),
            rx,
        }
    }

    /// Identity and state of the node.
    pub fn status(&self) -> Call<StatusResult> {
        self.call("status", Command::Status)
    }

    /// The answer `status` would get from the loop, when the loop has not
    /// woken since it last gave one (and at most a second ago); `None`
    /// otherwise: then ask with [`NodeHandle::status`].
    pub fn status_now(&self) -> Option<StatusResult> {
        self.status_cache.fresh()
    }

    /// What others can dial: listen addresses, then external ones.
    pub fn listen_addrs(&self) -> Call<ListenAddrsResult> {
        self.call("listen_addrs", Command::ListenAddrs)
    }

    /// Dial an address (with or without `/p2p/PEER`) and wait until
    /// connected; an address of a connected peer answers at once.
    pub fn dial(&self, addr: Multiaddr) -> Call<DialResult, DialError> {
        self.call("dial", |reply| Command::Dial { addr, reply })
    }

    /// The connected peers.
    pub fn peers(&self) -> Call<PeersResult> {
        self.call("peers", Command::Peers)
    }

    /// The connected peers and the subscribed topics, which the sync loop
    /// reads every tick: none of the addresses, scores and strings of
    /// [`NodeHandle::peers`] and [`NodeHandle::topics`].
    pub(crate) fn peers_and_topics(
        &self,
    ) -> Call<(std::collections::HashSet<PeerId>, Vec<String>)> {
        self.call("peers_and_topics", Command::PeersAndTopics)
    }

    /// Close every connection to a peer (not connected is fine).
    pub fn disconnect(&self, peer: PeerId) -> Call<()> {
        self.call("disconnect", |reply| Command::Disconnect { peer, reply })
    }

    pub fn subscribe(&self, topic: String) -> Call<SubscribeResult, PubsubError> {
        self.call("subscribe", |reply| Command::Subscribe { topic, reply })
    }

    pub fn unsubscribe(&self, topic: String) -> Call<SubscribeResult, PubsubError> {
        self.call("unsubscribe", |reply| Command::Unsubscribe { topic, reply })
    }

    /// Subscribed topics and how many peers share each.
    pub fn topics(&self) -> Call<TopicsResult> {
        self.call("topics", Command::Topics)
    }

    /// Remote peers known to be subscribed to a topic.
    pub fn topic_peers(&self, topic: String) -> Call<TopicPeersResult> {
        self.call("topic_peers", |reply| Command::TopicPeers { topic, reply })
    }

    /// Publish on a topic; with an `id`, in Hive's envelope (see
    /// [`crate::envelope`]) so that a retry is dropped as a duplicate.
    pub fn publish(
        &self,
        topic: String,
        data: Vec<u8>,
        id: Option<String>,
    ) -> Call<PublishResult, PubsubError> {
        self.call("publish", |reply| Command::Publish {
            topic,
            data,
            id,
            reply,
        })
    }

    /// Send a direct message, answered once the remote acknowledged it.
    pub fn send(
        &self,
        peer: PeerId,
        data: Vec<u8>,
        id: Option<String>,
    ) -> Call<SendResult, DirectError> {
        self.call("send", |reply| Command::Send {
            peer,
            data,
            id,
            reply,
        })
    }

    /// A peer's addresses: its own if connected, else from the DHT.
    pub fn find_peer(&self, peer: PeerId) -> Call<FindPeerResult, KadError> {
        self.call("find_peer", |reply| Command::FindPeer { peer, reply })
    }

    pub fn provide(&self, key: Vec<u8>) -> Call<(), KadError> {
        self.call("provide", |reply| Command::Provide { key, reply })
    }

    pub fn find_providers(&self, key: Vec<u8>) -> Call<FindProvidersResult> {
        self.call("find_providers", |reply| Command::FindProviders {
            key,
            reply,
        })
    }

    /// The peers closest to `key`, found by a network query.
    pub fn closest_peers(&self, key: Vec<u8>) -> Call<ClosestPeersResult> {
        self.call("closest_peers", |reply| Command::ClosestPeers {
            key,
            reply,
        })
    }

    pub fn put_record(&self, key: Vec<u8>, value: Vec<u8>) -> Call<(), KadError> {
        self.call("put_record", |reply| Command::PutRecord {
            key,
            value,
            reply,
        })
    }

    pub fn get_record(&self, key: Vec<u8>) -> Call<GetRecordResult, KadError> {
        self.call("get_record", |reply| Command::GetRecord { key, reply })
    }

    /// Round trip to a peer over Hive's ping protocol.
    pub fn ping(&self, peer: PeerId) -> Call<PingResult, PingError> {
        self.call("ping", |reply| Command::Ping { peer, reply })
    }

    /// Ask the daemon to stop (see [`NodeHandle::shutdown_requested`]).
    pub fn shutdown(&self) -> Call<()> {
        self.call("shutdown", Command::Shutdown)
    }

    /// libp2p's metrics as OpenMetrics text.
    pub fn metrics(&self) -> Call<MetricsResult, MetricsError> {
        self.call("metrics", Command::Metrics)
    }

    /// Close connections down to the low watermark (go's TRIM); how many
    /// peers were disconnected (0 without a connection manager).
    pub fn trim(&self) -> Call<usize> {
        self.call("trim", Command::Trim)
    }

    /// A page of what the node received (see [`crate::history`]). A read of
    /// the database: never on the node's loop, so it keeps no place in line.
    pub async fn history(
        &self,
        after: u64,
        limit: Option<u32>,
    ) -> Result<HistoryResult, ReadError> {
        match tokio::time::timeout(OP_TIMEOUT, self.history.page(after, limit)).await {
            Ok(page) => page,
            Err(_) => Err(CallError::Timeout {
                op: "history",
                after: OP_TIMEOUT,
            }
            .into()),
        }
    }

    /// Write what the node remembers (node-state.json) and wait until it is
    /// on disk: called by a daemon that stops politely, so that a restart
    /// finds the peers met a moment before.
    pub async fn save_memory(&self) {
        let (reply, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::SaveMemory { reply })
            .await
            .is_err()
        {
            return;
        }
        if let Ok(Some(saved)) = rx.await {
            saved.wait().await;
        }
    }
}

/// What the handle knows without asking the loop.
impl NodeHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses bound at start-up, each ending in `/p2p/<peer id>`.
    pub fn initial_listen_addrs(&self) -> &[String] {
        &self.listen_addrs
    }

    /// Open and accept raw streams (in-process only: streams are not part
    /// of the JSON IPC).
    pub fn stream_control(&self) -> libp2p_stream::Control {
        self.streams.clone()
    }

    /// Streams on protocol names of any spelling (see [`crate::named`]).
    pub fn named_streams(&self) -> crate::named::NamedStreams {
        self.named.clone()
    }

    /// The inbound named streams, for the one consumer that serves them;
    /// `None` once taken.
    pub fn take_named_inbound(&self) -> Option<mpsc::Receiver<(PeerId, String, libp2p::Stream)>> {
        crate::lock(&self.named_inbound).take()
    }

    /// The node's history itself, for the catch-up between nodes
    /// ([`crate::sync`]), which reads and feeds it off the loop.
    /// What catching up has done (counted by the sync tasks).
    pub(crate) fn sync_stats(&self) -> &crate::sync::Stats {
        &self.sync
    }

    pub(crate) fn history_store(&self) -> &crate::history::History {
        &self.history
    }

    /// Counters of what remote peers were refused.
    pub(crate) fn refusals(&self) -> Arc<crate::limits::RefusalCounts> {
        self.refusals.clone()
    }

    /// The rate limits this node applies to remote peers.
    pub fn peer_limits(&self) -> crate::limits::PeerLimits {
        self.peer_limits
    }

    /// Tags of the connection manager (go's CONNMANAGER TAG_PEER).
    pub fn conn_tags(&self) -> &crate::connmgr::Tags {
        &self.conn_tags
    }

    /// A new receiver of every event the node emits from now on.
    pub fn subscribe_events(&self) -> hive_proto::fanout::Receiver<Event> {
        self.events.subscribe()
    }

    /// Push an event that did not come from the network (the daemon's own,
    /// such as a request to reproduce) to every connected client.
    pub fn announce(&self, event: Event) {
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    /// Resolves once a `shutdown` operation has been accepted.
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.clone();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
