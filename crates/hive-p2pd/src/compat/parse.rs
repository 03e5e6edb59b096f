//! Values of go-style flags, read as go's `flag` package and the go daemon
//! read them; each error names the flag.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use libp2p::Multiaddr;

/// `-metricsAddr` as go takes it (`host:port`, `:port` for every
/// interface) or as a multiaddr (`/ip4/127.0.0.1/tcp/9090`).
pub fn parse_socket_addr(name: &str, value: &str) -> Result<std::net::SocketAddr> {
    let bad = || anyhow!("-{name} {value:?}: expected host:port or /ip4/…/tcp/PORT");
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        return Ok(std::net::SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if value.starts_with('/') {
        let addr: Multiaddr = value.parse().map_err(|_| bad())?;
        return crate::control::multiaddr_to_socket(&addr).ok_or_else(bad);
    }
    value.parse().map_err(|_| bad())
}

/// Relays are known by their peer id: each address must end in `/p2p/ID`.
pub fn check_relay_addrs(flag: &str, addrs: &[Multiaddr]) -> Result<()> {
    match addrs
        .iter()
        .find(|a| !matches!(a.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))))
    {
        Some(addr) => {
            bail!("{flag}: {addr} has no /p2p/RELAY-ID part; a relay is known by its peer id")
        }
        None => Ok(()),
    }
}

/// Go's `time.Duration` syntax (`30s`, `1m30s`, `1.5h`, `250ms`); a bare
/// number is taken as seconds, as the go daemon's help text words it.
pub fn parse_go_duration(name: &str, value: &str) -> Result<Duration> {
    let bad = || anyhow!("-{name} {value:?} is not a duration (for example 30s, 2m, 1h30m)");
    if value.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = 0f64;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

pub fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| anyhow!("-{name} {value:?} is not a number"))
}

pub fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => bail!("-{name}={other}: expected a boolean (true/false/1/0)"),
    }
}

pub fn comma_addrs(name: &str, value: &str) -> Result<Vec<Multiaddr>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e| anyhow!("-{name}: {s:?} is not a multiaddr: {e}"))
        })
        .collect()
}
