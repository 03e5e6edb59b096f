//! A WebTransport session as a libp2p connection: WebTransport multiplexes
//! by itself, so every bidirectional stream of the session is one libp2p
//! stream (no yamux on top), as the libp2p WebTransport specification says.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, FutureExt};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use tokio::io::{AsyncRead as TokioRead, AsyncWrite as TokioWrite, ReadBuf};

use super::client::{self, Dialed};
use super::other;

type Opening = BoxFuture<'static, io::Result<Stream>>;

/// Who made the session: a listener's (wtransport's server) or a dial's
/// (this module's own client, `client.rs`).
#[derive(Clone)]
enum Session {
    Accepted(wtransport::Connection),
    Dialed(std::sync::Arc<Dialed>),
}

/// An established session, after the Noise handshake on its first stream.
pub struct Connection {
    session: Session,
    inbound: Option<Opening>,
    outbound: Option<Opening>,
    closed: BoxFuture<'static, String>,
}

impl Connection {
    pub(super) fn accepted(session: wtransport::Connection) -> Self {
        Self::new(Session::Accepted(session))
    }

    pub(super) fn dialed(session: Dialed) -> Self {
        Self::new(Session::Dialed(std::sync::Arc::new(session)))
    }

    fn new(session: Session) -> Self {
        let closed = match session.clone() {
            Session::Accepted(c) => async move { c.closed().await.to_string() }.boxed(),
            Session::Dialed(d) => async move { d.connection.closed().await.to_string() }.boxed(),
        };
        Connection {
            session,
            inbound: None,
            outbound: None,
            closed,
        }
    }
}

impl Connection {
    /// The stream the Noise handshake runs on: the first one the dialer
    /// opens.
    pub(super) fn handshake_stream(&self) -> Opening {
        let session = self.session.clone();
        match session {
            Session::Accepted(_) => session.accept().boxed(),
            Session::Dialed(_) => session.open().boxed(),
        }
    }
}

impl Session {
    /// The next stream the peer opens.
    async fn accept(self) -> io::Result<Stream> {
        match self {
            Session::Accepted(c) => {
                let (send, recv) = c.accept_bi().await.map_err(other)?;
                Ok(Stream::new(send, recv))
            }
            Session::Dialed(d) => loop {
                let (send, mut recv) = d.connection.accept_bi().await.map_err(other)?;
                // Each stream of the session starts with its frame type and
                // the session's id; a stream of another kind is not ours.
                let kind = client::read_varint(&mut recv).await?;
                let id = client::read_varint(&mut recv).await?;
                if kind == client::FRAME_WEBTRANSPORT_STREAM && id == d.session_id {
                    return Ok(Stream::new(send, recv));
                }
            },
        }
    }

    /// A new stream to the peer.
    async fn open(self) -> io::Result<Stream> {
        match self {
            Session::Accepted(c) => {
                let (send, recv) = c.open_bi().await.map_err(other)?.await.map_err(other)?;
                Ok(Stream::new(send, recv))
            }
            Session::Dialed(d) => {
                let (mut send, recv) = d.connection.open_bi().await.map_err(other)?;
                let mut prefix = Vec::new();
                client::put_varint(&mut prefix, client::FRAME_WEBTRANSPORT_STREAM);
                client::put_varint(&mut prefix, d.session_id);
                send.write_all(&prefix).await?;
                Ok(Stream::new(send, recv))
            }
        }
    }

    fn close(&self) {
        match self {
            Session::Accepted(c) => c.close(wtransport::VarInt::from_u32(0), b""),
            Session::Dialed(d) => d.connection.close(0u32.into(), b""),
        }
    }
}

/// Polls the opening in `slot`, starting one with `start` when there is none.
fn poll_opening(
    slot: &mut Option<Opening>,
    start: impl FnOnce() -> Opening,
    cx: &mut Context<'_>,
) -> Poll<io::Result<Stream>> {
    let opening = slot.get_or_insert_with(start);
    let result = futures::ready!(opening.poll_unpin(cx));
    *slot = None;
    Poll::Ready(result)
}

impl StreamMuxer for Connection {
    type Substream = Stream;
    type Error = io::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        let session = this.session.clone();
        poll_opening(&mut this.inbound, || session.accept().boxed(), cx)
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        let session = this.session.clone();
        poll_opening(&mut this.outbound, || session.open().boxed(), cx)
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.session.close();
        Poll::Ready(Ok(()))
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        // Nothing to report while the session lives; its end closes the
        // libp2p connection.
        let reason = futures::ready!(self.get_mut().closed.poll_unpin(cx));
        Poll::Ready(Err(other(reason)))
    }
}

/// One bidirectional WebTransport stream, with futures' I/O traits.
pub struct Stream {
    send: Pin<Box<dyn TokioWrite + Send>>,
    recv: Pin<Box<dyn TokioRead + Send>>,
}

impl Stream {
    pub(super) fn new(
        send: impl TokioWrite + Send + 'static,
        recv: impl TokioRead + Send + 'static,
    ) -> Self {
        Stream {
            send: Box::pin(send),
            recv: Box::pin(recv),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        futures::ready!(self.get_mut().recv.as_mut().poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().send.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().send.as_mut().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().send.as_mut().poll_shutdown(cx)
    }
}
