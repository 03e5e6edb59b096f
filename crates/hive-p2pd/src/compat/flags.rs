//! The go daemon's flags: which exist, which take a value, which are
//! refused, and what each one sets in [`GoOptions`].

use std::path::PathBuf;

use anyhow::{bail, Result};

use hive_node::config::Reachability;

use super::parse::{
    check_relay_addrs, comma_addrs, parse_bool, parse_go_duration, parse_number, parse_socket_addr,
};
use super::GoOptions;
use crate::control::ControlAddr;

/// Flags that take no value.
pub const BOOL_FLAGS: &[&str] = &[
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
pub const VALUE_FLAGS: &[&str] = &[
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
pub const REFUSED_FLAGS: &[(&str, &str)] = &[
    ("f", "hive-p2pd takes no JSON config file; pass the flags themselves"),
    ("i", "hive-p2pd reads no JSON config from stdin; pass the flags themselves"),
    ("pprof", "hive-p2pd has no Go pprof handler; use its --log-format json traces and the host's /metrics"),
    ("pprofPort", "hive-p2pd has no Go pprof handler"),
];

/// A boolean flag: `-name` (on) or `-name=VALUE`.
pub fn apply_bool(opts: &mut GoOptions, name: &str, inline: Option<&str>) -> Result<()> {
    let on = match inline {
        Some(v) => parse_bool(name, v)?,
        None => true,
    };
    match name {
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
        "noise" => opts.noise = on,
        "tls" => opts.tls = on,
        "relayActive" | "relayHop" | "relayDiscovery" => opts.notices.push(format!(
            "-{name} has no effect (go's daemon deprecated it too)"
        )),
        _ => {}
    }
    Ok(())
}

/// A flag with a value.
pub fn apply_value(opts: &mut GoOptions, name: &str, value: String) -> Result<()> {
    match name {
        "listen" => opts.control = ControlAddr::parse(&value)?,
        "hostAddrs" => opts.host_addrs = comma_addrs(name, &value)?,
        "bootstrapPeers" => opts.bootstrap = comma_addrs(name, &value)?,
        "id" => opts.key_file = Some(PathBuf::from(value)),
        "announceAddrs" => opts.announce = comma_addrs(name, &value)?,
        "connLo" => opts.conn_limits.low = parse_number(name, &value)?,
        "connHi" => opts.conn_limits.high = parse_number(name, &value)?,
        "connGrace" => opts.conn_limits.grace = parse_go_duration(name, &value)?,
        "relayDataLimit" => opts.relay_limits.max_circuit_bytes = parse_number(name, &value)?,
        "relayMaxCircuits" => {
            opts.relay_limits.max_circuits_per_peer = parse_number(name, &value)?
        }
        "relayMaxReservations" => {
            opts.relay_limits.max_reservations = parse_number(name, &value)?
        }
        "relayTimeLimit" => {
            opts.relay_limits.max_circuit_duration = parse_go_duration(name, &value)?
        }
        "trustedRelays" => {
            opts.trusted_relays = comma_addrs(name, &value)?;
            check_relay_addrs("-trustedRelays", &opts.trusted_relays)?;
        }
        "idleTimeout" => opts.idle_timeout = parse_go_duration(name, &value)?,
        "persistentConnMaxMsgSize" => {
            opts.persistent_max_msg = parse_number(name, &value)?;
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
        "metricsAddr" => opts.metrics_addr = Some(parse_socket_addr(name, &value)?),
        "gossipsubHeartbeatInterval" => {
            opts.gossipsub_heartbeat = Some(parse_go_duration(name, &value)?)
        }
        "gossipsubHeartbeatInitialDelay" => {
            opts.gossipsub_initial_delay = Some(parse_go_duration(name, &value)?)
        }
        "muxer" if value != "yamux" => bail!(
            "-muxer {value}: hive-p2pd multiplexes with yamux only (mplex is deprecated across libp2p)"
        ),
        _ => {}
    }
    Ok(())
}
