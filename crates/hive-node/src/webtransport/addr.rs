//! WebTransport multiaddrs: `/ip4|ip6/HOST/udp/PORT/quic-v1/webtransport`,
//! followed on a dialable address by one `/certhash/HASH` per certificate the
//! server may present and optionally `/p2p/PEER`.

use std::net::{IpAddr, SocketAddr};

use libp2p::multiaddr::multihash::Multihash;
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;

/// The multihash code of SHA2-256, the only hash WebTransport's
/// `serverCertificateHashes` (and so libp2p's certhash) allows.
const SHA2_256: u64 = 0x12;

/// The parts of a WebTransport address that this transport uses.
#[derive(Debug, PartialEq)]
pub(super) struct Parsed {
    pub socket: SocketAddr,
    pub certhashes: Vec<Multihash<64>>,
}

/// `Some` when `addr` is a WebTransport address (certhashes and a trailing
/// `/p2p` allowed, nothing else after `webtransport`).
pub(super) fn parse(addr: &Multiaddr) -> Option<Parsed> {
    let mut parts = addr.iter();
    let ip: IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let Protocol::Udp(port) = parts.next()? else {
        return None;
    };
    if !matches!(parts.next()?, Protocol::QuicV1)
        || !matches!(parts.next()?, Protocol::WebTransport)
    {
        return None;
    }
    let mut certhashes = Vec::new();
    for part in parts {
        match part {
            Protocol::Certhash(hash) => certhashes.push(hash),
            Protocol::P2p(_) => {}
            _ => return None,
        }
    }
    Some(Parsed {
        socket: SocketAddr::new(ip, port),
        certhashes,
    })
}

/// The 32-byte SHA-256 digest inside a certhash, if it is one.
pub(super) fn sha256_of(hash: &Multihash<64>) -> Option<[u8; 32]> {
    if hash.code() != SHA2_256 {
        return None;
    }
    hash.digest().try_into().ok()
}

/// The certhash of a certificate's SHA-256 digest.
pub(super) fn certhash(digest: &[u8; 32]) -> Multihash<64> {
    // A 32-byte digest always fits a 64-byte multihash.
    Multihash::wrap(SHA2_256, digest).expect("32 bytes fit in 64")
}

/// `/ip4|ip6/IP/udp/PORT/quic-v1/webtransport/certhash/HASH...`.
pub(super) fn to_multiaddr(socket: SocketAddr, certhashes: &[Multihash<64>]) -> Multiaddr {
    let ip = match socket.ip() {
        IpAddr::V4(ip) => Protocol::Ip4(ip),
        IpAddr::V6(ip) => Protocol::Ip6(ip),
    };
    let addr = Multiaddr::empty()
        .with(ip)
        .with(Protocol::Udp(socket.port()))
        .with(Protocol::QuicV1)
        .with(Protocol::WebTransport);
    certhashes
        .iter()
        .fold(addr, |addr, hash| addr.with(Protocol::Certhash(*hash)))
}

/// The path (with query) a libp2p WebTransport session is requested on.
pub(super) const PATH: &str = "/.well-known/libp2p-webtransport?type=noise";

/// Whether a session request's path (with its query) is libp2p's: the
/// well-known path, and `type=noise` among the query's parameters.
pub(super) fn is_libp2p_path(path: &str) -> bool {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    path == "/.well-known/libp2p-webtransport" && query.split('&').any(|p| p == "type=noise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialable_address_gives_its_socket_and_hashes_and_others_are_not_taken() {
        let hash = certhash(&[7; 32]);
        let addr = to_multiaddr("127.0.0.1:4001".parse().unwrap(), &[hash]);
        let with_peer = addr.clone().with(Protocol::P2p(libp2p::PeerId::random()));
        let parsed = parse(&with_peer).unwrap();
        assert_eq!(
            parsed.socket,
            "127.0.0.1:4001".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(parsed.certhashes, vec![hash]);
        assert_eq!(sha256_of(&parsed.certhashes[0]), Some([7; 32]));
        let plain_quic: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        assert_eq!(parse(&plain_quic), None);
        let ws: Multiaddr = "/ip4/127.0.0.1/udp/1/quic-v1/webtransport/ws"
            .parse()
            .unwrap();
        assert_eq!(parse(&ws), None);
        assert!(is_libp2p_path(PATH));
        assert!(is_libp2p_path(
            "/.well-known/libp2p-webtransport?a=b&type=noise"
        ));
        assert!(!is_libp2p_path("/.well-known/libp2p-webtransport"));
        assert!(!is_libp2p_path("/other?type=noise"));
    }
}
