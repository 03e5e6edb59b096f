//! One IPC connection: handshake, then pipelined requests and pushed events.
//!
//! One task serves a connection: it decodes frames, hands requests to the
//! node in arrival order and keeps their answers as futures, so slow
//! operations (a dial, a DHT query) never hold up fast ones; it writes
//! answers and the node's events itself, batching whatever is ready before
//! one flush. Bad input is answered on the connection and never ends it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use hive_proto::codec::encode;
use hive_proto::{
    close, decode_client_frame, ClientFrame, ErrorBody, ErrorCode, Event, Request, Response,
    ServerFrame, HARD_MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::Instrument;

use super::Context;
use hive_proto::secret::same_secret;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one connection may have in flight; more get `busy` at once.
const MAX_IN_FLIGHT: usize = 1024;

fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }))
}

fn frame_text(frame: &ServerFrame) -> Option<Message> {
    match encode(frame) {
        Ok(text) => Some(Message::text(text)),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a server frame");
            None
        }
    }
}

/// Serve one client until it leaves or the daemon shuts down.
/// What one read of an IPC connection takes at most.
const IPC_READ_BUFFER: usize = 16 * 1024;

pub async fn serve_connection<S>(stream: S, ctx: Arc<Context>, shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // tungstenite zeroes its read buffer up to `read_buffer_size` before
    // every read (128 KiB by default): that memset was 4.5 % of the daemon's
    // CPU under one-at-a-time requests. Requests are small; a big frame
    // just takes more reads.
    let config = WebSocketConfig::default()
        .read_buffer_size(IPC_READ_BUFFER)
        .max_message_size(Some(HARD_MAX_FRAME_BYTES))
        .max_frame_size(Some(HARD_MAX_FRAME_BYTES));
    let ws = match tokio_tungstenite::accept_async_with_config(stream, Some(config)).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "IPC WebSocket handshake failed");
            return;
        }
    };
    let (mut sink, mut source) = ws.split();

    // The hello must come first, and soon.
    let first = tokio::time::timeout(HANDSHAKE_TIMEOUT, source.next()).await;
    let refusal = match first {
        Ok(Some(Ok(message))) => refusal(message, &ctx),
        Ok(_) => return,
        Err(_) => Some((close::HANDSHAKE_FAILED, "no hello within 10 s".to_string())),
    };
    if let Some((code, reason)) = refusal {
        tracing::warn!(code, %reason, "IPC client refused");
        let _ = sink.send(close_message(code, &reason)).await;
        return;
    }
    let welcome = ServerFrame::Welcome {
        version: PROTOCOL_VERSION,
        peer_id: ctx.node.peer_id().to_string(),
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    if let Some(msg) = frame_text(&welcome) {
        if sink.send(msg).await.is_err() {
            return;
        }
    }
    tracing::debug!("IPC client authenticated");
    let session = Session {
        events: ctx.node.subscribe_events(),
        events_open: true,
        pending: FuturesUnordered::new(),
        out: Outgoing { sink },
        ctx,
    };
    session.run(source, shutdown).await;
}

/// Why the first frame does not open the connection (`None`: it does): it
/// must be a JSON hello with the token, of this protocol version.
fn refusal(first: Message, ctx: &Context) -> Option<(u16, String)> {
    let Message::Text(text) = first else {
        return Some((
            close::HANDSHAKE_FAILED,
            "the first frame must be a JSON text hello".to_string(),
        ));
    };
    match decode_client_frame(text.as_str(), ctx.max_frame_bytes) {
        Ok(ClientFrame::Hello { version, token }) => {
            if !same_secret(token.as_bytes(), ctx.token.as_bytes()) {
                Some((close::UNAUTHORIZED, "invalid token".to_string()))
            } else if version != PROTOCOL_VERSION {
                Some((
                    close::VERSION_MISMATCH,
                    format!(
                        "protocol version {version} is not supported; this daemon speaks {PROTOCOL_VERSION}"
                    ),
                ))
            } else {
                None
            }
        }
        Ok(ClientFrame::Request(_)) => Some((
            close::HANDSHAKE_FAILED,
            "the first frame must be a hello with the token".to_string(),
        )),
        Err(e) => Some((
            close::HANDSHAKE_FAILED,
            format!("bad hello: {}", e.error.message),
        )),
    }
}

/// An authenticated connection. One task serves it from here on: it reads
/// requests, hands them to the node in arrival order, and writes answers
/// and events itself. An answer ready while a request is read goes out on
/// the next turn of the loop, with no task in between (each hop to another
/// task cost a cross-thread wake-up per round trip).
struct Session<K> {
    ctx: Arc<Context>,
    events: hive_proto::fanout::Receiver<Event>,
    events_open: bool,
    pending: FuturesUnordered<BoxFuture<'static, Response>>,
    out: Outgoing<K>,
}

/// What a step leaves the connection to do.
enum Flow {
    Continue,
    /// The client left: close quietly.
    Leave,
    /// A close frame was sent already.
    Closed,
}

impl<K> Session<K>
where
    K: futures::Sink<Message, Error = WsError> + Unpin,
{
    async fn run<R>(mut self, mut source: R, mut shutdown: watch::Receiver<bool>)
    where
        R: futures::Stream<Item = Result<Message, WsError>> + Unpin,
    {
        loop {
            // One step: whichever is ready first; answers and events before
            // new requests, so that a busy client cannot starve its answers.
            let step = tokio::select! {
                biased;
                _ = shutdown.changed() => Step::Shutdown,
                Some(response) = self.pending.next(), if !self.pending.is_empty() => Step::Answer(response),
                event = self.events.recv(), if self.events_open => Step::Event(event),
                next = source.next() => Step::Incoming(next),
            };
            match self.step(step).await {
                Flow::Continue => {}
                Flow::Leave => break,
                Flow::Closed => return,
            }
            if !self.send_ready().await {
                break;
            }
        }
        // The client left: answers still owed are of no use to anyone; the
        // operations themselves have been handed to the node and complete.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.out.sink.close()).await;
    }

    async fn step(&mut self, step: Step) -> Flow {
        let kept = match step {
            Step::Shutdown => {
                self.shut_down().await;
                return Flow::Closed;
            }
            Step::Answer(response) => self.out.feed(&ServerFrame::Response(response)).await,
            Step::Event(Ok(event)) => self.out.feed(&ServerFrame::Event(event)).await,
            Step::Event(Err(broadcast::error::RecvError::Lagged(missed))) => {
                self.out
                    .feed(&ServerFrame::Event(Event::Lagged { missed }))
                    .await
            }
            Step::Event(Err(broadcast::error::RecvError::Closed)) => {
                self.events_open = false;
                true
            }
            Step::Incoming(None | Some(Ok(Message::Close(_)))) => false,
            Step::Incoming(Some(Ok(message))) => {
                handle_message(message, &self.ctx, &mut self.pending, &mut self.out).await
            }
            Step::Incoming(Some(Err(WsError::Capacity(e)))) => {
                let reason =
                    format!("message over the hard limit of {HARD_MAX_FRAME_BYTES} bytes: {e}");
                tracing::warn!(%reason, "closing IPC connection");
                let _ = self
                    .out
                    .finish(close_message(close::FRAME_TOO_LARGE, &reason))
                    .await;
                return Flow::Closed;
            }
            Step::Incoming(Some(Err(e))) => {
                tracing::debug!(error = %e, "IPC connection error");
                false
            }
        };
        if kept {
            Flow::Continue
        } else {
            Flow::Leave
        }
    }

    /// Answers about to come (the `shutdown` op's own among them) go out
    /// before the close frame.
    async fn shut_down(&mut self) {
        while let Ok(Some(response)) =
            tokio::time::timeout(Duration::from_millis(200), self.pending.next()).await
        {
            if !self.out.feed(&ServerFrame::Response(response)).await {
                return;
            }
        }
        let _ = self
            .out
            .finish(close_message(
                close::SHUTTING_DOWN,
                "the daemon is shutting down",
            ))
            .await;
    }

    /// Whatever else is ready goes out with the step's frame: one flush for
    /// a batch. False once the client is gone.
    async fn send_ready(&mut self) -> bool {
        loop {
            let healthy = if let Some(Some(response)) = self.pending.next().now_or_never() {
                self.out.feed(&ServerFrame::Response(response)).await
            } else {
                match self.events_open.then(|| self.events.try_recv()) {
                    Some(Ok(event)) => self.out.feed(&ServerFrame::Event(event)).await,
                    Some(Err(broadcast::error::TryRecvError::Lagged(missed))) => {
                        self.out
                            .feed(&ServerFrame::Event(Event::Lagged { missed }))
                            .await
                    }
                    _ => break,
                }
            };
            if !healthy {
                return false;
            }
        }
        self.out.sink.flush().await.is_ok()
    }
}

/// What woke the connection.
enum Step {
    Shutdown,
    Answer(Response),
    Event(Result<Event, broadcast::error::RecvError>),
    Incoming(Option<Result<Message, WsError>>),
}

/// The sending half of the WebSocket.
struct Outgoing<K> {
    sink: K,
}

impl<K> Outgoing<K>
where
    K: futures::Sink<Message, Error = WsError> + Unpin,
{
    /// Queue a frame (flushed by the loop). False once the client is gone.
    async fn feed(&mut self, frame: &ServerFrame) -> bool {
        match frame_text(frame) {
            Some(message) => self.sink.feed(message).await.is_ok(),
            None => true,
        }
    }

    /// Send a close frame and end the connection.
    async fn finish(&mut self, close: Message) -> Result<(), WsError> {
        self.sink.send(close).await?;
        self.sink.close().await
    }
}

/// One frame from the client. Requests go to the node now, in the order
/// they came; their answers join `pending`. Bad input is answered and the
/// connection kept. False once the client is gone.
async fn handle_message<K>(
    message: Message,
    ctx: &Arc<Context>,
    pending: &mut FuturesUnordered<BoxFuture<'static, Response>>,
    out: &mut Outgoing<K>,
) -> bool
where
    K: futures::Sink<Message, Error = WsError> + Unpin,
{
    let text = match message {
        Message::Text(text) => text,
        Message::Binary(_) => {
            let error = ErrorBody::new(
                ErrorCode::BadFrame,
                "binary frames are not part of the protocol; send JSON text frames",
            );
            return out
                .feed(&ServerFrame::Response(Response::err(None, error)))
                .await;
        }
        // Pings are answered by tungstenite itself.
        _ => return true,
    };
    match decode_client_frame(text.as_str(), ctx.max_frame_bytes) {
        Ok(ClientFrame::Request(Request { id, trace, op })) => {
            if pending.len() >= MAX_IN_FLIGHT {
                let error = ErrorBody::new(
                    ErrorCode::Busy,
                    format!("more than {MAX_IN_FLIGHT} requests in flight on this connection"),
                );
                return out
                    .feed(&ServerFrame::Response(Response::err(Some(id), error)))
                    .await;
            }
            // The host's request id (or `msg:<id>` for its outbox), so that
            // one message can be followed through both logs.
            let span = tracing::debug_span!(
                "ipc_request",
                id,
                op = op.name(),
                trace = trace.as_deref().unwrap_or("")
            );
            // Handed over here, in arrival order, so pipelined requests
            // take effect in order; only the answers are awaited later.
            let answer = super::dispatch::submit(ctx, op, pending.is_empty()).await;
            pending.push(
                async move {
                    tracing::debug!("request");
                    match answer.await {
                        Ok(result) => Response::ok(id, result),
                        Err(error) => {
                            tracing::debug!(%error, "request failed");
                            Response::err(Some(id), error)
                        }
                    }
                }
                .instrument(span)
                .boxed(),
            );
            true
        }
        Ok(ClientFrame::Hello { .. }) => {
            let error = ErrorBody::new(
                ErrorCode::ProtocolViolation,
                "this connection is already authenticated",
            );
            out.feed(&ServerFrame::Response(Response::err(None, error)))
                .await
        }
        Err(e) => {
            out.feed(&ServerFrame::Response(Response::err(e.id, e.error)))
                .await
        }
    }
}
