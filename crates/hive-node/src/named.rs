//! Raw streams on protocol names of any spelling.
//!
//! rust-libp2p's `StreamProtocol` insists on a leading `/`, but
//! multistream-select does not, and hivemind names its unary handlers
//! `DHTProtocol.rpc_ping` and the like. The go daemon negotiates such names,
//! so a drop-in daemon must too. This behaviour does for plain `String`
//! names what `libp2p-stream` does for `StreamProtocol`s: a [`NamedStreams`]
//! handle accepts inbound streams on a changing set of names and opens
//! outbound ones, dialing the peer first when it is not connected.
//!
//! - `Behaviour` keeps the shared state and hands each connection a handler.
//! - `Handler` offers the accepted names on inbound substreams and opens
//!   outbound substreams on request.
//! - `Names` is the upgrade: it negotiates one name and yields the stream.
//!
//! Bare names travel as aliases inside the process and are translated on the
//! wire by [`crate::unslash`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::channel::oneshot;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo};
use libp2p::core::Endpoint;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    FromSwarm, NetworkBehaviour, NotifyHandler, Stream, StreamUpgradeError, SubstreamProtocol,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;

/// Inbound streams waiting for the consumer beyond this are dropped.
const INBOUND_QUEUE: usize = 256;

/// Why an outbound stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the peer does not speak {0:?}")]
    Unsupported(String),
    #[error("cannot reach the peer: {0}")]
    Unreachable(String),
    #[error("stream i/o: {0}")]
    Io(#[from] io::Error),
    #[error("the node has stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<Stream, OpenError>>;

pub struct OpenRequest {
    name: String,
    reply: Reply,
}

impl std::fmt::Debug for OpenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenRequest")
            .field("name", &self.name)
            .finish()
    }
}

/// State shared by the behaviour, its handlers and every [`NamedStreams`].
struct Shared {
    accepted: HashSet<String>,
    inbound: mpsc::Sender<(PeerId, String, Stream)>,
    /// Open connections per peer, oldest first, each with whether it is
    /// relayed.
    connections: HashMap<PeerId, Vec<(ConnectionId, bool)>>,
    /// Requests to hand to a connection's handler.
    to_handlers: VecDeque<(PeerId, ConnectionId, OpenRequest)>,
    /// Requests for peers being dialed, sent on once connected.
    waiting_for_connection: HashMap<PeerId, Vec<OpenRequest>>,
    /// Peers to dial.
    dials: VecDeque<PeerId>,
    waker: Option<Waker>,
}

impl Shared {
    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

use crate::lock;

/// A cheap handle for accepting and opening named streams.
#[derive(Clone)]
pub struct NamedStreams {
    shared: Arc<Mutex<Shared>>,
}

impl NamedStreams {
    /// Start accepting inbound streams on `name`.
    pub fn accept(&self, name: &str) {
        lock(&self.shared)
            .accepted
            .insert(crate::unslash::alias(name));
    }

    /// Stop accepting inbound streams on `name`.
    pub fn refuse(&self, name: &str) {
        lock(&self.shared)
            .accepted
            .remove(&crate::unslash::alias(name));
    }

    /// Open a stream to `peer` on `name`, dialing it from its known
    /// addresses when not connected. The caller bounds the wait.
    pub async fn open(&self, peer: PeerId, name: &str) -> Result<Stream, OpenError> {
        let (reply, answer) = oneshot::channel();
        let request = OpenRequest {
            name: crate::unslash::alias(name),
            reply,
        };
        {
            let mut shared = lock(&self.shared);
            match shared.connections.get(&peer).and_then(|c| preferred(c)) {
                Some(connection) => shared.to_handlers.push_back((peer, connection, request)),
                None => {
                    shared
                        .waiting_for_connection
                        .entry(peer)
                        .or_default()
                        .push(request);
                    shared.dials.push_back(peer);
                }
            }
            shared.wake();
        }
        answer.await.map_err(|_| OpenError::Stopped)?
    }
}

/// The connection a new stream goes on: the newest direct one, else the
/// newest relayed one. A relayed connection that a hole punch (DCUtR) has
/// made direct is closed soon after; a stream opened on it meanwhile would
/// be cut.
fn preferred(connections: &[(ConnectionId, bool)]) -> Option<ConnectionId> {
    connections
        .iter()
        .rev()
        .find(|(_, relayed)| !relayed)
        .or_else(|| connections.last())
        .map(|(id, _)| *id)
}

/// The behaviour. Inbound streams arrive on the receiver given by [`new`].
pub struct Behaviour {
    shared: Arc<Mutex<Shared>>,
}

/// A behaviour, its handle, and the inbound streams as `(peer, name, stream)`.
pub fn new() -> (
    Behaviour,
    NamedStreams,
    mpsc::Receiver<(PeerId, String, Stream)>,
) {
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    let shared = Arc::new(Mutex::new(Shared {
        accepted: HashSet::new(),
        inbound: tx,
        connections: HashMap::new(),
        to_handlers: VecDeque::new(),
        waiting_for_connection: HashMap::new(),
        dials: VecDeque::new(),
        waker: None,
    }));
    (
        Behaviour {
            shared: shared.clone(),
        },
        NamedStreams { shared },
        rx,
    )
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.connected(peer, connection, crate::circuit::is_circuit(remote)))
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.connected(peer, connection, crate::circuit::is_circuit(addr)))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                ..
            }) => {
                let mut shared = lock(&self.shared);
                if let Some(conns) = shared.connections.get_mut(&peer_id) {
                    conns.retain(|(c, _)| *c != connection_id);
                    if conns.is_empty() {
                        shared.connections.remove(&peer_id);
                    }
                }
            }
            FromSwarm::DialFailure(failure) => {
                let Some(peer) = failure.peer_id else { return };
                let mut shared = lock(&self.shared);
                if shared.connections.contains_key(&peer) {
                    return;
                }
                for request in shared
                    .waiting_for_connection
                    .remove(&peer)
                    .unwrap_or_default()
                {
                    let _ = request
                        .reply
                        .send(Err(OpenError::Unreachable(failure.error.to_string())));
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        let mut shared = lock(&self.shared);
        if let Some((peer_id, connection, request)) = shared.to_handlers.pop_front() {
            return Poll::Ready(ToSwarm::NotifyHandler {
                peer_id,
                handler: NotifyHandler::One(connection),
                event: request,
            });
        }
        if let Some(peer) = shared.dials.pop_front() {
            return Poll::Ready(ToSwarm::Dial {
                opts: DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            });
        }
        shared.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Behaviour {
    fn connected(&mut self, peer: PeerId, connection: ConnectionId, relayed: bool) -> Handler {
        let mut shared = lock(&self.shared);
        shared
            .connections
            .entry(peer)
            .or_default()
            .push((connection, relayed));
        for request in shared
            .waiting_for_connection
            .remove(&peer)
            .unwrap_or_default()
        {
            shared.to_handlers.push_back((peer, connection, request));
        }
        shared.wake();
        Handler {
            peer,
            shared: self.shared.clone(),
            queued: VecDeque::new(),
            in_progress: HashMap::new(),
            next_token: 0,
        }
    }
}

/// One connection's side.
pub struct Handler {
    peer: PeerId,
    shared: Arc<Mutex<Shared>>,
    /// Outbound requests not yet asked of the connection.
    queued: VecDeque<(u64, OpenRequest)>,
    /// Outbound substreams being negotiated, by token.
    in_progress: HashMap<u64, OpenRequest>,
    next_token: u64,
}

/// Negotiates one of `names`; yields the stream and the name agreed on.
#[derive(Clone)]
pub struct Names {
    names: Vec<String>,
}

impl UpgradeInfo for Names {
    type Info = String;
    type InfoIter = std::vec::IntoIter<String>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.names.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Names {
    type Output = (Stream, String);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, stream: Stream, name: String) -> Self::Future {
        ready(Ok((stream, name)))
    }
}

impl OutboundUpgrade<Stream> for Names {
    type Output = (Stream, String);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, stream: Stream, name: String) -> Self::Future {
        ready(Ok((stream, name)))
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = OpenRequest;
    type ToBehaviour = Infallible;
    type InboundProtocol = Names;
    type OutboundProtocol = Names;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = u64;

    fn listen_protocol(&self) -> SubstreamProtocol<Names> {
        let mut names: Vec<String> = lock(&self.shared).accepted.iter().cloned().collect();
        names.sort();
        SubstreamProtocol::new(Names { names }, ())
    }

    fn on_behaviour_event(&mut self, request: OpenRequest) {
        let token = self.next_token;
        self.next_token += 1;
        self.queued.push_back((token, request));
    }

    fn connection_keep_alive(&self) -> bool {
        !self.in_progress.is_empty() || !self.queued.is_empty()
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Names, u64, Infallible>> {
        if let Some((token, request)) = self.queued.pop_front() {
            let names = Names {
                names: vec![request.name.clone()],
            };
            self.in_progress.insert(token, request);
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(names, token)
                    .with_timeout(Duration::from_secs(20)),
            });
        }
        Poll::Pending
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Names, Names, (), u64>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, name),
                ..
            }) => {
                let sender = lock(&self.shared).inbound.clone();
                let name = crate::unslash::bare(&name).to_owned();
                if sender.try_send((self.peer, name.clone(), stream)).is_err() {
                    tracing::warn!(peer = %self.peer, %name, "inbound named stream dropped: consumer busy or gone");
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, _),
                info: token,
            }) => {
                if let Some(request) = self.in_progress.remove(&token) {
                    let _ = request.reply.send(Ok(stream));
                }
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, info: token }) => {
                if let Some(request) = self.in_progress.remove(&token) {
                    let error = match error {
                        StreamUpgradeError::NegotiationFailed => {
                            OpenError::Unsupported(crate::unslash::bare(&request.name).to_owned())
                        }
                        StreamUpgradeError::Timeout => {
                            OpenError::Io(io::Error::from(io::ErrorKind::TimedOut))
                        }
                        StreamUpgradeError::Io(e) => OpenError::Io(e),
                        StreamUpgradeError::Apply(never) => match never {},
                    };
                    let _ = request.reply.send(Err(error));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_stream_prefers_the_newest_direct_connection() {
        let [old_direct, relayed, new_direct] = [0, 1, 2].map(ConnectionId::new_unchecked);
        assert_eq!(preferred(&[]), None);
        assert_eq!(preferred(&[(relayed, true)]), Some(relayed));
        // A hole punch adds the direct connection after the relayed one.
        assert_eq!(
            preferred(&[(relayed, true), (new_direct, false)]),
            Some(new_direct)
        );
        // A relayed connection made after a direct one does not take over.
        assert_eq!(
            preferred(&[(old_direct, false), (relayed, true)]),
            Some(old_direct)
        );
        assert_eq!(
            preferred(&[(old_direct, false), (relayed, true), (new_direct, false)]),
            Some(new_direct)
        );
    }
}
