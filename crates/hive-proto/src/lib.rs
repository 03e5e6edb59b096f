//! The IPC protocol spoken between the Hive host (`hive`) and its daemon
//! (`hive-p2pd`), and by any other client of the daemon.
//!
//! This crate is the *only* thing the two processes share: the host links no
//! libp2p, the daemon knows nothing of HTTP. Keeping every frame, operation,
//! result and event here makes the seam between them explicit and lets both
//! sides (and tests) agree on one definition. `docs/IPC.md` describes the same
//! messages for clients written in other languages.
//!
//! Transport: one WebSocket connection, JSON text frames. The client first
//! sends [`ClientFrame::Hello`] with the protocol version and the secret token;
//! the daemon answers [`ServerFrame::Welcome`] or closes the connection with
//! one of the [`close`] codes. After that the client may pipeline any number of
//! [`Request`]s; each gets exactly one [`Response`] carrying the same `id`, in
//! whatever order they complete. [`Event`]s are pushed at any time.
//!
//! Besides the protocol, the two small rules both processes must follow
//! alike live here too: the supervisors' restart [`backoff`], the
//! poisoned-mutex policy ([`sync::lock`]) and the constant-time comparison
//! of tokens ([`secret::same_secret`]).

pub mod backoff;
pub mod bytes;
pub mod codec;
pub mod event;
pub mod fanout;
pub mod op;
pub mod secret;
pub mod sync;

pub use bytes::Bytes;
pub use codec::{decode_client_frame, decode_server_frame, FrameError};
pub use event::Event;
pub use op::*;

use serde::{Deserialize, Serialize};

/// Version of the IPC protocol. A client announcing another version is
/// refused with [`close::VERSION_MISMATCH`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Environment variable through which a parent hands the daemon its IPC
/// token. Never put the token on the command line: `ps` shows it to everyone.
pub const ENV_IPC_TOKEN: &str = "HIVE_IPC_TOKEN";

/// Environment variable that, when set to `1`, makes the daemon exit when its
/// parent process dies (parent-death signal plus a parent-pid watchdog).
pub const ENV_EXIT_WITH_PARENT: &str = "HIVE_EXIT_WITH_PARENT";

/// Default soft limit on one IPC frame. A larger frame is answered with
/// [`ErrorCode::FrameTooLarge`] and the connection keeps working.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// Hard limit on one WebSocket message: past this the WebSocket layer itself
/// gives up and the connection is closed with [`close::FRAME_TOO_LARGE`].
pub const HARD_MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// WebSocket close codes (private range 4000-4999) used by the daemon.
pub mod close {
    /// The hello frame carried a wrong or missing token.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The hello frame announced an unsupported protocol version.
    pub const VERSION_MISMATCH: u16 = 4002;
    /// No hello frame arrived in time, or the first frame was not a hello.
    pub const HANDSHAKE_FAILED: u16 = 4003;
    /// The client fell too far behind the event stream and was dropped.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// A frame exceeded the hard limit of the WebSocket layer.
    pub const FRAME_TOO_LARGE: u16 = 4009;
    /// The daemon is shutting down.
    pub const SHUTTING_DOWN: u16 = 4010;
}

/// A frame sent by a client to the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Must be the first frame on a connection.
    Hello { version: u32, token: String },
    /// An operation; answered by exactly one [`Response`] with the same id.
    Request(Request),
}

/// One request: a client-chosen id (unique among the client's requests in
/// flight) and an operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    /// An id that follows one piece of work across processes (the host's
    /// HTTP request id): the daemon logs it with the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    #[serde(flatten)]
    pub op: Op,
}

/// A frame sent by the daemon to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Answer to a valid hello.
    Welcome {
        version: u32,
        peer_id: String,
        /// The daemon's software version.
        daemon_version: String,
    },
    /// Answer to a request.
    Response(Response),
    /// Pushed without being asked for.
    Event(Event),
}

/// The answer to one request: `result` on success, `error` on failure.
/// `id` is absent only when a frame was so malformed that its id could not be
/// read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn ok(id: u64, result: serde_json::Value) -> Self {
        Response {
            id: Some(id),
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: Option<u64>, error: ErrorBody) -> Self {
        Response {
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// A structured error: a stable machine-readable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

/// Stable error codes. Clients match on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON or not a known frame shape.
    BadFrame,
    /// The frame exceeded the daemon's frame size limit.
    FrameTooLarge,
    /// The `op` is not one this daemon knows.
    UnknownOp,
    /// The op is known but its `args` are missing or invalid (bad peer id,
    /// bad multiaddr, ...).
    BadArgs,
    /// A hello was sent twice, or a request before the hello.
    ProtocolViolation,
    /// The thing asked for does not exist (no record, no such peer, ...).
    NotFound,
    /// The operation did not finish in time.
    Timeout,
    /// Dialing the peer or address failed.
    DialFailed,
    /// The peer is not connected and could not be reached.
    NotConnected,
    /// Gossipsub refused the publish (for example no peers in the topic).
    PublishFailed,
    /// The remote daemon did not acknowledge a direct message.
    SendFailed,
    /// Too many requests in flight on this connection.
    Busy,
    /// The remote daemon refused a direct message: its sender is over the
    /// receiver's rate limit. Try again later.
    RateLimited,
    /// The daemon is shutting down.
    ShuttingDown,
    /// This daemon cannot do that here (for example a node that cannot start
    /// processes asked to reproduce, or a limit on nodes reached).
    Unsupported,
    /// Anything else; the message says what.
    Internal,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{self:?}"));
        f.write_str(&text)
    }
}

/// The one JSON line the daemon prints on stdout once it is ready to serve.
/// Nothing else is ever written to stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadyLine {
    /// Always `"ready"`.
    pub event: String,
    /// Where the IPC listens: `ws://127.0.0.1:PORT` or `unix:/path/to.sock`.
    pub ipc: String,
    pub peer_id: String,
    /// Full multiaddrs, each ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<String>,
    pub pid: u32,
    pub daemon_version: String,
    pub protocol_version: u32,
}
