//! Two transports on loopback, real UDP sockets: a session, Noise with the
//! certificate's hash, and streams both ways.

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::muxing::StreamMuxerExt;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportEvent};
use libp2p::core::{Endpoint as Role, Transport as _};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::Transport;

fn dial_opts() -> DialOpts {
    DialOpts {
        role: Role::Dialer,
        port_use: PortUse::New,
    }
}

/// A listening transport and the address it announces.
async fn listening() -> (
    futures::stream::BoxStream<'static, TransportEvent<super::Upgrade, std::io::Error>>,
    Multiaddr,
    PeerId,
) {
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let mut transport = Transport::new(key);
    let wanted: Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1/webtransport".parse().unwrap();
    transport.listen_on(ListenerId::next(), wanted).unwrap();
    let mut events =
        futures::stream::poll_fn(move |cx| std::pin::Pin::new(&mut transport).poll(cx).map(Some))
            .boxed();
    let Some(TransportEvent::NewAddress { listen_addr, .. }) = events.next().await else {
        panic!("no address announced");
    };
    (events, listen_addr, peer)
}

#[tokio::test]
async fn a_dialer_reaches_the_listener_by_its_certhash_and_streams_flow_both_ways() {
    let (mut events, addr, listener_peer) = listening().await;
    assert!(
        addr.iter().any(|p| matches!(p, Protocol::Certhash(_))),
        "announced without a certhash: {addr}"
    );
    let dialer_key = Keypair::generate_ed25519();
    let dialer_peer = dialer_key.public().to_peer_id();
    let mut dialer = Transport::new(dialer_key);
    let dial = dialer.dial(addr.clone(), dial_opts()).unwrap();
    let accept = async {
        loop {
            if let Some(TransportEvent::Incoming { upgrade, .. }) = events.next().await {
                return upgrade.await.unwrap();
            }
        }
    };
    let ((seen_by_dialer, mut out), (seen_by_listener, mut inc)) =
        futures::future::join(async { dial.await.unwrap() }, accept).await;
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
    let (mut events, addr, _) = listening().await;
    // The same address with another certificate's hash: the TLS check on
    // the hash refuses it before any libp2p byte is sent.
    let forged: Multiaddr = addr
        .iter()
        .map(|p| match p {
            Protocol::Certhash(_) => Protocol::Certhash(super::addr::certhash(&[1; 32])),
            other => other,
        })
        .collect();
    let mut dialer = Transport::new(Keypair::generate_ed25519());
    let dial = dialer.dial(forged, dial_opts()).unwrap();
    tokio::spawn(async move { while events.next().await.is_some() {} });
    let error = dial.await.err().expect("a forged certhash was accepted");
    assert!(
        error.to_string().contains("WebTransport session"),
        "{error}"
    );
}

#[tokio::test]
async fn addresses_that_are_not_webtransport_are_left_to_other_transports() {
    let mut transport = Transport::new(Keypair::generate_ed25519());
    for addr in ["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/1"] {
        let addr: Multiaddr = addr.parse().unwrap();
        assert!(matches!(
            transport.listen_on(ListenerId::next(), addr.clone()),
            Err(libp2p::core::transport::TransportError::MultiaddrNotSupported(_))
        ));
        assert!(transport.dial(addr, dial_opts()).is_err());
    }
    let no_hash: Multiaddr = "/ip4/127.0.0.1/udp/1/quic-v1/webtransport".parse().unwrap();
    match transport.dial(no_hash, dial_opts()) {
        Err(libp2p::core::transport::TransportError::Other(e)) => {
            assert!(e.to_string().contains("certhash"), "{e}")
        }
        _ => panic!("dialed without a certhash"),
    }
}
