//! Client side of the daemon's IPC link (see `hive_proto`).
//!
//! One WebSocket carries many pipelined requests. A reader task matches each
//! response to its waiting caller by id and fans events out on a broadcast
//! channel; a writer task owns the sink so that concurrent callers never
//! contend for it and bursts of requests go out in one flush.
//!
//! The one property everything above relies on: when the link dies, every
//! request in flight fails *at once* with [`IpcError::LinkClosed`] and every
//! later request fails immediately. A caller never waits on a dead daemon.

use hive_proto::fanout::Fanout;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hive_proto::{
    close, codec, ClientFrame, ErrorBody, Event, Op, Request, ServerFrame, PROTOCOL_VERSION,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::ipc_stats::InFlight;
use crate::ipc_stats::IpcStats;

/// How long the daemon may take to answer the hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Capacity of the event channel between the reader task and the supervisor.
const EVENT_CAPACITY: usize = 16_384;
/// Most frames fed to the socket before one flush.
const WRITE_BATCH: usize = 64;

/// Everything that can go wrong with an IPC request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IpcError {
    /// The daemon answered with an error.
    #[error("daemon error: {0}")]
    Daemon(ErrorBody),
    /// The link is gone (daemon exited, restarted or the socket broke).
    #[error("IPC link closed: {0}")]
    LinkClosed(String),
    /// No answer in time. The request may still complete in the daemon.
    #[error("IPC request {op} timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// The WebSocket could not be opened.
    #[error("cannot connect to the daemon IPC at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The hello exchange failed (wrong token, version mismatch, ...).
    #[error("IPC handshake failed: {0}")]
    Handshake(String),
    /// The daemon's answer did not have the expected shape.
    #[error("unexpected IPC result for {op}: {reason}")]
    BadResult { op: &'static str, reason: String },
}

type Reply = Result<Value, IpcError>;

struct Inner {
    next_id: AtomicU64,
    /// `None` once the link is closed: inserting is then impossible, which is
    /// what makes new requests fail immediately.
    pending: Mutex<Option<HashMap<u64, oneshot::Sender<Reply>>>>,
    outgoing: mpsc::UnboundedSender<Message>,
    closed: watch::Sender<Option<String>>,
    stats: Arc<IpcStats>,
    /// The newest history number this daemon pushed (a `message` or
    /// `direct` event), stored by the host yet or not.
    pushed: AtomicU64,
}

impl Inner {
    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<HashMap<u64, oneshot::Sender<Reply>>>> {
        hive_proto::sync::lock(&self.pending)
    }

    /// Mark the link closed and fail everything waiting on it. Idempotent.
    fn shut(&self, reason: &str) {
        let waiting = self.lock_pending().take();
        if let Some(waiting) = waiting {
            tracing::debug!(reason, pending = waiting.len(), "IPC link closed");
            for (_, tx) in waiting {
                let _ = tx.send(Err(IpcError::LinkClosed(reason.to_owned())));
            }
            self.closed.send_replace(Some(reason.to_owned()));
        }
    }

    fn complete(&self, id: u64, reply: Reply) {
        let tx = self.lock_pending().as_mut().and_then(|map| map.remove(&id));
        match tx {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            // The caller timed out or went away; nothing to do.
            None => tracing::trace!(id, "response for a request nobody waits for"),
        }
    }
}

/// What the daemon said about itself in its welcome.
#[derive(Debug, Clone)]
pub struct Welcome {
    pub peer_id: String,
    pub daemon_version: String,
}

/// A handle on one IPC link; cheap to clone.
#[derive(Clone)]
pub struct IpcClient {
    inner: Arc<Inner>,
}

impl IpcClient {
    /// Open the WebSocket, authenticate, and start the reader and writer
    /// tasks. Returns the client, the daemon's welcome and the event stream.
    pub async fn connect(
        url: &str,
        token: &str,
        stats: Arc<IpcStats>,
    ) -> Result<(IpcClient, Welcome, hive_proto::fanout::Receiver<Event>), IpcError> {
        let config = WebSocketConfig::default()
            .max_message_size(Some(hive_proto::HARD_MAX_FRAME_BYTES))
            .max_frame_size(Some(hive_proto::HARD_MAX_FRAME_BYTES));
        // `true`: TCP_NODELAY, small request frames must not wait for Nagle.
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| IpcError::Connect {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;

        let hello = codec::encode(&ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: token.to_owned(),
        })
        .map_err(|e| IpcError::Handshake(format!("cannot encode hello: {e}")))?;
        ws.send(Message::Text(hello.into()))
            .await
            .map_err(|e| IpcError::Handshake(format!("cannot send hello: {e}")))?;

        let welcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return match codec::decode_server_frame(&text) {
                            Ok(ServerFrame::Welcome {
                                peer_id,
                                daemon_version,
                                ..
                            }) => Ok(Welcome {
                                peer_id,
                                daemon_version,
                            }),
                            Ok(other) => Err(IpcError::Handshake(format!(
                                "expected a welcome, got {other:?}"
                            ))),
                            Err(e) => Err(IpcError::Handshake(format!("bad welcome frame: {e}"))),
                        };
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame
                            .map(|f| describe_close(f.code, &f.reason))
                            .unwrap_or_else(|| "closed without a reason".to_owned());
                        return Err(IpcError::Handshake(why));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(IpcError::Handshake(e.to_string())),
                    None => return Err(IpcError::Handshake("connection closed".to_owned())),
                }
            }
        })
        .await
        .map_err(|_| IpcError::Handshake(format!("no welcome within {HANDSHAKE_TIMEOUT:?}")))??;

        let (sink, stream) = ws.split();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let events_tx = Fanout::new(EVENT_CAPACITY);
        let events_rx = events_tx.subscribe();
        let (closed_tx, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Some(HashMap::new())),
            outgoing: out_tx,
            closed: closed_tx,
            stats,
            pushed: AtomicU64::new(0),
        });
        tokio::spawn(write_loop(Arc::downgrade(&inner), sink, out_rx));
        tokio::spawn(read_loop(inner.clone(), stream, events_tx));
        Ok((IpcClient { inner }, welcome, events_rx))
    }

    /// The newest history number the daemon pushed on this link (see
    /// `inbound.received` in `/api/status`).
    pub fn pushed(&self) -> u64 {
        self.inner.pushed.load(Ordering::Relaxed)
    }

    /// Send one operation and wait for its result (the `result` object).
    pub async fn request(&self, op: Op, timeout: Duration) -> Result<Value, IpcError> {
        self.send(op, timeout)?.await
    }

    /// Send one operation now and return the wait for its result. Frames go
    /// out in the order `send` is called, so a caller can keep many
    /// operations in flight and still have them take effect in order (the
    /// daemon hands operations to its node in arrival order).
    pub fn send(
        &self,
        op: Op,
        timeout: Duration,
    ) -> Result<impl std::future::Future<Output = Result<Value, IpcError>> + Send + 'static, IpcError>
    {
        let name = op.name();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.inner.lock_pending();
            let Some(map) = pending.as_mut() else {
                return Err(IpcError::LinkClosed(self.close_reason()));
            };
            map.insert(id, tx);
        }
        let text = match codec::encode(&ClientFrame::Request(Request {
            id,
            trace: crate::trace::current(),
            op,
        })) {
            Ok(text) => text,
            Err(e) => {
                self.forget(id);
                return Err(IpcError::BadResult {
                    op: name,
                    reason: format!("cannot encode request: {e}"),
                });
            }
        };
        let started = Instant::now();
        if self
            .inner
            .outgoing
            .send(Message::Text(text.into()))
            .is_err()
        {
            self.forget(id);
            return Err(IpcError::LinkClosed(self.close_reason()));
        }
        let this = self.clone();
        // Counted until the answer arrives or the wait is dropped.
        let in_flight = InFlight::new(&self.inner.stats);
        Ok(async move {
            let _in_flight = in_flight;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => {
                    this.inner.stats.record(name, started.elapsed());
                    reply
                }
                Ok(Err(_)) => Err(IpcError::LinkClosed(this.close_reason())),
                Err(_) => {
                    this.forget(id);
                    // A timeout is a (very slow) round trip as far as the
                    // latency signal is concerned: a hung daemon must show.
                    this.inner.stats.record(name, started.elapsed());
                    Err(IpcError::Timeout {
                        op: name,
                        after: timeout,
                    })
                }
            }
        })
    }

    /// [`request`](Self::request) and decode the result into its type.
    pub async fn request_typed<T: DeserializeOwned>(
        &self,
        op: Op,
        timeout: Duration,
    ) -> Result<T, IpcError> {
        let name = op.name();
        let value = self.request(op, timeout).await?;
        serde_json::from_value(value).map_err(|e| IpcError::BadResult {
            op: name,
            reason: e.to_string(),
        })
    }

    /// Whether the link is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.borrow().is_some()
    }

    /// Resolves once the link is closed, with the reason.
    pub async fn closed(&self) -> String {
        let mut rx = self.inner.closed.subscribe();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "link dropped".to_owned(),
        };
        reason
    }

    /// Close the link; pending requests fail at once.
    pub fn close(&self) {
        let _ = self.inner.outgoing.send(Message::Close(None));
        self.inner.shut("closed by the host");
    }

    fn forget(&self, id: u64) {
        if let Some(map) = self.inner.lock_pending().as_mut() {
            map.remove(&id);
        }
    }

    fn close_reason(&self) -> String {
        self.inner
            .closed
            .borrow()
            .clone()
            .unwrap_or_else(|| "link closed".to_owned())
    }
}

fn describe_close(code: CloseCode, reason: &str) -> String {
    let what = match u16::from(code) {
        close::UNAUTHORIZED => "unauthorized (bad token)",
        close::VERSION_MISMATCH => "protocol version mismatch",
        close::HANDSHAKE_FAILED => "handshake failed",
        close::SLOW_CONSUMER => "dropped as a slow consumer",
        close::FRAME_TOO_LARGE => "frame too large",
        close::SHUTTING_DOWN => "daemon shutting down",
        _ => "closed",
    };
    format!("{what} (code {}): {reason}", u16::from(code))
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Owns the sink. Holds only a weak reference so that dropping every
/// [`IpcClient`] ends it (the channel closes) and the socket with it.
async fn write_loop(
    inner: std::sync::Weak<Inner>,
    mut sink: futures::stream::SplitSink<WsStream, Message>,
    mut rx: mpsc::UnboundedReceiver<Message>,
) {
    let mut result = Ok(());
    'outer: while let Some(first) = rx.recv().await {
        let mut closing = matches!(first, Message::Close(_));
        if let Err(e) = sink.feed(first).await {
            result = Err(e);
            break;
        }
        let mut batched = 1;
        while !closing && batched < WRITE_BATCH {
            match rx.try_recv() {
                Ok(msg) => {
                    closing = matches!(msg, Message::Close(_));
                    if let Err(e) = sink.feed(msg).await {
                        result = Err(e);
                        break 'outer;
                    }
                    batched += 1;
                }
                Err(_) => break,
            }
        }
        if let Err(e) = sink.flush().await {
            result = Err(e);
            break;
        }
        if closing {
            break;
        }
    }
    let _ = sink.close().await;
    if let Some(inner) = inner.upgrade() {
        let reason = match result {
            Ok(()) => "link closed by the host".to_owned(),
            Err(e) => format!("write failed: {e}"),
        };
        inner.shut(&reason);
    }
}

async fn read_loop(
    inner: Arc<Inner>,
    mut stream: futures::stream::SplitStream<WsStream>,
    events: Fanout<Event>,
) {
    let mut closed = inner.closed.subscribe();
    let reason = loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = closed.wait_for(Option::is_some) => break "link closed by the host".to_owned(),
        };
        match next {
            Some(Ok(Message::Text(text))) => match codec::decode_server_frame(&text) {
                Ok(ServerFrame::Response(resp)) => {
                    let Some(id) = resp.id else {
                        tracing::warn!(error = ?resp.error, "daemon rejected a frame without an id");
                        continue;
                    };
                    let reply = match (resp.result, resp.error) {
                        (_, Some(err)) => Err(IpcError::Daemon(err)),
                        (Some(result), None) => Ok(result),
                        (None, None) => Ok(Value::Object(Default::default())),
                    };
                    inner.complete(id, reply);
                }
                Ok(ServerFrame::Event(event)) => {
                    if let Some(seq) = event.history_seq() {
                        inner.pushed.fetch_max(seq, Ordering::Relaxed);
                    }
                    // No receiver only means nobody listens right now.
                    let _ = events.send(event);
                }
                Ok(ServerFrame::Welcome { .. }) => {
                    tracing::warn!("unexpected second welcome from the daemon");
                }
                Err(e) => tracing::warn!(error = %e, "undecodable frame from the daemon"),
            },
            Some(Ok(Message::Close(frame))) => {
                break frame
                    .map(|f| describe_close(f.code, &f.reason))
                    .unwrap_or_else(|| "daemon closed the link".to_owned());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("read failed: {e}"),
            None => break "daemon closed the connection".to_owned(),
        }
    };
    inner.shut(&reason);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_proto::{ErrorCode, Response};
    use serde_json::json;
    use tokio::net::TcpListener;

    /// A daemon stand-in: welcomes, then answers `status` requests in
    /// reverse order of arrival once two are pending (and `topic_peers` the
    /// same way, echoing each request's topic), errors `peers`, and drops
    /// the connection on `shutdown` without answering.
    async fn fake_daemon() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let Some(Ok(Message::Text(hello))) = ws.next().await else {
                return;
            };
            assert_eq!(
                codec::decode_client_frame(&hello, 1 << 20).ok(),
                Some(ClientFrame::Hello {
                    version: PROTOCOL_VERSION,
                    token: "tok".into()
                })
            );
            let welcome = ServerFrame::Welcome {
                version: PROTOCOL_VERSION,
                peer_id: "P".into(),
                daemon_version: "t".into(),
            };
            ws.send(Message::Text(codec::encode(&welcome).unwrap().into()))
                .await
                .unwrap();
            let mut held = Vec::new();
            let mut held_topics = Vec::new();
            while let Some(Ok(Message::Text(text))) = ws.next().await {
                let Ok(ClientFrame::Request(req)) = codec::decode_client_frame(&text, 1 << 20)
                else {
                    continue;
                };
                let reply = match req.op {
                    Op::Status => {
                        held.push(req.id);
                        if held.len() < 2 {
                            continue;
                        }
                        for id in held.drain(..).rev() {
                            let r = ServerFrame::Response(Response::ok(id, json!({"n": id})));
                            ws.send(Message::Text(codec::encode(&r).unwrap().into()))
                                .await
                                .unwrap();
                        }
                        continue;
                    }
                    Op::TopicPeers { topic } => {
                        held_topics.push((req.id, topic));
                        if held_topics.len() < 2 {
                            continue;
                        }
                        for (id, topic) in held_topics.drain(..).rev() {
                            let r =
                                ServerFrame::Response(Response::ok(id, json!({"topic": topic})));
                            ws.send(Message::Text(codec::encode(&r).unwrap().into()))
                                .await
                                .unwrap();
                        }
                        continue;
                    }
                    Op::Peers => {
                        Response::err(Some(req.id), ErrorBody::new(ErrorCode::NotFound, "none"))
                    }
                    Op::Shutdown => return,
                    _ => continue,
                };
                let frame = ServerFrame::Response(reply);
                ws.send(Message::Text(codec::encode(&frame).unwrap().into()))
                    .await
                    .unwrap();
            }
        });
        url
    }

    #[tokio::test]
    async fn responses_are_matched_by_id_and_errors_typed() {
        let url = fake_daemon().await;
        let stats = Arc::new(IpcStats::default());
        let (client, welcome, _events) = IpcClient::connect(&url, "tok", stats.clone())
            .await
            .unwrap();
        assert_eq!(welcome.peer_id, "P");
        let t = Duration::from_secs(5);
        let (a, b) = tokio::join!(client.request(Op::Status, t), client.request(Op::Status, t));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a["n"], b["n"]);
        // Answers come back in reverse: each caller must get its own.
        let ask = |topic: &str| Op::TopicPeers {
            topic: topic.to_owned(),
        };
        let (a, b) = tokio::join!(client.request(ask("a"), t), client.request(ask("b"), t));
        assert_eq!(a.unwrap()["topic"], "a");
        assert_eq!(b.unwrap()["topic"], "b");
        match client.request(Op::Peers, t).await {
            Err(IpcError::Daemon(body)) => assert_eq!(body.code, ErrorCode::NotFound),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(stats.recent_latencies_ms().len(), 5);
        assert_eq!(stats.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_closed_link_fails_pending_and_new_requests_at_once() {
        let url = fake_daemon().await;
        let (client, _, _events) = IpcClient::connect(&url, "tok", Arc::default())
            .await
            .unwrap();
        let long = Duration::from_secs(60);
        // Held by the fake until a second status arrives, which never does.
        let pending = tokio::spawn({
            let client = client.clone();
            async move { client.request(Op::Status, long).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        // The fake drops the connection on shutdown.
        let shutdown = client.request(Op::Shutdown, long).await;
        assert!(
            matches!(shutdown, Err(IpcError::LinkClosed(_))),
            "{shutdown:?}"
        );
        let pending = pending.await.unwrap();
        assert!(
            matches!(pending, Err(IpcError::LinkClosed(_))),
            "{pending:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(client.is_closed());
        let after = client.request(Op::Status, long).await;
        assert!(matches!(after, Err(IpcError::LinkClosed(_))), "{after:?}");
    }
}
