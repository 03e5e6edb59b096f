//! Request ids that follow one piece of work through host and daemon logs.
//!
//! Every HTTP request gets an id (the caller's `X-Request-Id` when it is a
//! sane one, else a fresh one), echoed in the response header and recorded
//! on a `tracing` span around the handler. The id lives in a task-local so
//! that the IPC client, deep below the handler, can put it on the wire as the
//! request's `trace`; the daemon logs it with the operation. Work the outbox
//! does later, on its own task, is traced by the message id instead, which
//! the handler logs beside the request id.

use std::future::Future;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

tokio::task_local! {
    static TRACE_ID: String;
}

/// The header a request id arrives and leaves in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest caller-chosen request id kept.
const MAX_LEN: usize = 64;

/// The trace id of the task running now, if it has one.
pub fn current() -> Option<String> {
    TRACE_ID.try_with(Clone::clone).ok()
}

/// Run `fut` with `trace` as its trace id.
pub async fn scope<F: Future>(trace: String, fut: F) -> F::Output {
    TRACE_ID.scope(trace, fut).await
}

/// Run `f` (synchronous) with `trace` as its trace id.
pub fn sync_scope<R>(trace: String, f: impl FnOnce() -> R) -> R {
    TRACE_ID.sync_scope(trace, f)
}

/// A caller's id is kept when it is short and made of `[A-Za-z0-9._:-]`,
/// so that it cannot forge log lines; otherwise a new one is made.
fn accept(candidate: Option<&HeaderValue>) -> String {
    candidate
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_LEN
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map(str::to_owned)
        .unwrap_or_else(new_id)
}

fn new_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Middleware: give the request an id, a span, and the response header.
pub async fn request_id(request: Request, next: Next) -> Response {
    let id = accept(request.headers().get(REQUEST_ID_HEADER));
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
    );
    let mut response = scope(id.clone(), next.run(request).instrument(span.clone())).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "served"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        let keep = HeaderValue::from_static("abc-123:x.y_z");
        assert_eq!(accept(Some(&keep)), "abc-123:x.y_z");
        let forged = HeaderValue::from_static("a b\" level=error");
        let replaced = accept(Some(&forged));
        assert_eq!(replaced.len(), 16);
        assert!(replaced.bytes().all(|b| b.is_ascii_hexdigit()));
        let long = HeaderValue::from_str(&"a".repeat(65)).unwrap();
        assert_ne!(accept(Some(&long)), "a".repeat(65));
        assert_eq!(accept(None).len(), 16);
    }

    #[tokio::test]
    async fn the_id_is_visible_inside_its_scope_only() {
        assert_eq!(current(), None);
        let seen = scope("r1".into(), async { current() }).await;
        assert_eq!(seen.as_deref(), Some("r1"));
        assert_eq!(current(), None);
    }
}
