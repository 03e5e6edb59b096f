//! libp2p over WebTransport (HTTP/3 on QUIC), for go-libp2p's and
//! js-libp2p's `/quic-v1/webtransport` addresses; rust-libp2p has a
//! WebTransport dialer for browsers only.
//!
//! What the libp2p WebTransport specification asks, and where it is done:
//! - the listener makes a self-signed certificate valid for 14 days (the
//!   longest a client accepts by hash) and announces its SHA-256 as
//!   `/certhash` (`listen.rs` here; `addr.rs` for the address forms);
//! - a dialer connects to `https://HOST:PORT/.well-known/libp2p-webtransport?type=noise`
//!   accepting only a certificate with one of the address's hashes, opens one
//!   bidirectional stream and runs Noise XX on it as the initiator; the
//!   listener answers with its certificate hashes in Noise's extensions and
//!   the dialer checks that the hashes it dialed are among them (so a
//!   certificate cannot be replayed by another peer), then the stream is
//!   closed;
//! - every later bidirectional stream is a libp2p stream (`muxer.rs`).
//!
//! Certificates rotate every 6 days (`listen.rs`), so an address stays
//! dialable for at least 6 days after it was learnt.

mod addr;
mod client;
mod listen;
mod muxer;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{AsyncWriteExt, FutureExt};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade};
use libp2p::identity::Keypair;
use libp2p::{noise, Multiaddr, PeerId};
use wtransport::tls::Sha256Digest;

pub use muxer::{Connection, Stream};

/// Keep-alives keep an idle session (and a NAT's mapping) open; QUIC's idle
/// timeout would otherwise close it while libp2p still wants it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A session that is not secured by then is dropped: a peer that opens a
/// session and never finishes Noise holds nothing for longer (TCP's
/// upgrades have the same bound).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

type Upgrade = BoxFuture<'static, io::Result<(PeerId, Connection)>>;

/// `upgrade`, failed with `TimedOut` past [`UPGRADE_TIMEOUT`].
fn bounded(
    upgrade: impl std::future::Future<Output = io::Result<(PeerId, Connection)>> + Send + 'static,
) -> Upgrade {
    async move {
        tokio::time::timeout(UPGRADE_TIMEOUT, upgrade)
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, "WebTransport upgrade timed out")
            })?
    }
    .boxed()
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// The WebTransport transport: listens on and dials `/quic-v1/webtransport`
/// addresses. Its own UDP sockets: a QUIC listener of this node does not
/// share its port with it.
pub struct Transport {
    keypair: Keypair,
    /// How long a listener serves one certificate (`listen::ROTATE`).
    rotate_every: Duration,
    listeners: Vec<listen::Listener>,
    /// Events of listeners already removed (`ListenerClosed`).
    closed: VecDeque<TransportEvent<Upgrade, io::Error>>,
    waker: Option<Waker>,
}

impl Transport {
    pub fn new(keypair: Keypair) -> Self {
        Self::rotating_every(keypair, listen::ROTATE)
    }

    fn rotating_every(keypair: Keypair, rotate_every: Duration) -> Self {
        Transport {
            keypair,
            rotate_every,
            listeners: Vec::new(),
            closed: VecDeque::new(),
            waker: None,
        }
    }

    /// Every listener serves its next certificate now, as its timer would.
    #[cfg(test)]
    fn rotate_now(&mut self) {
        for listener in &mut self.listeners {
            listener.rotate().expect("rotate");
        }
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

impl libp2p::core::Transport for Transport {
    type Output = (PeerId, Connection);
    type Error = io::Error;
    type ListenerUpgrade = Upgrade;
    type Dial = Upgrade;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        let Some(parsed) = addr::parse(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        if !parsed.certhashes.is_empty() {
            return Err(TransportError::Other(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr}: a WebTransport listen address takes no /certhash (the node makes its own certificate)"),
            )));
        }
        let listener = listen::Listener::bind(id, parsed.socket, self.rotate_every)
            .map_err(TransportError::Other)?;
        self.listeners.push(listener);
        self.wake();
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        let Some(index) = self.listeners.iter().position(|l| l.id() == id) else {
            return false;
        };
        self.listeners.swap_remove(index).close();
        self.closed.push_back(TransportEvent::ListenerClosed {
            listener_id: id,
            reason: Ok(()),
        });
        self.wake();
        true
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Some(parsed) = addr::parse(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        if parsed.certhashes.is_empty() {
            return Err(TransportError::Other(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr}: a WebTransport address needs the listener's /certhash"),
            )));
        }
        let noise =
            noise::Config::new(&self.keypair).map_err(|e| TransportError::Other(other(e)))?;
        Ok(bounded(dial(parsed.socket, parsed.certhashes, noise)))
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        if let Some(event) = self.closed.pop_front() {
            return Poll::Ready(event);
        }
        let keypair = self.keypair.clone();
        for listener in &mut self.listeners {
            if let Poll::Ready(event) = listener.poll(cx, &keypair) {
                return Poll::Ready(event);
            }
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Dials `socket`, accepting only a certificate with one of `certhashes`,
/// and authenticates the peer by Noise on the session's first stream.
async fn dial(
    socket: SocketAddr,
    certhashes: Vec<libp2p::multiaddr::multihash::Multihash<64>>,
    noise: noise::Config,
) -> io::Result<(PeerId, Connection)> {
    let digests: Vec<Sha256Digest> = certhashes
        .iter()
        .filter_map(addr::sha256_of)
        .map(Sha256Digest::new)
        .collect();
    if digests.is_empty() {
        return Err(other("no SHA-256 /certhash in the WebTransport address"));
    }
    let session = client::connect(socket, digests)
        .await
        .map_err(|e| other(format!("WebTransport session to {socket}: {e}")))?;
    let connection = Connection::dialed(session);
    let expected: HashSet<_> = certhashes.into_iter().collect();
    let noise = noise.with_webtransport_certhashes(expected);
    let (peer, mut secured) = noise
        .upgrade_outbound(connection.handshake_stream().await?, "/noise")
        .await
        .map_err(other)?;
    // The handshake stream has done its job; the session's other streams
    // carry libp2p's protocols.
    let _ = secured.close().await;
    Ok((peer, connection))
}

/// The listener's side of a session: the request's path, then Noise as the
/// responder, announcing this certificate's hash.
async fn accept(
    incoming: wtransport::endpoint::IncomingSession,
    noise: noise::Config,
) -> io::Result<(PeerId, Connection)> {
    let request = incoming.await.map_err(other)?;
    if !addr::is_libp2p_path(request.path()) {
        let path = request.path().to_string();
        request.not_found().await;
        return Err(other(format!(
            "WebTransport session asked for {path}, not libp2p's"
        )));
    }
    let connection = Connection::accepted(request.accept().await.map_err(other)?);
    let (peer, mut secured) = noise
        .upgrade_inbound(connection.handshake_stream().await?, "/noise")
        .await
        .map_err(other)?;
    let _ = secured.close().await;
    Ok((peer, connection))
}
