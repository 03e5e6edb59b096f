//! go-libp2p-daemon's command line, so that harnesses written for `p2pd`
//! (hivemind, p2pclient's tests, the libp2p interop suite) can start
//! `hive-p2pd` unchanged.
//!
//! Go's flag syntax: single dash, `-name=value` or `-name value`, booleans as
//! `-name`, `-name=true|false|1|0`. Double-dash arguments stay Hive's own
//! (parsed by clap), so both kinds can be mixed on one command line.

mod flags;
mod parse;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use libp2p::Multiaddr;

use hive_node::config::{Reachability, RelayService};

use crate::control::ControlAddr;
use flags::{BOOL_FLAGS, REFUSED_FLAGS, VALUE_FLAGS};
pub use parse::check_relay_addrs;

/// What the go-style flags asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoOptions {
    /// Where the control protocol listens (`-listen`).
    pub control: ControlAddr,
    /// `-q`: print no start-up lines.
    pub quiet: bool,
    /// `-hostAddrs`.
    pub host_addrs: Vec<Multiaddr>,
    /// `-bootstrapPeers`.
    pub bootstrap: Vec<Multiaddr>,
    /// `-b`: dial the bootstrap peers (go dials `-bootstrapPeers` only then).
    pub bootstrap_dial: bool,
    /// `-id`.
    pub key_file: Option<PathBuf>,
    /// `-noListenAddrs`.
    pub no_listen: bool,
    /// `-connManager`: trim connections between the watermarks.
    pub conn_manager: bool,
    /// `-connLo`, `-connHi`, `-connGrace`.
    pub conn_limits: crate::control::connmgr::Limits,
    /// `-announceAddrs`: taken as this node's confirmed external addresses.
    pub announce: Vec<Multiaddr>,
    /// `-relay` (default on): dial and accept circuits.
    pub relay: bool,
    /// `-relayService` (default on, with `-relay`): serve as a relay (HOP),
    /// whatever the reachability, as go's daemon does.
    pub relay_service: bool,
    /// `-forceReachabilityPublic` / `-forceReachabilityPrivate`.
    pub reachability: Reachability,
    /// `-relayDataLimit`, `-relayMaxCircuits`, `-relayMaxReservations`,
    /// `-relayTimeLimit`.
    pub relay_limits: RelayService,
    /// `-autoRelay`: keep slots on the trusted relays while not reachable.
    pub auto_relay: bool,
    /// `-trustedRelays` (the bootstrap peers when absent).
    pub trusted_relays: Vec<Multiaddr>,
    /// `-autonat`.
    pub autonat: bool,
    /// `-natPortMap`.
    pub nat_port_map: bool,
    /// `-idleTimeout`: exit when no persistent connection has been open for
    /// this long (zero: never).
    pub idle_timeout: Duration,
    /// `-dhtClient` (without `-dht`/`-dhtServer`).
    pub dht_client: bool,
    /// `-pubsubSign`.
    pub pubsub_sign: bool,
    /// `-pubsubSignStrict`.
    pub pubsub_strict: bool,
    /// `-gossipsubHeartbeatInterval`.
    pub gossipsub_heartbeat: Option<Duration>,
    /// `-gossipsubHeartbeatInitialDelay`.
    pub gossipsub_initial_delay: Option<Duration>,
    /// `-metricsAddr`: where to serve Prometheus metrics.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `-persistentConnMaxMsgSize`: largest message on a persistent
    /// connection and in a unary call (go's default: 4 MiB).
    pub persistent_max_msg: usize,
    /// Flags taken but with no effect here, and why: logged at start-up
    /// (logging is not set up yet while flags are read).
    pub notices: Vec<String>,
    /// `-noise` and `-tls`: the security protocols TCP offers.
    pub noise: bool,
    pub tls: bool,
}

impl Default for GoOptions {
    /// go-libp2p-daemon's defaults.
    fn default() -> Self {
        GoOptions {
            control: ControlAddr::Unix("/tmp/p2pd.sock".into()),
            quiet: false,
            host_addrs: Vec::new(),
            bootstrap: Vec::new(),
            bootstrap_dial: false,
            key_file: None,
            no_listen: false,
            conn_manager: false,
            conn_limits: crate::control::connmgr::Limits::GO,
            announce: Vec::new(),
            relay: true,
            relay_service: true,
            reachability: Reachability::Auto,
            relay_limits: RelayService::default(),
            auto_relay: false,
            trusted_relays: Vec::new(),
            autonat: false,
            nat_port_map: false,
            idle_timeout: Duration::ZERO,
            dht_client: false,
            pubsub_sign: true,
            pubsub_strict: true,
            gossipsub_heartbeat: None,
            gossipsub_initial_delay: None,
            metrics_addr: None,
            persistent_max_msg: crate::control::MAX_FRAME,
            notices: Vec::new(),
            noise: true,
            tls: true,
        }
    }
}

/// Split the arguments into Hive's own (returned, for clap) and go-style
/// ones (interpreted). Returns `None` for the options when no go-style flag
/// was given.
pub fn split_args(args: Vec<String>) -> Result<(Vec<String>, Option<GoOptions>)> {
    let mut hive = Vec::new();
    let mut go: Option<GoOptions> = None;
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        hive.push(program);
    }
    let mut rest: Vec<String> = iter.collect();
    rest.reverse();
    while let Some(arg) = rest.pop() {
        let is_go = arg.len() > 1
            && arg.starts_with('-')
            && !arg.starts_with("--")
            && arg[1..].starts_with(|c: char| c.is_ascii_alphabetic());
        // `-h` is clap's help.
        if !is_go || arg == "-h" || arg == "-V" {
            hive.push(arg);
            continue;
        }
        let body = &arg[1..];
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let opts = go.get_or_insert_with(GoOptions::default);
        if let Some((_, why)) = REFUSED_FLAGS.iter().find(|(flag, _)| *flag == name) {
            bail!("-{name}: {why}");
        }
        if BOOL_FLAGS.contains(&name) {
            flags::apply_bool(opts, name, inline.as_deref())?;
        } else if VALUE_FLAGS.contains(&name) {
            let value = match inline {
                Some(v) => v,
                None => rest.pop().ok_or_else(|| anyhow!("-{name} needs a value"))?,
            };
            flags::apply_value(opts, name, value)?;
        } else {
            bail!(
                "unknown flag -{name}. hive-p2pd accepts go-libp2p-daemon's flags ({}, {}) and its own --flags (see --help)",
                BOOL_FLAGS.join(", -"),
                VALUE_FLAGS.join(", -")
            );
        }
    }
    if let Some(go) = &go {
        go.check()?;
    }
    Ok((hive, go))
}

impl GoOptions {
    /// Flags that each parse but cannot go together.
    fn check(&self) -> Result<()> {
        if self.conn_limits.low > self.conn_limits.high {
            bail!(
                "-connLo {} is above -connHi {}",
                self.conn_limits.low,
                self.conn_limits.high
            );
        }
        if !self.noise && !self.tls {
            bail!("-noise=false and -tls=false: TCP connections would have no security protocol; leave one of them on");
        }
        if !self.pubsub_sign && self.pubsub_strict {
            bail!("-pubsubSign=false needs -pubsubSignStrict=false: with strict verification this node would refuse its own unsigned messages (and so would every strict peer)");
        }
        Ok(())
    }
}
