//! The circuit transport: circuit addresses in, relayed streams out.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::{BoxFuture, Ready};
use futures::FutureExt;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::core::Transport;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, Stream};
use tokio::sync::mpsc;

use super::{parse_circuit_addr, InboundCircuit};

/// Dials `…/p2p/RELAY/p2p-circuit/p2p/PEER` through the relay; listening on
/// the bare `/p2p-circuit` address accepts circuits from every relay this
/// node is connected to (go- and js-libp2p do the same). That listener
/// announces no address: a relayed address is only worth announcing once a
/// relay has granted a reservation.
pub struct CircuitTransport {
    control: libp2p_stream::Control,
    inbound: mpsc::Receiver<InboundCircuit>,
    listener: Option<ListenerId>,
}

impl CircuitTransport {
    pub(super) fn new(
        control: libp2p_stream::Control,
        inbound: mpsc::Receiver<InboundCircuit>,
    ) -> Self {
        CircuitTransport {
            control,
            inbound,
            listener: None,
        }
    }
}

/// The address that listens for circuits from every relay.
pub fn any_relay_listen_addr() -> Multiaddr {
    Multiaddr::empty().with(Protocol::P2pCircuit)
}

impl Transport for CircuitTransport {
    type Output = Stream;
    type Error = io::Error;
    type ListenerUpgrade = Ready<Result<Stream, io::Error>>;
    type Dial = BoxFuture<'static, Result<Stream, io::Error>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        if addr != any_relay_listen_addr() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        if self.listener.is_some() {
            return Err(TransportError::Other(io::Error::new(
                io::ErrorKind::AddrInUse,
                "already listening for circuits",
            )));
        }
        self.listener = Some(id);
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        if self.listener == Some(id) {
            self.listener = None;
            true
        } else {
            false
        }
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Some(circuit) = parse_circuit_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let mut control = self.control.clone();
        Ok(async move { super::connect(&mut control, circuit.relay, circuit.dst).await }.boxed())
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let Some(listener_id) = self.listener else {
            return Poll::Pending;
        };
        match self.inbound.poll_recv(cx) {
            Poll::Ready(Some(circuit)) => {
                let local_addr = Multiaddr::empty()
                    .with(Protocol::P2p(circuit.relay))
                    .with(Protocol::P2pCircuit);
                let send_back_addr = local_addr.clone().with(Protocol::P2p(circuit.src));
                Poll::Ready(TransportEvent::Incoming {
                    listener_id,
                    upgrade: futures::future::ready(Ok(circuit.stream)),
                    local_addr,
                    send_back_addr,
                })
            }
            Poll::Ready(None) => {
                self.listener = None;
                Poll::Ready(TransportEvent::ListenerClosed {
                    listener_id,
                    reason: Ok(()),
                })
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
