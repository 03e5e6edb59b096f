//! Circuit relay v2, the client side: reaching a peer through a relay
//! (`…/p2p/RELAY/p2p-circuit/p2p/PEER`), being reached through one, and
//! reserving a slot on one.
//!
//! rust-libp2p has a relay client, but it refuses every inbound circuit
//! unless it made the reservation on that relay itself. go- and js-libp2p
//! accept a circuit from any relay they are connected to, and clients of the
//! go daemon rely on it: they reserve with a raw HOP stream opened through
//! the daemon, then expect the daemon to take the circuit. So Hive has its
//! own, built on raw streams (`libp2p_stream`):
//!
//! - [`CircuitTransport`] is a `Transport`: dialing a circuit address opens a
//!   HOP stream to the relay and sends CONNECT; the stream it gets back is
//!   the connection, which the swarm then secures and multiplexes like any
//!   other. Listening on the bare `/p2p-circuit` address yields every
//!   circuit that [`accept_stops`] answered.
//! - [`accept_stops`] answers the relay's STOP streams.
//! - [`reserve`] asks a relay for a slot (RESERVE).
//!
//! The relay service (HOP server) is rust-libp2p's `relay::Behaviour`.

pub mod pb;
mod transport;

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol};
use prost::Message;
use tokio::sync::mpsc;

pub use transport::{any_relay_listen_addr, CircuitTransport};

/// The protocol a client speaks to a relay.
pub const HOP_PROTOCOL: StreamProtocol = StreamProtocol::new("/libp2p/circuit/relay/0.2.0/hop");
/// The protocol a relay speaks to the circuit's destination.
pub const STOP_PROTOCOL: StreamProtocol = StreamProtocol::new("/libp2p/circuit/relay/0.2.0/stop");

/// The specification's bound on one message.
const MAX_MESSAGE: usize = 4096;
/// How long one exchange with a relay may take.
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);
/// Answered circuits waiting for the swarm.
const INBOUND_QUEUE: usize = 64;

/// A circuit the relay opened to this node, answered and ready to be
/// secured by the swarm.
pub struct InboundCircuit {
    pub stream: Stream,
    pub src: PeerId,
    pub relay: PeerId,
}

/// A relay's answer to RESERVE.
#[derive(Debug, Clone)]
pub struct ReservationInfo {
    /// Unix time (seconds) at which the slot ends.
    pub expire: u64,
    /// The addresses the relay says this node can be reached at.
    pub addrs: Vec<Multiaddr>,
}

/// Where a circuit address leads: the relay (and how to reach it) and the
/// destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitAddr {
    /// The relay's own address, without its `/p2p` part; empty when the
    /// address names the relay by peer id only.
    pub relay_addr: Multiaddr,
    pub relay: PeerId,
    pub dst: PeerId,
}

/// Split `RELAY-ADDR/p2p/RELAY/p2p-circuit/p2p/DST`. `None` when the address
/// is not a circuit address or leaves out a peer id.
pub fn parse_circuit_addr(addr: &Multiaddr) -> Option<CircuitAddr> {
    let mut before = Multiaddr::empty();
    let mut relay = None;
    let mut iter = addr.iter();
    for proto in iter.by_ref() {
        match proto {
            Protocol::P2pCircuit => break,
            Protocol::P2p(peer) => relay = Some(peer),
            other => {
                if relay.is_some() {
                    // Something after the relay's /p2p that is not a circuit.
                    return None;
                }
                before.push(other)
            }
        }
    }
    let relay = relay?;
    let dst = match (iter.next(), iter.next()) {
        (Some(Protocol::P2p(dst)), None) => dst,
        _ => return None,
    };
    Some(CircuitAddr {
        relay_addr: before,
        relay,
        dst,
    })
}

/// True when the address goes through a relay.
pub fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Write one unsigned-varint length-prefixed message.
async fn write_message<W: AsyncWrite + Unpin, M: Message>(
    w: &mut W,
    message: &M,
) -> io::Result<()> {
    let mut buf = Vec::with_capacity(message.encoded_len() + 4);
    message
        .encode_length_delimited(&mut buf)
        .map_err(|e| invalid(e.to_string()))?;
    w.write_all(&buf).await?;
    w.flush().await
}

/// Read one length-prefixed message, byte by byte for the prefix so that
/// nothing after the message is consumed: the bytes that follow belong to
/// the relayed connection.
async fn read_message<R: AsyncRead + Unpin, M: Message + Default>(r: &mut R) -> io::Result<M> {
    let mut len: usize = 0;
    for shift in (0..).step_by(7).take(4) {
        let mut byte = [0u8; 1];
        r.read_exact(&mut byte).await?;
        len |= usize::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            if len > MAX_MESSAGE {
                return Err(invalid(format!(
                    "relay message of {len} bytes (the limit is {MAX_MESSAGE})"
                )));
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).await?;
            return M::decode(body.as_slice()).map_err(|e| invalid(format!("relay message: {e}")));
        }
    }
    Err(invalid("relay message length prefix too long"))
}

fn status_of(code: Option<i32>) -> pb::Status {
    code.and_then(|c| pb::Status::try_from(c).ok())
        .unwrap_or(pb::Status::Unused)
}

async fn timed<T>(
    what: &str,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, fut)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what}: no answer within {EXCHANGE_TIMEOUT:?}"),
            )
        })?
}

/// How long one attempt to open a HOP stream may take before it is made
/// again (see [`open_hop`]); dialing the relay and negotiating take far less.
const HOP_OPEN_ATTEMPT: Duration = Duration::from_secs(3);
const HOP_OPEN_ATTEMPTS: usize = 3;

/// A HOP stream to `relay` (dialing it first if need be). libp2p-stream can
/// lose a request made while the connection to the peer is being set up
/// (the new connection's handler took the queue of waiting requests before
/// the connection is listed, so the request waits on a queue nobody reads);
/// asked again, it finds the connection. A circuit dial is exactly that
/// case when this node was not connected to the relay yet.
async fn open_hop(control: &mut libp2p_stream::Control, relay: PeerId) -> io::Result<Stream> {
    for _ in 0..HOP_OPEN_ATTEMPTS {
        let attempt = control.open_stream(relay, HOP_PROTOCOL);
        match tokio::time::timeout(HOP_OPEN_ATTEMPT, attempt).await {
            Ok(opened) => {
                return opened.map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("cannot open a relay (hop) stream to {relay}: {e}"),
                    )
                })
            }
            Err(_) => tracing::debug!(%relay, "hop stream open stalled; asking again"),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("cannot open a relay (hop) stream to {relay}: no stream within {HOP_OPEN_ATTEMPTS} attempts"),
    ))
}

/// Ask `relay` for a circuit to `dst`; on OK the stream is the circuit.
pub async fn connect(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    dst: PeerId,
) -> io::Result<Stream> {
    timed("relay CONNECT", async {
        let mut stream = open_hop(control, relay).await?;
        connect_over(&mut stream, relay, dst).await?;
        Ok(stream)
    })
    .await
}

/// The CONNECT exchange on an open HOP stream.
async fn connect_over<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    relay: PeerId,
    dst: PeerId,
) -> io::Result<()> {
    let request = pb::HopMessage {
        r#type: pb::HopType::Connect as i32,
        peer: Some(pb::Peer {
            id: dst.to_bytes(),
            addrs: Vec::new(),
        }),
        reservation: None,
        limit: None,
        status: None,
    };
    write_message(stream, &request).await?;
    let answer: pb::HopMessage = read_message(stream).await?;
    if answer.r#type != pb::HopType::Status as i32 {
        return Err(invalid(format!(
            "relay {relay} answered CONNECT with a message of type {}",
            answer.r#type
        )));
    }
    match status_of(answer.status) {
        pb::Status::Ok => Ok(()),
        refused => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "relay {relay} refused the circuit to {dst}: {}",
                refused.name()
            ),
        )),
    }
}

/// Reserve a slot on `relay`, so that others can reach this node through it.
pub async fn reserve(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
) -> io::Result<ReservationInfo> {
    timed("relay RESERVE", async {
        let mut stream = open_hop(control, relay).await?;
        let request = pb::HopMessage {
            r#type: pb::HopType::Reserve as i32,
            peer: None,
            reservation: None,
            limit: None,
            status: None,
        };
        write_message(&mut stream, &request).await?;
        let answer: pb::HopMessage = read_message(&mut stream).await?;
        let _ = stream.close().await;
        match status_of(answer.status) {
            pb::Status::Ok => {
                let reservation = answer.reservation.ok_or_else(|| {
                    invalid(format!("relay {relay} accepted without a reservation"))
                })?;
                Ok(ReservationInfo {
                    expire: reservation.expire,
                    addrs: reservation
                        .addrs
                        .into_iter()
                        .filter_map(|a| Multiaddr::try_from(a).ok())
                        .collect(),
                })
            }
            refused => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("relay {relay} refused the reservation: {}", refused.name()),
            )),
        }
    })
    .await
}

/// Answer one STOP stream: the relay says who is calling; say OK.
async fn answer_stop(relay: PeerId, mut stream: Stream) -> io::Result<InboundCircuit> {
    let src = answer_stop_on(&mut stream).await?;
    Ok(InboundCircuit { stream, src, relay })
}

/// The STOP exchange: read CONNECT, answer OK (or why not); the caller.
async fn answer_stop_on<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> io::Result<PeerId> {
    let request: pb::StopMessage = read_message(stream).await?;
    let refuse = |status: pb::Status| pb::StopMessage {
        r#type: pb::StopType::Status as i32,
        peer: None,
        limit: None,
        status: Some(status as i32),
    };
    if request.r#type != pb::StopType::Connect as i32 {
        write_message(stream, &refuse(pb::Status::UnexpectedMessage)).await?;
        return Err(invalid("relay sent a STOP message that is not CONNECT"));
    }
    let Some(src) = request
        .peer
        .as_ref()
        .and_then(|p| PeerId::from_bytes(&p.id).ok())
    else {
        write_message(stream, &refuse(pb::Status::MalformedMessage)).await?;
        return Err(invalid("relay's STOP CONNECT names no valid peer"));
    };
    write_message(stream, &refuse(pb::Status::Ok)).await?;
    Ok(src)
}

/// Answer every STOP stream and hand the circuits to the transport. Runs
/// until the node stops.
pub async fn accept_stops(
    mut incoming: libp2p_stream::IncomingStreams,
    circuits: mpsc::Sender<InboundCircuit>,
) {
    while let Some((relay, stream)) = incoming.next().await {
        let circuits = circuits.clone();
        tokio::spawn(async move {
            match timed("relay STOP", answer_stop(relay, stream)).await {
                Ok(circuit) => {
                    tracing::debug!(%relay, src = %circuit.src, "inbound circuit");
                    if circuits.send(circuit).await.is_err() {
                        tracing::debug!("inbound circuit dropped: the node has stopped");
                    }
                }
                Err(e) => tracing::debug!(%relay, error = %e, "inbound circuit refused"),
            }
        });
    }
}

/// The transport and the channel the STOP answerer feeds it.
pub fn new_transport(
    control: libp2p_stream::Control,
) -> (CircuitTransport, mpsc::Sender<InboundCircuit>) {
    let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
    (CircuitTransport::new(control, rx), tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_addresses_split() {
        let relay = PeerId::random();
        let dst = PeerId::random();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{dst}")
            .parse()
            .unwrap();
        let parsed = parse_circuit_addr(&addr).unwrap();
        assert_eq!(parsed.relay, relay);
        assert_eq!(parsed.dst, dst);
        assert_eq!(
            parsed.relay_addr,
            "/ip4/127.0.0.1/tcp/4001".parse::<Multiaddr>().unwrap()
        );
        assert!(is_circuit(&addr));

        let bare: Multiaddr = format!("/p2p/{relay}/p2p-circuit/p2p/{dst}")
            .parse()
            .unwrap();
        assert_eq!(
            parse_circuit_addr(&bare).unwrap().relay_addr,
            Multiaddr::empty()
        );

        for bad in [
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit"),
            format!("/ip4/127.0.0.1/tcp/4001/p2p-circuit/p2p/{dst}"),
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}"),
        ] {
            let addr: Multiaddr = bad.parse().unwrap();
            assert_eq!(parse_circuit_addr(&addr), None, "{bad}");
        }
    }

    /// A stream whose reads come from `input` and whose writes are kept.
    struct Scripted {
        input: futures::io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Scripted {
        async fn with<M: Message>(messages: &[M]) -> Scripted {
            let mut input = futures::io::Cursor::new(Vec::new());
            for m in messages {
                write_message(&mut input, m).await.unwrap();
            }
            Scripted {
                input: futures::io::Cursor::new(input.into_inner()),
                output: Vec::new(),
            }
        }

        async fn written<M: Message + Default>(&self) -> M {
            read_message(&mut futures::io::Cursor::new(self.output.clone()))
                .await
                .unwrap()
        }
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::pin::Pin::new(&mut self.input).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Scripted {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.output.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn stop(r#type: pb::StopType, peer: Option<Vec<u8>>) -> pb::StopMessage {
        pb::StopMessage {
            r#type: r#type as i32,
            peer: peer.map(|id| pb::Peer { id, addrs: vec![] }),
            limit: None,
            status: None,
        }
    }

    #[tokio::test]
    async fn stop_streams_are_answered_by_the_specification() {
        let src = PeerId::random();
        let mut ok = Scripted::with(&[stop(pb::StopType::Connect, Some(src.to_bytes()))]).await;
        assert_eq!(answer_stop_on(&mut ok).await.unwrap(), src);
        let answer: pb::StopMessage = ok.written().await;
        assert_eq!(answer.r#type, pb::StopType::Status as i32);
        assert_eq!(answer.status, Some(pb::Status::Ok as i32));

        let mut no_peer =
            Scripted::with(&[stop(pb::StopType::Connect, Some(b"junk".to_vec()))]).await;
        assert!(answer_stop_on(&mut no_peer).await.is_err());
        let answer: pb::StopMessage = no_peer.written().await;
        assert_eq!(answer.status, Some(pb::Status::MalformedMessage as i32));

        let mut wrong = Scripted::with(&[stop(pb::StopType::Status, None)]).await;
        assert!(answer_stop_on(&mut wrong).await.is_err());
        let answer: pb::StopMessage = wrong.written().await;
        assert_eq!(answer.status, Some(pb::Status::UnexpectedMessage as i32));

        // Truncated input: an error, nothing claimed.
        let mut cut = Scripted {
            input: futures::io::Cursor::new(vec![0x20, 0x08]),
            output: Vec::new(),
        };
        assert!(answer_stop_on(&mut cut).await.is_err());
        assert!(cut.output.is_empty());
    }

    #[tokio::test]
    async fn a_relays_refusal_is_named_in_the_error() {
        let (relay, dst) = (PeerId::random(), PeerId::random());
        let status = |code: pb::Status| pb::HopMessage {
            r#type: pb::HopType::Status as i32,
            peer: None,
            reservation: None,
            limit: None,
            status: Some(code as i32),
        };
        let mut ok = Scripted::with(&[status(pb::Status::Ok)]).await;
        connect_over(&mut ok, relay, dst).await.unwrap();
        let sent: pb::HopMessage = ok.written().await;
        assert_eq!(sent.r#type, pb::HopType::Connect as i32);
        assert_eq!(sent.peer.unwrap().id, dst.to_bytes());

        let mut refused = Scripted::with(&[status(pb::Status::NoReservation)]).await;
        let e = connect_over(&mut refused, relay, dst).await.unwrap_err();
        assert!(e.to_string().contains("NO_RESERVATION"), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);

        let mut odd = Scripted::with(&[pb::HopMessage {
            r#type: pb::HopType::Reserve as i32,
            peer: None,
            reservation: None,
            limit: None,
            status: None,
        }])
        .await;
        assert!(connect_over(&mut odd, relay, dst).await.is_err());
    }

    #[tokio::test]
    async fn messages_round_trip_without_reading_past_their_end() {
        let mut a = futures::io::Cursor::new(Vec::new());
        let sent = pb::StopMessage {
            r#type: pb::StopType::Connect as i32,
            peer: Some(pb::Peer {
                id: PeerId::random().to_bytes(),
                addrs: vec![],
            }),
            limit: Some(pb::Limit {
                duration: Some(120),
                data: Some(1 << 17),
            }),
            status: None,
        };
        write_message(&mut a, &sent).await.unwrap();
        a.write_all(b"after").await.unwrap();
        let mut b = futures::io::Cursor::new(a.into_inner());
        let got: pb::StopMessage = read_message(&mut b).await.unwrap();
        assert_eq!(got, sent);
        let mut rest = [0u8; 5];
        b.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"after");
    }
}
