//! hivemind's persistent connections: unary handlers and calls over one
//! long-lived control connection (PERSISTENT_CONN_UPGRADE).
//!
//! After the upgrade both sides exchange framed messages, each tagged with a
//! 16-byte call id the client chose: the client adds and removes unary
//! handlers, calls a handler on a peer, answers calls handed to it, and
//! cancels calls; the daemon answers each, hands over inbound calls
//! (`requestHandling`) and says when a caller went away (`cancel`).
//!
//! Between daemons a call is one libp2p stream named after the handler
//! (`DHTProtocol.rpc_ping`: no leading slash, hence [`hive_node::named`]):
//! the caller's daemon writes the client's framed `PersistentConnectionRequest`
//! and reads one framed `PersistentConnectionRequest` back, whose
//! `unaryResponse` is the answer. The receiving daemon replaces `peer` with
//! the caller's peer id before handing the call over; hivemind relies on it.
//!
//! Unlike go's daemon, a call whose peer cannot be reached, or whose answer
//! is malformed or too large, gets a `daemonError` instead of hanging, and a
//! frame that does not decode is reported rather than ending the connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hive_node::named::{NamedStreams, OpenError};
use hive_proto::sync::lock;
use libp2p::PeerId;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tokio_util::sync::CancellationToken;

use super::framing::{read_frame_max, read_frame_or_skip, write_frame, Frame};
use super::pb::{
    self, persistent_request::Message as In, persistent_response::Message as Out,
    PersistentConnectionRequest, PersistentConnectionResponse,
};

/// Why ADD/REMOVE_UNARY_HANDLER was refused (the client sees the message,
/// worded as go's daemon words it).
#[derive(Debug, thiserror::Error)]
enum HandlerError {
    #[error("handler for protocol {0} already set")]
    Taken(String),
    #[error("handler for protocol {0} already set on this connection")]
    TakenHere(String),
    #[error("handler for protocol {0} does not exist")]
    Missing(String),
    #[error("handler for protocol {0} was not created in this persistent connection")]
    NotHere(String),
}

/// Why a CALL_UNARY got no answer from the remote handler.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("cannot reach {peer}: {reason}")]
    Unreachable { peer: PeerId, reason: String },
    #[error(transparent)]
    Open(OpenError),
    #[error("cannot send the call: {0}")]
    Send(std::io::Error),
    #[error("cannot read the answer: {0}")]
    Read(std::io::Error),
    #[error("the peer closed the stream without answering")]
    Unanswered,
    #[error("malformed answer: {0}")]
    Malformed(prost::DecodeError),
    #[error("the answer carries no unaryResponse")]
    NoUnaryResponse,
}

/// How long a call may take to reach its peer and be answered.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an unreachable peer is retried before a call fails.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(5);
/// Frames queued for one client before the daemon waits for it.
const CLIENT_QUEUE: usize = 1024;

type ClientTx = mpsc::Sender<PersistentConnectionResponse>;

/// A handler registration: which connection, and how to reach it.
#[derive(Clone)]
struct Registered {
    client: u64,
    tx: ClientTx,
}

#[derive(Default)]
struct Handlers {
    by_name: HashMap<String, (Vec<Registered>, usize)>,
}

/// Unary handlers and calls in flight, shared by every persistent connection.
pub struct Unary {
    named: NamedStreams,
    handlers: Mutex<Handlers>,
    /// Inbound calls waiting for their handler's answer, by call id.
    waiting: Mutex<HashMap<Vec<u8>, oneshot::Sender<PersistentConnectionRequest>>>,
    next_client: AtomicU64,
    /// Largest message on a persistent connection and in a unary call
    /// (`-persistentConnMaxMsgSize`).
    max_msg: usize,
}

fn reply(call_id: &[u8], message: Option<Out>) -> PersistentConnectionResponse {
    PersistentConnectionResponse {
        call_id: call_id.to_vec(),
        message,
    }
}

fn daemon_error(call_id: &[u8], message: impl Into<String>) -> PersistentConnectionResponse {
    reply(
        call_id,
        Some(Out::DaemonError(pb::DaemonError {
            message: Some(message.into()),
        })),
    )
}

impl Unary {
    /// Start serving inbound calls from `inbound` (the node's named streams).
    pub fn start(
        named: NamedStreams,
        inbound: Option<mpsc::Receiver<(PeerId, String, libp2p::Stream)>>,
        max_msg: usize,
    ) -> Arc<Unary> {
        let unary = Arc::new(Unary {
            named,
            handlers: Mutex::new(Handlers::default()),
            waiting: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            max_msg,
        });
        if let Some(mut inbound) = inbound {
            let this = unary.clone();
            tokio::spawn(async move {
                while let Some((peer, name, stream)) = inbound.recv().await {
                    tokio::spawn(this.clone().serve_inbound(peer, name, stream));
                }
            });
        }
        unary
    }

    fn add(&self, name: &str, balanced: bool, who: &Registered) -> Result<(), HandlerError> {
        let mut handlers = lock(&self.handlers);
        let entry = handlers.by_name.entry(name.to_owned()).or_default();
        if !entry.0.is_empty() && !balanced {
            return Err(HandlerError::Taken(name.to_owned()));
        }
        if entry.0.iter().any(|r| r.client == who.client) {
            return Err(HandlerError::TakenHere(name.to_owned()));
        }
        entry.0.push(who.clone());
        self.named.accept(name);
        Ok(())
    }

    fn remove(&self, name: &str, client: u64) -> Result<(), HandlerError> {
        let mut handlers = lock(&self.handlers);
        let Some(entry) = handlers.by_name.get_mut(name) else {
            return Err(HandlerError::Missing(name.to_owned()));
        };
        let before = entry.0.len();
        entry.0.retain(|r| r.client != client);
        if entry.0.len() == before {
            return Err(HandlerError::NotHere(name.to_owned()));
        }
        if entry.0.is_empty() {
            handlers.by_name.remove(name);
            self.named.refuse(name);
        }
        Ok(())
    }

    /// Forget every handler of a connection that closed.
    fn forget_client(&self, client: u64) {
        let mut handlers = lock(&self.handlers);
        let mut emptied = Vec::new();
        for (name, (list, _)) in handlers.by_name.iter_mut() {
            list.retain(|r| r.client != client);
            if list.is_empty() {
                emptied.push(name.clone());
            }
        }
        for name in emptied {
            handlers.by_name.remove(&name);
            self.named.refuse(&name);
        }
    }

    /// The next handler for `name`, round robin.
    fn pick(&self, name: &str) -> Option<Registered> {
        let mut handlers = lock(&self.handlers);
        let (list, next) = handlers.by_name.get_mut(name)?;
        if list.is_empty() {
            return None;
        }
        let chosen = list[*next % list.len()].clone();
        *next = next.wrapping_add(1);
        Some(chosen)
    }

    /// A call from a remote daemon: hand it to a handler, write back its
    /// answer, or tell the handler the caller left.
    async fn serve_inbound(self: Arc<Self>, peer: PeerId, name: String, stream: libp2p::Stream) {
        let (mut read, mut write) = tokio::io::split(stream.compat());
        let frame =
            match tokio::time::timeout(CALL_TIMEOUT, read_frame_max(&mut read, self.max_msg)).await
            {
                Ok(Ok(Some(frame))) => frame,
                _ => {
                    tracing::debug!(%peer, %name, "unary stream closed before its request");
                    return;
                }
            };
        let request = match PersistentConnectionRequest::decode(frame.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%peer, %name, error = %e, "malformed unary request");
                return;
            }
        };
        let Some(In::CallUnary(mut call)) = request.message else {
            tracing::debug!(%peer, %name, "unary stream without a callUnary");
            return;
        };
        // The handler learns who called, not whom the caller asked for.
        call.peer = peer.to_bytes();
        let call_id = request.call_id;
        let Some(handler) = self.pick(&name) else {
            tracing::debug!(%peer, %name, "no handler for an inbound unary call");
            return;
        };
        let (answer_tx, answer_rx) = oneshot::channel();
        lock(&self.waiting).insert(call_id.clone(), answer_tx);
        let handed = handler
            .tx
            .send(reply(&call_id, Some(Out::RequestHandling(call))))
            .await;
        if handed.is_err() {
            lock(&self.waiting).remove(&call_id);
            return;
        }
        let mut probe = [0u8; 1];
        tokio::select! {
            answer = answer_rx => {
                if let Ok(answer) = answer {
                    let _ = write_frame(&mut write, &answer.encode_to_vec()).await;
                    let _ = write.shutdown().await;
                }
            }
            // The caller hung up (or its daemon went away) before the answer.
            _ = read.read(&mut probe) => {
                let _ = handler.tx.send(reply(&call_id, Some(Out::Cancel(pb::Cancel {})))).await;
            }
            _ = tokio::time::sleep(CALL_TIMEOUT) => {
                let _ = handler.tx.send(reply(&call_id, Some(Out::Cancel(pb::Cancel {})))).await;
            }
        }
        lock(&self.waiting).remove(&call_id);
    }

    /// Open a stream, giving a peer that is not reachable yet (its
    /// connection to us still coming up, its addresses not yet learned
    /// through identify or the DHT) a few seconds before giving up.
    async fn open_soon(&self, peer: PeerId, name: &str) -> Result<libp2p::Stream, CallError> {
        let deadline = tokio::time::Instant::now() + UNREACHABLE_GRACE;
        loop {
            match self.named.open(peer, name).await {
                Ok(stream) => return Ok(stream),
                Err(OpenError::Unreachable(reason)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(CallError::Unreachable { peer, reason });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(CallError::Open(e)),
            }
        }
    }

    /// A client's call to a handler on `peer`.
    async fn call(
        &self,
        request: PersistentConnectionRequest,
        call: &pb::CallUnaryRequest,
    ) -> PersistentConnectionResponse {
        let call_id = request.call_id.clone();
        let peer = match super::args::peer_from(&call.peer) {
            Ok(p) => p,
            Err(e) => return daemon_error(&call_id, e.to_string()),
        };
        let exchange = async {
            let stream = self.open_soon(peer, &call.proto).await?;
            let (mut read, mut write) = tokio::io::split(stream.compat());
            write_frame(&mut write, &request.encode_to_vec())
                .await
                .map_err(CallError::Send)?;
            let frame = read_frame_max(&mut read, self.max_msg)
                .await
                .map_err(CallError::Read)?
                .ok_or(CallError::Unanswered)?;
            let _ = write.shutdown().await;
            let answer = PersistentConnectionRequest::decode(frame.as_slice())
                .map_err(CallError::Malformed)?;
            match answer.message {
                Some(In::UnaryResponse(response)) => Ok(response),
                _ => Err(CallError::NoUnaryResponse),
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
            Ok(Ok(response)) => reply(&call_id, Some(Out::CallUnaryResponse(response))),
            Ok(Err(reason)) => daemon_error(&call_id, reason.to_string()),
            Err(_) => daemon_error(
                &call_id,
                format!("no answer from {peer} within {CALL_TIMEOUT:?}"),
            ),
        }
    }
}

/// Serve one connection after PERSISTENT_CONN_UPGRADE was answered.
pub async fn serve<S>(unary: Arc<Unary>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = unary.next_client.fetch_add(1, Ordering::Relaxed);
    let (mut read, mut write) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<PersistentConnectionResponse>(CLIENT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if write_frame(&mut write, &message.encode_to_vec())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let me = Registered {
        client,
        tx: tx.clone(),
    };
    let calls: Calls = Arc::default();
    tracing::debug!(client, "persistent connection open");
    loop {
        let frame = match read_frame_or_skip(&mut read, unary.max_msg).await {
            Ok(Some(Frame::Whole(frame))) => frame,
            Ok(Some(Frame::TooBig { len, head })) => {
                // go's daemon drops the connection here, and hivemind's
                // call then waits forever: answer the call instead.
                let _ = tx.send(too_big(&head, len, unary.max_msg)).await;
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(client, error = %e, "persistent connection read failed");
                break;
            }
        };
        let request = match PersistentConnectionRequest::decode(frame.as_slice()) {
            Ok(r) => r,
            Err(e) => {
                // No call id to answer to; say so and keep serving.
                let _ = tx
                    .send(daemon_error(&[0u8; 16], format!("malformed message: {e}")))
                    .await;
                continue;
            }
        };
        handle(&unary, &me, &calls, &tx, request).await;
    }
    unary.forget_client(client);
    for (_, cancel) in lock(&calls).drain() {
        cancel.cancel();
    }
    // The writer ends once the last sender (calls still finishing) is gone.
    drop(writer);
    tracing::debug!(client, "persistent connection closed");
}

type Calls = Arc<Mutex<HashMap<Vec<u8>, CancellationToken>>>;

/// The error answer to a message over the limit, to the call id found in
/// its first bytes (protobuf field 1, which clients write first).
fn too_big(head: &[u8], len: usize, max: usize) -> PersistentConnectionResponse {
    let call_id = match head {
        [0x0a, n, rest @ ..] if usize::from(*n) <= rest.len() => &rest[..usize::from(*n)],
        _ => &[0u8; 16][..],
    };
    daemon_error(
        call_id,
        format!(
            "message of {len} bytes exceeds this daemon's -persistentConnMaxMsgSize of {max} bytes; \
             start it with a larger -persistentConnMaxMsgSize"
        ),
    )
}

/// One request of a persistent connection: handler (un)registration, a
/// call to a peer (answered when it completes), a handler's answer to an
/// inbound call, a cancel.
async fn handle(
    unary: &Arc<Unary>,
    me: &Registered,
    calls: &Calls,
    tx: &mpsc::Sender<PersistentConnectionResponse>,
    request: PersistentConnectionRequest,
) {
    let call_id = request.call_id.clone();
    match request.message.clone() {
        Some(In::AddUnaryHandler(add)) => {
            let answer = match unary.add(&add.proto, add.balanced.unwrap_or(false), me) {
                Ok(()) => reply(&call_id, None),
                Err(e) => daemon_error(&call_id, e.to_string()),
            };
            let _ = tx.send(answer).await;
        }
        Some(In::RemoveUnaryHandler(remove)) => {
            let answer = match unary.remove(&remove.proto, me.client) {
                Ok(()) => reply(&call_id, None),
                Err(e) => daemon_error(&call_id, e.to_string()),
            };
            let _ = tx.send(answer).await;
        }
        Some(In::CallUnary(call)) => {
            let cancel = CancellationToken::new();
            lock(calls).insert(call_id.clone(), cancel.clone());
            let (unary, tx, calls) = (unary.clone(), tx.clone(), calls.clone());
            tokio::spawn(async move {
                let answer = tokio::select! {
                    answer = unary.call(request, &call) => answer,
                    _ = cancel.cancelled() => reply(&call_id, Some(Out::Cancel(pb::Cancel {}))),
                };
                lock(&calls).remove(&call_id);
                let _ = tx.send(answer).await;
            });
        }
        Some(In::UnaryResponse(_)) => match lock(&unary.waiting).remove(&call_id) {
            Some(waiter) => {
                let _ = waiter.send(request);
            }
            None => tracing::debug!(client = me.client, "answer to a call nobody waits for"),
        },
        Some(In::Cancel(_)) => {
            if let Some(cancel) = lock(calls).remove(&call_id) {
                cancel.cancel();
            }
        }
        None => {
            let _ = tx
                .send(daemon_error(&call_id, "the message carries no request"))
                .await;
        }
    }
}
