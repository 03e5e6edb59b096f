//! Where the control protocol listens: `-listen` addresses.

use anyhow::{bail, Context as _, Result};
use libp2p::Multiaddr;

/// Where the control protocol listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    Unix(std::path::PathBuf),
    Tcp(std::net::SocketAddr),
}

impl ControlAddr {
    /// Parse `/unix/PATH` (the multiaddr crate cannot: it splits paths at
    /// slashes) or `/ip4|ip6/ADDR/tcp/PORT`.
    pub fn parse(text: &str) -> Result<ControlAddr> {
        if let Some(path) = text.strip_prefix("/unix") {
            // `/unix//tmp/x` (p2pclient's spelling) and `/unix/tmp/x` both mean /tmp/x.
            let path = format!("/{}", path.trim_start_matches('/'));
            if path == "/" {
                bail!("-listen {text}: a Unix socket path is missing");
            }
            return Ok(ControlAddr::Unix(path.into()));
        }
        let addr: Multiaddr = text
            .parse()
            .with_context(|| format!("-listen {text:?} is not a multiaddr"))?;
        multiaddr_to_socket(&addr)
            .map(ControlAddr::Tcp)
            .with_context(|| format!("-listen {text}: expected /unix/PATH or /ip4/IP/tcp/PORT"))
    }

    pub fn display(&self) -> String {
        match self {
            ControlAddr::Unix(path) => format!("/unix{}", path.display()),
            ControlAddr::Tcp(addr) => match addr {
                std::net::SocketAddr::V4(a) => format!("/ip4/{}/tcp/{}", a.ip(), a.port()),
                std::net::SocketAddr::V6(a) => format!("/ip6/{}/tcp/{}", a.ip(), a.port()),
            },
        }
    }
}

/// `/ip4|ip6/IP/tcp/PORT` and nothing after it.
pub(crate) fn multiaddr_to_socket(addr: &Multiaddr) -> Option<std::net::SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut iter = addr.iter();
    let ip: std::net::IpAddr = match iter.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match (iter.next()?, iter.next()) {
        (Protocol::Tcp(port), None) => Some((ip, port).into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_addresses() {
        assert_eq!(
            ControlAddr::parse("/unix/tmp/a.sock").unwrap(),
            ControlAddr::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            ControlAddr::parse("/unix//tmp/a.sock").unwrap(),
            ControlAddr::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            ControlAddr::parse("/ip4/127.0.0.1/tcp/5000").unwrap(),
            ControlAddr::Tcp("127.0.0.1:5000".parse().unwrap())
        );
        assert!(ControlAddr::parse("/unix").is_err());
        assert!(ControlAddr::parse("/dns4/x/udp/1").is_err());
        assert_eq!(
            ControlAddr::Unix("/tmp/a.sock".into()).display(),
            "/unix/tmp/a.sock"
        );
    }
}
