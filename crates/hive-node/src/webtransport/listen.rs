//! One WebTransport listener: its UDP socket, its certificates, the
//! addresses it announces and the sessions it accepts.
//!
//! Certificates rotate. A client accepts a certificate by hash only if it is
//! valid for at most 14 days, so each is made valid for 14 days from the
//! moment it is made, and made one period before it is served: an address
//! announces the served certificate's hash and the next one's, and stays
//! dialable until the end of the period after the one it was learnt in (at
//! least `ROTATE`). Noise announces the previous hash too, for a dialer who
//! learnt the address one period ago. go-libp2p rotates in the same spirit.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use libp2p::core::transport::{ListenerId, TransportEvent};
use libp2p::identity::Keypair;
use libp2p::multiaddr::multihash::Multihash;
use libp2p::{noise, Multiaddr};
use wtransport::endpoint::endpoint_side::Server;
use wtransport::endpoint::IncomingSession;
use wtransport::{Endpoint, Identity, ServerConfig};

use super::{addr, other, Upgrade, KEEP_ALIVE};

type Event = TransportEvent<Upgrade, io::Error>;

/// How long a certificate is served: 6 of its 14 days, after 6 days of being
/// announced as the next one, leaving two days of margin for clocks.
pub(super) const ROTATE: Duration = Duration::from_secs(6 * 24 * 3600);
const VALIDITY: time::Duration = time::Duration::days(14);
/// Made valid from a little before now, for a client whose clock is behind.
const BACKDATE: time::Duration = time::Duration::hours(1);

/// The served certificate's hash, the one before it and the next (with its
/// key, ready to be served).
struct Certs {
    previous: Option<Multihash<64>>,
    current: Multihash<64>,
    next: (Identity, Multihash<64>),
}

pub(super) struct Listener {
    id: ListenerId,
    endpoint: Arc<Endpoint<Server>>,
    next_session: BoxFuture<'static, IncomingSession>,
    /// The bound address (the real port when 0 was asked).
    local: SocketAddr,
    certs: Certs,
    rotate_every: Duration,
    rotation: Pin<Box<tokio::time::Sleep>>,
    /// The addresses announced now: the bound one, or on an unspecified
    /// address (0.0.0.0, ::) those of the interfaces, as they come and go.
    ips: Vec<IpAddr>,
    interfaces: Option<if_watch::tokio::IfWatcher>,
    events: VecDeque<Event>,
}

/// A certificate for `local`, valid for 14 days from about now.
fn identity(local: SocketAddr) -> io::Result<(Identity, Multihash<64>)> {
    let now = time::OffsetDateTime::now_utc() - BACKDATE;
    let identity = Identity::self_signed_builder()
        .subject_alt_names(["localhost".to_string(), local.ip().to_string()])
        .validity_period(now, now + VALIDITY)
        .build()
        .map_err(other)?;
    let digest = identity
        .certificate_chain()
        .as_ref()
        .first()
        .ok_or_else(|| other("self-signed identity without a certificate"))?
        .hash();
    Ok((identity, addr::certhash(digest.as_ref())))
}

fn server_config(local: SocketAddr, identity: Identity) -> ServerConfig {
    ServerConfig::builder()
        .with_bind_address(local)
        .with_identity(identity)
        .keep_alive_interval(Some(KEEP_ALIVE))
        .build()
}

impl Listener {
    /// Binds `socket` with new certificates. The address is announced at
    /// once (or, on an unspecified address, per interface as they appear).
    pub(super) fn bind(
        id: ListenerId,
        socket: SocketAddr,
        rotate_every: Duration,
    ) -> io::Result<Self> {
        let (served, current) = identity(socket)?;
        let next = identity(socket)?;
        let endpoint = Arc::new(Endpoint::server(server_config(socket, served))?);
        let local = endpoint.local_addr()?;
        let (ips, interfaces) = if local.ip().is_unspecified() {
            (Vec::new(), Some(if_watch::tokio::IfWatcher::new()?))
        } else {
            (vec![local.ip()], None)
        };
        let mut listener = Listener {
            id,
            next_session: accept_next(endpoint.clone()),
            endpoint,
            local,
            certs: Certs {
                previous: None,
                current,
                next,
            },
            rotate_every,
            rotation: Box::pin(tokio::time::sleep(rotate_every)),
            ips,
            interfaces,
            events: VecDeque::new(),
        };
        listener.announce_all();
        Ok(listener)
    }

    pub(super) fn id(&self) -> ListenerId {
        self.id
    }

    pub(super) fn close(&self) {
        self.endpoint.close(wtransport::VarInt::from_u32(0), b"");
    }

    /// The address of `ip` with the hashes a dialer may accept now.
    fn address(&self, ip: IpAddr) -> Multiaddr {
        let hashes = [self.certs.current, self.certs.next.1];
        addr::to_multiaddr(SocketAddr::new(ip, self.local.port()), &hashes)
    }

    fn announce_all(&mut self) {
        for ip in self.ips.clone() {
            let listen_addr = self.address(ip);
            self.events.push_back(TransportEvent::NewAddress {
                listener_id: self.id,
                listen_addr,
            });
        }
    }

    /// Serves the next certificate, makes a new next one and announces the
    /// addresses with their new hashes in place of the old.
    pub(super) fn rotate(&mut self) -> io::Result<()> {
        let next = identity(self.local)?;
        let expired: Vec<Multiaddr> = self.ips.iter().map(|ip| self.address(*ip)).collect();
        let (served, served_hash) = std::mem::replace(&mut self.certs.next, next);
        self.endpoint
            .reload_config(server_config(self.local, served), false)?;
        for listen_addr in expired {
            self.events.push_back(TransportEvent::AddressExpired {
                listener_id: self.id,
                listen_addr,
            });
        }
        self.certs.previous = Some(self.certs.current);
        self.certs.current = served_hash;
        self.announce_all();
        Ok(())
    }

    pub(super) fn poll(&mut self, cx: &mut Context<'_>, keypair: &Keypair) -> Poll<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(event);
            }
            if self.rotation.poll_unpin(cx).is_ready() {
                let deadline = self.rotation.deadline() + self.rotate_every;
                self.rotation.as_mut().reset(deadline);
                if let Err(error) = self.rotate() {
                    return Poll::Ready(TransportEvent::ListenerError {
                        listener_id: self.id,
                        error,
                    });
                }
                continue;
            }
            if let Some(event) = self.poll_interfaces(cx) {
                return Poll::Ready(event);
            }
            let incoming = futures::ready!(self.next_session.poll_unpin(cx));
            self.next_session = accept_next(self.endpoint.clone());
            return Poll::Ready(self.incoming(incoming, keypair));
        }
    }

    fn incoming(&self, incoming: IncomingSession, keypair: &Keypair) -> Event {
        let send_back_addr = addr::to_multiaddr(incoming.remote_address(), &[]);
        let local_addr = addr::to_multiaddr(self.local, &[]);
        // Every hash a dialer may hold goes back in Noise's extensions; the
        // dialer checks that the ones it dialed with are among them.
        let hashes = [
            Some(self.certs.current),
            Some(self.certs.next.1),
            self.certs.previous,
        ];
        let upgrade = match noise::Config::new(keypair) {
            Ok(noise) => super::bounded(super::accept(
                incoming,
                noise.with_webtransport_certhashes(hashes.into_iter().flatten().collect()),
            )),
            Err(e) => futures::future::ready(Err(other(e))).boxed(),
        };
        TransportEvent::Incoming {
            listener_id: self.id,
            upgrade,
            local_addr,
            send_back_addr,
        }
    }

    /// An address that appeared or went with an interface, on an
    /// unspecified listen address.
    fn poll_interfaces(&mut self, cx: &mut Context<'_>) -> Option<Event> {
        let interfaces = self.interfaces.as_mut()?;
        loop {
            let event = match interfaces.poll_if_event(cx) {
                Poll::Pending => return None,
                Poll::Ready(Err(error)) => {
                    return Some(TransportEvent::ListenerError {
                        listener_id: self.id,
                        error,
                    })
                }
                Poll::Ready(Ok(event)) => event,
            };
            let (ip, up) = match event {
                if_watch::IfEvent::Up(net) => (net.addr(), true),
                if_watch::IfEvent::Down(net) => (net.addr(), false),
            };
            if ip.is_ipv4() != self.local.is_ipv4() {
                continue;
            }
            let listen_addr = self.address(ip);
            let listener_id = self.id;
            return Some(if up {
                self.ips.push(ip);
                TransportEvent::NewAddress {
                    listener_id,
                    listen_addr,
                }
            } else {
                self.ips.retain(|known| *known != ip);
                TransportEvent::AddressExpired {
                    listener_id,
                    listen_addr,
                }
            });
        }
    }
}

fn accept_next(endpoint: Arc<Endpoint<Server>>) -> BoxFuture<'static, IncomingSession> {
    async move { endpoint.accept().await }.boxed()
}
