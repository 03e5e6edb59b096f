//! libp2p over webrtc-direct: rust-libp2p's WebRTC transport (ICE-lite,
//! DTLS, SCTP data channels, Noise over the first channel), which go and js
//! peers and browsers dial by an address ending in
//! `/webrtc-direct/certhash/…`.
//!
//! The certhash is the hash of the node's DTLS certificate, so a peer that
//! remembered the address can dial it again only if the certificate is the
//! same: with a data directory the certificate is kept there
//! ([`CERTIFICATE_FILE`], beside the node's state file, readable by its owner
//! only since it holds the private key) and a restart announces the same
//! address. The certificate is valid until the year 4096; no rotation is
//! needed, unlike WebTransport's 14-day ones.
//!
//! Each dial runs on a UDP socket of its own, on an ephemeral port, never
//! announced ([`Transport`]). rust-libp2p's transport dials through the
//! socket of one of its listeners and refuses to dial without one ("no
//! active listeners", which failed the interop suite's dialers, started with
//! `-noListenAddrs`); and its socket routes packets to sessions by the
//! sender's address, and ignores for good a sender whose first session
//! failed to start. Two nodes that dialed each other from their listening
//! sockets could then never meet again once one of them restarted on its
//! port (measured: no connection in two minutes); from a fresh socket each
//! time, every new session comes from an address the other end has not
//! seen.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use libp2p_webrtc::tokio::Certificate;

/// File name inside the data directory.
pub const CERTIFICATE_FILE: &str = "webrtc-certificate.pem";

/// Why no certificate could be had.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot generate a WebRTC certificate: {0}")]
    Generate(String),
}

/// The node's certificate: the one kept in `dir` when there is one (made and
/// kept there on first use), else a new one for this run. A file that cannot
/// be read or parsed is replaced, with a warning: the node's webrtc-direct
/// address changes, nothing else.
pub fn certificate(dir: Option<&Path>) -> Result<Certificate, CertificateError> {
    let Some(dir) = dir else {
        return generate();
    };
    let path = dir.join(CERTIFICATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(pem) => match Certificate::from_pem(&pem) {
            Ok(certificate) => return Ok(certificate),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "the WebRTC certificate file is not a certificate; making a new one \
                 (this node's webrtc-direct address changes)"
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot read the WebRTC certificate; making a new one \
             (this node's webrtc-direct address changes)"
        ),
    }
    let certificate = generate()?;
    if let Err(e) = save(&path, &certificate.serialize_pem()) {
        tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot keep the WebRTC certificate; the webrtc-direct address will change \
             at the next start (is the data directory writable?)"
        );
    }
    Ok(certificate)
}

fn generate() -> Result<Certificate, CertificateError> {
    Certificate::generate(&mut rand_webrtc::rng())
        .map_err(|e| CertificateError::Generate(e.to_string()))
}

/// Write atomically (a crash mid-write leaves no half file) and, on Unix,
/// readable by the owner only.
fn save(path: &Path, pem: &str) -> std::io::Result<()> {
    let tmp: PathBuf = path.with_extension("pem.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

type Inner = libp2p_webrtc::tokio::Transport;

/// libp2p-webrtc's transport for listening, and one more of it per dial,
/// on a socket of the dial's own (see the module's comment).
pub struct Transport {
    keypair: libp2p::identity::Keypair,
    certificate: Certificate,
    listeners: Inner,
    dialers: Vec<Dialer>,
}

/// The socket one outbound connection runs on, polled (its reads are
/// driven by its listener) for as long as the connection lives.
struct Dialer {
    transport: Inner,
    /// Dead once the dial failed or its connection was dropped.
    alive: Weak<()>,
}

impl Transport {
    pub fn new(keypair: libp2p::identity::Keypair, certificate: Certificate) -> Self {
        // webrtc-rs's DTLS asks rustls for the process's default crypto
        // provider, and panics when there is none to pick: this build has
        // both ring and aws-lc-rs (QUIC brings the latter), so none is
        // picked by itself. Ring, as for the node's QUIC and TLS; an error
        // means one is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Transport {
            listeners: Inner::new(keypair.clone(), certificate.clone()),
            keypair,
            certificate,
            dialers: Vec::new(),
        }
    }
}

/// An ephemeral port of `addr`'s IP family, on every interface, to dial
/// `addr` from.
fn dial_socket_for(addr: &Multiaddr) -> Multiaddr {
    let ip = match addr.iter().next() {
        Some(Protocol::Ip6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Multiaddr::from(ip)
        .with(Protocol::Udp(0))
        .with(Protocol::WebRTCDirect)
}

type Error = <Inner as libp2p::Transport>::Error;

impl libp2p::Transport for Transport {
    type Output = (libp2p::PeerId, Connection);
    type Error = Error;
    type ListenerUpgrade = BoxFuture<'static, Result<Self::Output, Error>>;
    type Dial = BoxFuture<'static, Result<Self::Output, Error>>;

    fn listen_on(&mut self, id: ListenerId, addr: Multiaddr) -> Result<(), TransportError<Error>> {
        self.listeners.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.listeners.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Error>> {
        if !is_webrtc_direct(&addr) {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        // A listener, never announced, on a socket of this dial's own.
        let mut transport = Inner::new(self.keypair.clone(), self.certificate.clone());
        transport.listen_on(ListenerId::next(), dial_socket_for(&addr))?;
        let dial = transport.dial(addr, opts)?;
        let token = Arc::new(());
        self.dialers.push(Dialer {
            transport,
            alive: Arc::downgrade(&token),
        });
        Ok(dial
            .map_ok(move |(peer, inner)| {
                (
                    peer,
                    Connection {
                        inner,
                        _socket: Some(token),
                    },
                )
            })
            .boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Error>> {
        // The dialers' sockets: their events stay here (their addresses are
        // not this node's to announce, and nobody was told to dial them),
        // and a dialer whose connection is gone goes, with its socket.
        self.dialers.retain(|d| d.alive.strong_count() > 0);
        for dialer in &mut self.dialers {
            while let Poll::Ready(event) = Pin::new(&mut dialer.transport).poll(cx) {
                drop(event);
            }
        }
        Pin::new(&mut self.listeners).poll(cx).map(|event| {
            event.map_upgrade(|upgrade| {
                upgrade
                    .map_ok(|(peer, inner)| {
                        (
                            peer,
                            Connection {
                                inner,
                                _socket: None,
                            },
                        )
                    })
                    .boxed()
            })
        })
    }
}

/// A WebRTC connection; an outbound one keeps its dialer's socket open.
pub struct Connection {
    inner: libp2p_webrtc::tokio::Connection,
    _socket: Option<Arc<()>>,
}

impl StreamMuxer for Connection {
    type Substream = <libp2p_webrtc::tokio::Connection as StreamMuxer>::Substream;
    type Error = <libp2p_webrtc::tokio::Connection as StreamMuxer>::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        Pin::new(&mut self.inner).poll_inbound(cx)
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        Pin::new(&mut self.inner).poll_outbound(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// Whether `addr` is one this transport dials (`…/udp/PORT/webrtc-direct/…`).
fn is_webrtc_direct(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::WebRTCDirect))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_certificate_comes_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let first = certificate(Some(dir.path())).unwrap();
        let second = certificate(Some(dir.path())).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CERTIFICATE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the private key is readable by others");
        }
    }

    #[test]
    fn a_broken_file_is_replaced_and_without_a_directory_each_run_is_new() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CERTIFICATE_FILE), "not a certificate").unwrap();
        let replaced = certificate(Some(dir.path())).unwrap();
        let again = certificate(Some(dir.path())).unwrap();
        assert_eq!(replaced.fingerprint(), again.fingerprint());
        let a = certificate(None).unwrap();
        let b = certificate(None).unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
