//! One IPC connection: handshake, then pipelined requests and pushed events.
//!
//! Three tasks share the connection. The reader (this function) decodes
//! frames and spawns one task per request, so slow operations (a dial, a DHT
//! query) never hold up fast ones. A single writer task owns the WebSocket
//! sink and batches whatever is queued before flushing. An event task
//! forwards the node's broadcast. Bad input is answered on the connection and
//! never ends it.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hive_proto::codec::encode;
use hive_proto::{
    close, decode_client_frame, ClientFrame, ErrorBody, ErrorCode, Event, Op, Request, Response,
    ServerFrame, HARD_MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::Instrument;

use super::{constant_time_eq, Context};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests one connection may have in flight; more get `busy` at once.
const MAX_IN_FLIGHT: usize = 1024;
/// Frames queued for the writer before producers wait.
const OUTBOX: usize = 4096;

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
pub async fn serve_connection<S>(stream: S, ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = WebSocketConfig::default()
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
        Ok(Some(Ok(Message::Text(text)))) => {
            match decode_client_frame(text.as_str(), ctx.max_frame_bytes) {
                Ok(ClientFrame::Hello { version, token }) => {
                    if !constant_time_eq(token.as_bytes(), ctx.token.as_bytes()) {
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
        Ok(Some(Ok(_))) => Some((
            close::HANDSHAKE_FAILED,
            "the first frame must be a JSON text hello".to_string(),
        )),
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

    let (out_tx, mut out_rx) = mpsc::channel::<Message>(OUTBOX);

    // Writer: batch everything queued, flush once.
    let writer = tokio::spawn(async move {
        while let Some(first) = out_rx.recv().await {
            let closing = matches!(first, Message::Close(_));
            if sink.feed(first).await.is_err() {
                return;
            }
            if !closing {
                while let Ok(next) = out_rx.try_recv() {
                    let closing = matches!(next, Message::Close(_));
                    if sink.feed(next).await.is_err() {
                        return;
                    }
                    if closing {
                        break;
                    }
                }
            }
            if sink.flush().await.is_err() || closing {
                let _ = sink.close().await;
                return;
            }
        }
    });

    // Events: forward the node's broadcast; report what was missed.
    let mut events = ctx.node.subscribe_events();
    let event_tx = out_tx.clone();
    let forwarder = tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(missed)) => Event::Lagged { missed },
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if let Some(msg) = frame_text(&ServerFrame::Event(event)) {
                if event_tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
    });

    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let reply = |out: &mpsc::Sender<Message>, response: Response| {
        let out = out.clone();
        async move {
            if let Some(msg) = frame_text(&ServerFrame::Response(response)) {
                let _ = out.send(msg).await;
            }
        }
    };

    loop {
        let next = tokio::select! {
            _ = shutdown.changed() => {
                let _ = out_tx.send(close_message(close::SHUTTING_DOWN, "the daemon is shutting down")).await;
                break;
            }
            next = source.next() => next,
        };
        let message = match next {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Ok(message)) => message,
            Some(Err(WsError::Capacity(e))) => {
                let reason =
                    format!("message over the hard limit of {HARD_MAX_FRAME_BYTES} bytes: {e}");
                tracing::warn!(%reason, "closing IPC connection");
                let _ = out_tx
                    .send(close_message(close::FRAME_TOO_LARGE, &reason))
                    .await;
                break;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "IPC connection error");
                break;
            }
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                reply(
                    &out_tx,
                    Response::err(
                        None,
                        ErrorBody::new(
                            ErrorCode::BadFrame,
                            "binary frames are not part of the protocol; send JSON text frames",
                        ),
                    ),
                )
                .await;
                continue;
            }
            // Pings are answered by tungstenite itself.
            _ => continue,
        };
        match decode_client_frame(text.as_str(), ctx.max_frame_bytes) {
            Ok(ClientFrame::Request(Request { id, trace, op })) => {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    reply(
                        &out_tx,
                        Response::err(
                            Some(id),
                            ErrorBody::new(
                                ErrorCode::Busy,
                                format!("more than {MAX_IN_FLIGHT} requests in flight on this connection"),
                            ),
                        ),
                    )
                    .await;
                    continue;
                };
                let ctx = ctx.clone();
                let out = out_tx.clone();
                let op_name = op.name();
                // The host's request id (or `msg:<id>` for its outbox), so
                // that one message can be followed through both logs.
                let span = tracing::debug_span!(
                    "ipc_request",
                    id,
                    op = op_name,
                    trace = trace.as_deref().unwrap_or("")
                );
                // Node operations are handed over here, in the order they
                // arrived, so pipelined requests take effect in order; only
                // their answers are awaited concurrently.
                let submitted = match op {
                    Op::Reproduce { count } => Err(count),
                    op => Ok(ctx.node.submit(op).await),
                };
                tokio::spawn(
                    async move {
                        tracing::debug!("request");
                        let answer = match submitted {
                            Err(count) => ctx
                                .reproducer
                                .reproduce(&ctx.node, count)
                                .await
                                .and_then(|r| {
                                    serde_json::to_value(r).map_err(|e| {
                                        ErrorBody::new(ErrorCode::Internal, e.to_string())
                                    })
                                }),
                            Ok(Ok(pending)) => pending.result().await,
                            Ok(Err(e)) => Err(e),
                        };
                        let response = match answer {
                            Ok(result) => Response::ok(id, result),
                            Err(error) => {
                                tracing::debug!(%error, "request failed");
                                Response::err(Some(id), error)
                            }
                        };
                        reply(&out, response).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Ok(ClientFrame::Hello { .. }) => {
                reply(
                    &out_tx,
                    Response::err(
                        None,
                        ErrorBody::new(
                            ErrorCode::ProtocolViolation,
                            "this connection is already authenticated",
                        ),
                    ),
                )
                .await;
            }
            Err(e) => reply(&out_tx, Response::err(e.id, e.error)).await,
        }
    }

    forwarder.abort();
    drop(out_tx);
    // Let queued responses and the close frame go out.
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}
