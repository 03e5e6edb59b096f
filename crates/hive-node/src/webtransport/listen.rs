//! One WebTransport listener: its UDP socket, its certificate, the
//! addresses it announces and the sessions it accepts.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::FutureExt;
use libp2p::core::transport::{ListenerId, TransportEvent};
use libp2p::identity::Keypair;
use libp2p::multiaddr::multihash::Multihash;
use libp2p::noise;
use wtransport::endpoint::endpoint_side::Server;
use wtransport::endpoint::IncomingSession;
use wtransport::{Endpoint, Identity, ServerConfig};

use super::{addr, other, Upgrade, KEEP_ALIVE};

type Event = TransportEvent<Upgrade, io::Error>;

pub(super) struct Listener {
    id: ListenerId,
    endpoint: Arc<Endpoint<Server>>,
    next: BoxFuture<'static, IncomingSession>,
    /// The bound address (the real port when 0 was asked).
    local: SocketAddr,
    certhash: Multihash<64>,
    /// On an unspecified address (0.0.0.0, ::), the interfaces' addresses
    /// come and go; on a specific one there is exactly one address.
    interfaces: Option<if_watch::tokio::IfWatcher>,
    events: VecDeque<Event>,
}

impl Listener {
    /// Binds `socket` with a new certificate. The address is announced at
    /// once (or, on an unspecified address, per interface as they appear).
    pub(super) fn bind(id: ListenerId, socket: SocketAddr) -> io::Result<Self> {
        let identity = Identity::self_signed(["localhost".to_string(), socket.ip().to_string()])
            .map_err(other)?;
        let digest = identity
            .certificate_chain()
            .as_ref()
            .first()
            .ok_or_else(|| other("self-signed identity without a certificate"))?
            .hash();
        let certhash = addr::certhash(digest.as_ref());
        let config = ServerConfig::builder()
            .with_bind_address(socket)
            .with_identity(identity)
            .keep_alive_interval(Some(KEEP_ALIVE))
            .build();
        let endpoint = Arc::new(Endpoint::server(config)?);
        let local = endpoint.local_addr()?;
        let mut events = VecDeque::new();
        let interfaces = if local.ip().is_unspecified() {
            Some(if_watch::tokio::IfWatcher::new()?)
        } else {
            events.push_back(TransportEvent::NewAddress {
                listener_id: id,
                listen_addr: addr::to_multiaddr(local, Some(certhash)),
            });
            None
        };
        Ok(Listener {
            id,
            next: accept_next(endpoint.clone()),
            endpoint,
            local,
            certhash,
            interfaces,
            events,
        })
    }

    pub(super) fn id(&self) -> ListenerId {
        self.id
    }

    pub(super) fn close(&self) {
        self.endpoint.close(wtransport::VarInt::from_u32(0), b"");
    }

    pub(super) fn poll(&mut self, cx: &mut Context<'_>, keypair: &Keypair) -> Poll<Event> {
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(event);
        }
        if let Some(event) = self.poll_interfaces(cx) {
            return Poll::Ready(event);
        }
        let incoming = futures::ready!(self.next.poll_unpin(cx));
        self.next = accept_next(self.endpoint.clone());
        let send_back_addr = addr::to_multiaddr(incoming.remote_address(), None);
        let local_addr = addr::to_multiaddr(self.local, None);
        let upgrade = match noise::Config::new(keypair) {
            // The hash goes back in Noise's extensions: the dialer checks
            // that it is the certificate its TLS accepted.
            Ok(noise) => super::accept(
                incoming,
                noise.with_webtransport_certhashes([self.certhash].into()),
            )
            .boxed(),
            Err(e) => futures::future::ready(Err(other(e))).boxed(),
        };
        Poll::Ready(TransportEvent::Incoming {
            listener_id: self.id,
            upgrade,
            local_addr,
            send_back_addr,
        })
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
            let (net, up) = match event {
                if_watch::IfEvent::Up(net) => (net, true),
                if_watch::IfEvent::Down(net) => (net, false),
            };
            if net.addr().is_ipv4() != self.local.is_ipv4() {
                continue;
            }
            let listen_addr = addr::to_multiaddr(
                SocketAddr::new(net.addr(), self.local.port()),
                Some(self.certhash),
            );
            return Some(if up {
                TransportEvent::NewAddress {
                    listener_id: self.id,
                    listen_addr,
                }
            } else {
                TransportEvent::AddressExpired {
                    listener_id: self.id,
                    listen_addr,
                }
            });
        }
    }
}

fn accept_next(endpoint: Arc<Endpoint<Server>>) -> BoxFuture<'static, IncomingSession> {
    async move { endpoint.accept().await }.boxed()
}
