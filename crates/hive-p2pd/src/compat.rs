//! go-libp2p-daemon's command line, so that harnesses written for `p2pd`
//! (hivemind, p2pclient's tests, the libp2p interop suite) can start
//! `hive-p2pd` unchanged.
//!
//! Go's flag syntax: single dash, `-name=value` or `-name value`, booleans as
//! `-name`, `-name=true|false|1|0`. Double-dash arguments stay Hive's own
//! (parsed by clap), so both kinds can be mixed on one command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use libp2p::Multiaddr;

use hive_node::config::{Reachability, RelayService};

use crate::control::ControlAddr;

/// Flags that take no value.
const BOOL_FLAGS: &[&str] = &[
    "pubsub",
    "pubsubSign",
    "pubsubSignStrict",
    "dht",
    "dhtClient",
    "dhtServer",
    "b",
    "connManager",
    "q",
    "relay",
    "autonat",
    "autoRelay",
    "natPortMap",
    "noListenAddrs",
    "tls",
    "noise",
    "quic",
    "relayActive",
    "relayHop",
    "relayDiscovery",
    "forceReachabilityPublic",
    "forceReachabilityPrivate",
    "relayService",
];

/// Flags that take a value.
const VALUE_FLAGS: &[&str] = &[
    "listen",
    "hostAddrs",
    "announceAddrs",
    "id",
    "pubsubRouter",
    "bootstrapPeers",
    "connLo",
    "connHi",
    "connGrace",
    "idleTimeout",
    "persistentConnMaxMsgSize",
    "metricsAddr",
    "relayHopLimit",
    "trustedRelays",
    "gossipsubHeartbeatInterval",
    "gossipsubHeartbeatInitialDelay",
    "relayBufferSize",
    "relayDataLimit",
    "relayMaxCircuits",
    "relayMaxReservations",
    "relayTimeLimit",
    "muxer",
];

/// go-daemon flags that hive-p2pd refuses, and why.
const REFUSED_FLAGS: &[(&str, &str)] = &[
    ("f", "hive-p2pd takes no JSON config file; pass the flags themselves"),
    ("i", "hive-p2pd reads no JSON config from stdin; pass the flags themselves"),
    ("pprof", "hive-p2pd has no Go pprof handler; use its --log-format json traces and the host's /metrics"),
    ("pprofPort", "hive-p2pd has no Go pprof handler"),
];

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
}

/// `-metricsAddr` as go takes it (`host:port`, `:port` for every
/// interface) or as a multiaddr (`/ip4/127.0.0.1/tcp/9090`).
fn parse_socket_addr(name: &str, value: &str) -> Result<std::net::SocketAddr> {
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

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| anyhow!("-{name} {value:?} is not a number"))
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => bail!("-{name}={other}: expected a boolean (true/false/1/0)"),
    }
}

fn comma_addrs(name: &str, value: &str) -> Result<Vec<Multiaddr>> {
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
        if !is_go {
            hive.push(arg);
            continue;
        }
        // `-h` is clap's help.
        if arg == "-h" || arg == "-V" {
            hive.push(arg);
            continue;
        }
        let body = &arg[1..];
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let opts = go.get_or_insert_with(|| GoOptions {
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
        });
        if let Some((_, why)) = REFUSED_FLAGS.iter().find(|(flag, _)| *flag == name) {
            bail!("-{name}: {why}");
        }
        if BOOL_FLAGS.contains(&name.as_str()) {
            let on = match &inline {
                Some(v) => parse_bool(&name, v)?,
                None => true,
            };
            match name.as_str() {
                "q" => opts.quiet = on,
                "noListenAddrs" => opts.no_listen = on,
                "relay" => opts.relay = on,
                "relayService" => opts.relay_service = on,
                "autoRelay" => opts.auto_relay = on,
                "autonat" => opts.autonat = on,
                "natPortMap" => opts.nat_port_map = on,
                "forceReachabilityPublic" if on => opts.reachability = Reachability::Public,
                "forceReachabilityPrivate" if on => opts.reachability = Reachability::Private,
                "pubsubSign" => opts.pubsub_sign = on,
                "pubsubSignStrict" => opts.pubsub_strict = on,
                "dhtClient" => opts.dht_client = on,
                "dht" | "dhtServer" if on => opts.dht_client = false,
                "b" => {
                    opts.bootstrap_dial = on;
                    if on {
                        opts.notices.push(
                            "-b: hive-p2pd has no public bootstrap peers; only -bootstrapPeers are dialed"
                                .into(),
                        );
                    }
                }
                "connManager" => opts.conn_manager = on,
                "noise" | "tls" if !on => opts.notices.push(format!(
                    "-{name}=false: hive-p2pd still offers both Noise and TLS on TCP"
                )),
                "relayActive" | "relayHop" | "relayDiscovery" => opts.notices.push(format!(
                    "-{name} has no effect (go's daemon deprecated it too)"
                )),
                _ => {}
            }
            continue;
        }
        if VALUE_FLAGS.contains(&name.as_str()) {
            let value = match inline {
                Some(v) => v,
                None => rest.pop().ok_or_else(|| anyhow!("-{name} needs a value"))?,
            };
            match name.as_str() {
                "listen" => opts.control = ControlAddr::parse(&value)?,
                "hostAddrs" => opts.host_addrs = comma_addrs(&name, &value)?,
                "bootstrapPeers" => opts.bootstrap = comma_addrs(&name, &value)?,
                "id" => opts.key_file = Some(PathBuf::from(value)),
                "announceAddrs" => opts.announce = comma_addrs(&name, &value)?,
                "connLo" => opts.conn_limits.low = parse_number(&name, &value)?,
                "connHi" => opts.conn_limits.high = parse_number(&name, &value)?,
                "connGrace" => opts.conn_limits.grace = parse_go_duration(&name, &value)?,
                "relayDataLimit" => opts.relay_limits.max_circuit_bytes = parse_number(&name, &value)?,
                "relayMaxCircuits" => {
                    opts.relay_limits.max_circuits_per_peer = parse_number(&name, &value)?
                }
                "relayMaxReservations" => {
                    opts.relay_limits.max_reservations = parse_number(&name, &value)?
                }
                "relayTimeLimit" => {
                    opts.relay_limits.max_circuit_duration = parse_go_duration(&name, &value)?
                }
                "trustedRelays" => {
                    opts.trusted_relays = comma_addrs(&name, &value)?;
                    check_relay_addrs("-trustedRelays", &opts.trusted_relays)?;
                }
                "idleTimeout" => opts.idle_timeout = parse_go_duration(&name, &value)?,
                "persistentConnMaxMsgSize" => {
                    opts.persistent_max_msg = parse_number(&name, &value)?;
                    if opts.persistent_max_msg == 0 {
                        bail!("-persistentConnMaxMsgSize must be above 0");
                    }
                }
                "relayBufferSize" | "relayHopLimit" => opts.notices.push(format!(
                    "-{name} has no effect in hive-p2pd"
                )),
                // Gossipsub that also speaks floodsub serves both: floodsub
                // peers are flooded, gossipsub peers (hive-p2pd included)
                // negotiate meshsub.
                "pubsubRouter" if value != "gossipsub" && value != "floodsub" => bail!(
                    "-pubsubRouter {value}: hive-p2pd runs gossipsub, which also speaks floodsub to floodsub peers; use gossipsub or floodsub"
                ),
                "metricsAddr" => opts.metrics_addr = Some(parse_socket_addr(&name, &value)?),
                "gossipsubHeartbeatInterval" => {
                    opts.gossipsub_heartbeat = Some(parse_go_duration(&name, &value)?)
                }
                "gossipsubHeartbeatInitialDelay" => {
                    opts.gossipsub_initial_delay = Some(parse_go_duration(&name, &value)?)
                }
                "muxer" if value != "yamux" => bail!(
                    "-muxer {value}: hive-p2pd multiplexes with yamux only (mplex is deprecated across libp2p)"
                ),
                _ => {}
            }
            continue;
        }
        bail!(
            "unknown flag -{name}. hive-p2pd accepts go-libp2p-daemon's flags ({}, {}) and its own --flags (see --help)",
            BOOL_FLAGS.join(", -"),
            VALUE_FLAGS.join(", -")
        );
    }
    if let Some(go) = &go {
        if go.conn_limits.low > go.conn_limits.high {
            bail!(
                "-connLo {} is above -connHi {}",
                go.conn_limits.low,
                go.conn_limits.high
            );
        }
        if !go.pubsub_sign && go.pubsub_strict {
            bail!("-pubsubSign=false needs -pubsubSignStrict=false: with strict verification this node would refuse its own unsigned messages (and so would every strict peer)");
        }
    }
    Ok((hive, go))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hivemind_command_line_is_accepted() {
        let (hive, go) = split_args(args(&[
            "p2pd",
            "-autoRelay=0",
            "-autonat=1",
            "-b=0",
            "-connManager=1",
            "-idleTimeout=30s",
            "-listen=/unix/tmp/hivemind-p2pd-x.sock",
            "-natPortMap=1",
            "-relay=1",
            "-relayHopLimit=0",
            "-tls=1",
            "-persistentConnMaxMsgSize=4194304",
            "-dhtServer=1",
            "-hostAddrs=/ip4/127.0.0.1/tcp/0",
        ]))
        .unwrap();
        assert_eq!(hive, args(&["p2pd"]));
        let go = go.unwrap();
        assert_eq!(
            go.control,
            ControlAddr::Unix("/tmp/hivemind-p2pd-x.sock".into())
        );
        assert_eq!(go.host_addrs, vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
        assert!(!go.quiet);
        assert!(go.relay && go.relay_service);
        assert_eq!(go.reachability, Reachability::Auto);
    }

    #[test]
    fn relay_flags_configure_the_relay() {
        let (_, go) = split_args(args(&[
            "p2pd",
            "-relay",
            "-forceReachabilityPublic",
            "-relayDataLimit=1024",
            "-relayMaxCircuits",
            "3",
            "-relayMaxReservations=7",
            "-announceAddrs=/ip4/192.0.2.1/tcp/4001",
        ]))
        .unwrap();
        let go = go.unwrap();
        assert_eq!(go.reachability, Reachability::Public);
        assert_eq!(go.relay_limits.max_circuit_bytes, 1024);
        assert_eq!(go.relay_limits.max_circuits_per_peer, 3);
        assert_eq!(go.relay_limits.max_reservations, 7);
        assert_eq!(go.announce.len(), 1);
        assert_eq!(
            go.relay_limits.max_circuit_duration,
            RelayService::default().max_circuit_duration
        );
        let (_, go) = split_args(args(&["p2pd", "-relay=false"])).unwrap();
        assert!(!go.unwrap().relay);
        let e = split_args(args(&["p2pd", "-relayMaxCircuits=lots"])).unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
    }

    #[test]
    fn separate_values_and_hive_flags_mix() {
        let (hive, go) = split_args(args(&[
            "p2pd",
            "-listen",
            "/unix/tmp/a.sock",
            "-q",
            "--data-dir",
            "/tmp/d",
            "-bootstrapPeers",
            "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzv1Tdt7WXkVDsnB3nSyZHrVVjDjHuvx5EQzz2qrG7Vb",
        ]))
        .unwrap();
        assert_eq!(hive, args(&["p2pd", "--data-dir", "/tmp/d"]));
        let go = go.unwrap();
        assert!(go.quiet);
        assert_eq!(go.bootstrap.len(), 1);
    }

    #[test]
    fn unsupported_flags_get_clear_errors() {
        let e = split_args(args(&["p2pd", "-frobnicate"])).unwrap_err();
        assert!(e.to_string().contains("unknown flag -frobnicate"), "{e}");
        let e = split_args(args(&["p2pd", "-pubsubRouter=randomsub"])).unwrap_err();
        assert!(e.to_string().contains("gossipsub or floodsub"), "{e}");
        assert!(split_args(args(&["p2pd", "-pubsubRouter=floodsub"])).is_ok());
        let e = split_args(args(&["p2pd", "-b=maybe"])).unwrap_err();
        assert!(e.to_string().contains("boolean"), "{e}");
        assert!(split_args(args(&["p2pd", "-listen"])).is_err());
    }

    #[test]
    fn pubsub_dht_muxer_and_metrics_flags() {
        let (_, go) = split_args(args(&[
            "p2pd",
            "-pubsubSign=false",
            "-pubsubSignStrict=false",
            "-dhtClient",
            "-gossipsubHeartbeatInterval=1s",
            "-muxer=yamux",
            "-metricsAddr=127.0.0.1:9090",
        ]))
        .unwrap();
        let go = go.unwrap();
        assert!(!go.pubsub_sign && !go.pubsub_strict && go.dht_client);
        assert_eq!(go.gossipsub_heartbeat, Some(Duration::from_secs(1)));
        assert_eq!(go.metrics_addr, Some("127.0.0.1:9090".parse().unwrap()));
        let metrics = |v: &str| split_args(args(&["p2pd", &format!("-metricsAddr={v}")]));
        assert_eq!(
            metrics("/ip4/127.0.0.1/tcp/9091")
                .unwrap()
                .1
                .unwrap()
                .metrics_addr,
            Some("127.0.0.1:9091".parse().unwrap())
        );
        assert_eq!(
            metrics(":9092").unwrap().1.unwrap().metrics_addr,
            Some("0.0.0.0:9092".parse().unwrap())
        );
        assert!(metrics("/ip4/127.0.0.1/udp/1").is_err());
        let e = split_args(args(&["p2pd", "-pubsubSign=false"])).unwrap_err();
        assert!(e.to_string().contains("-pubsubSignStrict=false"), "{e}");
        let e = split_args(args(&["p2pd", "-muxer=mplex"])).unwrap_err();
        assert!(e.to_string().contains("yamux only"), "{e}");
        let (_, go) = split_args(args(&[
            "p2pd",
            "-persistentConnMaxMsgSize=16777216",
            "-b",
            "-tls=false",
        ]))
        .unwrap();
        let go = go.unwrap();
        assert_eq!(go.persistent_max_msg, 16 << 20);
        assert_eq!(go.notices.len(), 2, "{:?}", go.notices);
        assert!(split_args(args(&["p2pd", "-persistentConnMaxMsgSize=0"])).is_err());
        let e = split_args(args(&["p2pd", "-f", "conf.json"])).unwrap_err();
        assert!(e.to_string().contains("no JSON config"), "{e}");
    }

    #[test]
    fn go_durations_parse() {
        let d = |v: &str| parse_go_duration("x", v);
        assert_eq!(d("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(d("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(d("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(d("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(d("0").unwrap(), Duration::ZERO);
        assert_eq!(d("45").unwrap(), Duration::from_secs(45));
        for bad in ["", "s", "10x", "1m-3s", "-5"] {
            assert!(d(bad).is_err(), "{bad:?}");
        }
        let (_, go) = split_args(args(&["p2pd", "-idleTimeout=2m", "-relayTimeLimit=1h"])).unwrap();
        let go = go.unwrap();
        assert_eq!(go.idle_timeout, Duration::from_secs(120));
        assert_eq!(
            go.relay_limits.max_circuit_duration,
            Duration::from_secs(3600)
        );
        let e = split_args(args(&["p2pd", "-trustedRelays=/ip4/127.0.0.1/tcp/1"])).unwrap_err();
        assert!(e.to_string().contains("/p2p/"), "{e}");
    }

    #[test]
    fn no_go_flags_means_hive_mode() {
        let (hive, go) = split_args(args(&["hive-p2pd", "--ipc", "127.0.0.1:0"])).unwrap();
        assert_eq!(hive.len(), 3);
        assert!(go.is_none());
    }
}
