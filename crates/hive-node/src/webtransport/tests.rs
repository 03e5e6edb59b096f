//! Transports on loopback, real UDP sockets: a session, Noise with the
//! certificate's hash, streams both ways, certificates that rotate.

use std::io;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::muxing::StreamMuxerExt;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};
use libp2p::core::{Endpoint as Role, Transport as _};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::{Connection, Transport, Upgrade};

fn dial_opts() -> DialOpts {
    DialOpts {
        role: Role::Dialer,
        port_use: PortUse::New,
    }
}

async fn next_event(transport: &mut Transport) -> TransportEvent<Upgrade, io::Error> {
    futures::future::poll_fn(|cx| std::pin::Pin::new(&mut *transport).poll(cx)).await
}

/// A transport listening on loopback, with the address it announces.
async fn listening() -> (Transport, Multiaddr, PeerId) {
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let mut transport = Transport::new(key);
    let wanted: Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1/webtransport".parse().unwrap();
    transport.listen_on(ListenerId::next(), wanted).unwrap();
    let TransportEvent::NewAddress { listen_addr, .. } = next_event(&mut transport).await else {
        panic!("no address announced");
    };
    (transport, listen_addr, peer)
}

/// Dials `addr` while the listener takes its sessions.
async fn dial(listener: &mut Transport, addr: Multiaddr) -> io::Result<(PeerId, Connection)> {
    let mut dialer = Transport::new(Keypair::generate_ed25519());
    let dialing = dialer
        .dial(addr, dial_opts())
        .expect("a WebTransport address");
    let serving = async {
        loop {
            if let TransportEvent::Incoming { upgrade, .. } = next_event(listener).await {
                tokio::spawn(upgrade);
            }
        }
    };
    futures::pin_mut!(serving);
    match futures::future::select(dialing, serving).await {
        futures::future::Either::Left((result, _)) => result,
        futures::future::Either::Right(_) => unreachable!("the listener never stops"),
    }
}

/// The next address the listener announces after expiring `old`.
async fn renewed(listener: &mut Transport, old: &Multiaddr) -> Multiaddr {
    listener.rotate_now();
    let TransportEvent::AddressExpired { listen_addr, .. } = next_event(listener).await else {
        panic!("the old address was not expired");
    };
    assert_eq!(&listen_addr, old);
    let TransportEvent::NewAddress { listen_addr, .. } = next_event(listener).await else {
        panic!("no new address");
    };
    listen_addr
}

fn certhashes(addr: &Multiaddr) -> Vec<Protocol<'static>> {
    addr.iter()
        .filter(|p| matches!(p, Protocol::Certhash(_)))
        .map(|p| p.acquire())
        .collect()
}

#[tokio::test]
async fn a_dialer_reaches_the_listener_by_its_certhash_and_streams_flow_both_ways() {
    let (mut listener, addr, listener_peer) = listening().await;
    assert_eq!(
        certhashes(&addr).len(),
        2,
        "the served and the next certificate: {addr}"
    );
    let dialer_key = Keypair::generate_ed25519();
    let dialer_peer = dialer_key.public().to_peer_id();
    let mut dialer = Transport::new(dialer_key);
    let dialing = dialer.dial(addr.clone(), dial_opts()).unwrap();
    let accept = async {
        loop {
            if let TransportEvent::Incoming { upgrade, .. } = next_event(&mut listener).await {
                return upgrade.await.unwrap();
            }
        }
    };
    let ((seen_by_dialer, mut out), (seen_by_listener, mut inc)) =
        futures::future::join(async { dialing.await.unwrap() }, accept).await;
    assert_eq!(seen_by_dialer, listener_peer);
    assert_eq!(seen_by_listener, dialer_peer);

    // The dialer opens a stream, the listener takes it and answers.
    let mut ours = futures::future::poll_fn(|cx| out.poll_outbound_unpin(cx))
        .await
        .unwrap();
    ours.write_all(b"ping").await.unwrap();
    ours.flush().await.unwrap();
    let mut theirs = futures::future::poll_fn(|cx| inc.poll_inbound_unpin(cx))
        .await
        .unwrap();
    let mut got = [0u8; 4];
    theirs.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
    theirs.write_all(b"pong").await.unwrap();
    theirs.close().await.unwrap();
    let mut answer = Vec::new();
    ours.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"pong");
}

#[tokio::test]
async fn a_certhash_the_listener_does_not_have_is_refused() {
    let (mut listener, addr, _) = listening().await;
    // The same address with another certificate's hash: the TLS check on
    // the hash refuses it before any libp2p byte is sent.
    let forged: Multiaddr = addr
        .iter()
        .map(|p| match p {
            Protocol::Certhash(_) => Protocol::Certhash(super::addr::certhash(&[1; 32])),
            other => other,
        })
        .collect();
    let error = dial(&mut listener, forged)
        .await
        .err()
        .expect("a forged certhash was accepted");
    assert!(
        error.to_string().contains("WebTransport session"),
        "{error}"
    );
}

#[tokio::test]
async fn certificates_rotate_and_an_address_stays_dialable_one_period_more() {
    let (mut listener, first, peer) = listening().await;
    let second = renewed(&mut listener, &first).await;
    // The second address announces the first's next certificate, now served.
    assert_eq!(certhashes(&second)[0], certhashes(&first)[1]);
    assert_eq!(dial(&mut listener, second.clone()).await.unwrap().0, peer);
    assert_eq!(dial(&mut listener, first.clone()).await.unwrap().0, peer);

    let third = renewed(&mut listener, &second).await;
    assert_eq!(dial(&mut listener, third).await.unwrap().0, peer);
    assert_eq!(dial(&mut listener, second).await.unwrap().0, peer);
    // Two periods on, neither of the first address's certificates is served.
    let stale = dial(&mut listener, first)
        .await
        .err()
        .expect("a stale address was accepted");
    assert!(
        stale.to_string().contains("WebTransport session"),
        "{stale}"
    );
}

#[tokio::test]
async fn addresses_that_are_not_webtransport_are_left_to_other_transports() {
    let mut transport = Transport::new(Keypair::generate_ed25519());
    for addr in ["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/1"] {
        let addr: Multiaddr = addr.parse().unwrap();
        assert!(matches!(
            transport.listen_on(ListenerId::next(), addr.clone()),
            Err(TransportError::MultiaddrNotSupported(_))
        ));
        assert!(transport.dial(addr, dial_opts()).is_err());
    }
    let no_hash: Multiaddr = "/ip4/127.0.0.1/udp/1/quic-v1/webtransport".parse().unwrap();
    match transport.dial(no_hash, dial_opts()) {
        Err(TransportError::Other(e)) => assert!(e.to_string().contains("certhash"), "{e}"),
        _ => panic!("dialed without a certhash"),
    }
}
