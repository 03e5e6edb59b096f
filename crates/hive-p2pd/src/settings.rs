//! What a daemon is asked to be, decided before anything starts.
//!
//! [`Settings::from_cli`] turns the parsed command line (Hive's `--flags`
//! and, in go mode, go-libp2p-daemon's `-flags`) into one value. It touches
//! no file, socket or environment variable (those come in as [`Env`]), so
//! every default and every interplay of flags is unit-tested here rather
//! than only by starting processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use hive_node::config::{AutoRelay, Reachability, RelayService};
use hive_node::NodeConfig;
use hive_proto::ENV_EXIT_WITH_PARENT;
use libp2p::identity::Keypair;
use libp2p::Multiaddr;

use crate::cli::Cli;
use crate::compat::{self, GoOptions};
use crate::control::ControlAddr;

/// What the process's surroundings contribute to the settings.
#[derive(Debug, Clone)]
pub struct Env {
    /// `HIVE_EXIT_WITH_PARENT=1`.
    pub exit_with_parent: bool,
    /// This process's id (names an ephemeral daemon's scratch directory).
    pub pid: u32,
    /// The system's temporary directory.
    pub temp_dir: PathBuf,
    /// Where a daemon keeps its data when not told (`<data dir>/hive-p2pd`).
    pub default_data_dir: PathBuf,
}

impl Env {
    /// The environment of this process.
    pub fn from_process() -> Env {
        Env {
            exit_with_parent: std::env::var(ENV_EXIT_WITH_PARENT).is_ok_and(|v| v == "1"),
            pid: std::process::id(),
            temp_dir: std::env::temp_dir(),
            default_data_dir: dirs::data_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("hive-p2pd"),
        }
    }
}

/// Everything the daemon needs to start.
#[derive(Debug)]
pub struct Settings {
    /// The node's configuration. Its keypair is a fresh one, which an
    /// ephemeral daemon keeps; with `key_file` set, start-up replaces it by
    /// the file's.
    pub node: NodeConfig,
    /// The identity key to load or create; `None`: the fresh key above.
    pub key_file: Option<PathBuf>,
    /// Identity, token, history and remembered peers live here.
    pub data_dir: PathBuf,
    /// The data directory is this process's scratch space, removed at exit.
    pub scratch: bool,
    /// `--token-file` (used when HIVE_IPC_TOKEN is not set).
    pub token_file: Option<PathBuf>,
    /// `--ipc`: where the IPC listens.
    pub ipc: String,
    /// `--max-frame-bytes`.
    pub max_frame_bytes: usize,
    /// Exit when the parent process dies.
    pub exit_with_parent: bool,
    /// How `reproduce` is answered.
    pub children: ChildSettings,
    /// go-libp2p-daemon's front door, in go mode.
    pub go: Option<GoFront>,
    /// Flags taken with no effect, and why: logged at start-up.
    pub notices: Vec<String>,
}

/// How this daemon answers `reproduce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildSettings {
    /// `--children-via-host`: leave it to the supervising host.
    pub via_host: bool,
    /// Children run without mDNS, as this daemon does.
    pub no_mdns: bool,
    /// `--max-children`.
    pub max: usize,
}

/// The go daemon's control protocol and what goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFront {
    /// `-listen`: where the control protocol listens.
    pub control: ControlAddr,
    /// `-q`: print no start-up lines.
    pub quiet: bool,
    /// `-persistentConnMaxMsgSize`.
    pub persistent_max_msg: usize,
    /// `-connManager`: the control protocol's connection manager is on.
    pub conn_manager: bool,
    /// `-idleTimeout` (zero: never).
    pub idle_timeout: Duration,
    /// `-metricsAddr`.
    pub metrics_addr: Option<SocketAddr>,
}

/// Hive's default listen addresses: TCP and QUIC on every interface.
fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

impl Settings {
    /// The settings for this command line: `go` holds the go-style flags
    /// (`None`: none were given, Hive mode).
    pub fn from_cli(mut cli: Cli, go: Option<GoOptions>, env: &Env) -> Result<Settings> {
        if let Some(go) = &go {
            apply_go_defaults(&mut cli, go);
        }
        // Like the go daemon, a daemon started with its flags and no
        // --data-dir keeps nothing: its data directory is scratch space of
        // its own, and without `-id` it gets a fresh identity each time.
        // Harnesses start several side by side, with one `-id` file each or
        // none, and each daemon needs a directory of its own (one daemon
        // per data directory: `dir_lock`).
        let scratch = go.is_some() && cli.data_dir.is_none();
        let data_dir = match (&cli.data_dir, scratch) {
            (Some(dir), _) => dir.clone(),
            (None, true) => env.temp_dir.join(format!("hive-p2pd-{}", env.pid)),
            (None, false) => env.default_data_dir.clone(),
        };
        let key_file = match (&cli.key_file, scratch) {
            (Some(key), _) => Some(key.clone()),
            (None, true) => None,
            (None, false) => Some(data_dir.join("identity.key")),
        };
        for (flag, rate) in [
            ("--direct-rate", cli.direct_rate),
            ("--direct-burst", cli.direct_burst),
            ("--sync-rate", cli.sync_rate),
        ] {
            if !rate.is_finite() || rate < 0.0 {
                anyhow::bail!("{flag} must be a number of at least 0 (0 = no limit), not {rate}");
            }
        }
        check_history_budget(&cli)?;
        let mut node = node_config(&cli, go.as_ref(), &data_dir);
        compat::check_relay_addrs("--relay", &cli.relays)?;
        match &go {
            Some(go) => apply_go_node_options(&mut node, go),
            None => {
                node.conn_manager = cli.conn_limits()?;
                if cli.relay_service {
                    node.reachability = Reachability::Public;
                    node.relay_service = Some(RelayService {
                        reservation_duration: Duration::from_secs(cli.relay_reservation_secs),
                        ..RelayService::default()
                    });
                }
            }
        }
        if !cli.relays.is_empty() {
            node.auto_relay = Some(AutoRelay {
                relays: cli.relays.clone(),
                only_when_private: false,
            });
        }
        Ok(Settings {
            node,
            key_file,
            scratch,
            token_file: cli.token_file.clone(),
            ipc: cli.ipc.clone(),
            max_frame_bytes: cli.max_frame_bytes,
            exit_with_parent: cli.exit_with_parent || env.exit_with_parent,
            children: ChildSettings {
                via_host: cli.children_via_host,
                no_mdns: cli.no_mdns,
                max: cli.max_children,
            },
            go: go.as_ref().map(go_front),
            notices: go.map(|g| g.notices).unwrap_or_default(),
            data_dir,
        })
    }
}

/// The go daemon's defaults where Hive's flags leave a choice open.
fn apply_go_defaults(cli: &mut Cli, go: &GoOptions) {
    // The go daemon's defaults: no mDNS, its listen addresses and key.
    cli.no_mdns = true;
    if cli.listen.is_empty() {
        cli.listen = go.host_addrs.clone();
    }
    // As go's daemon: -bootstrapPeers are dialed only with -b (they are
    // still the default trusted relays).
    if go.bootstrap_dial {
        cli.bootstrap.extend(go.bootstrap.iter().cloned());
    }
    if cli.key_file.is_none() {
        cli.key_file = go.key_file.clone();
    }
    // go's -connHi is where trimming starts, not a cap: leave room above it
    // for the manager to trim from.
    if go.conn_manager {
        let room = u32::try_from(go.conn_limits.high.saturating_mul(2)).unwrap_or(u32::MAX);
        cli.max_connections = cli.max_connections.max(room);
    }
    cli.announce.extend(go.announce.iter().cloned());
    cli.no_relay_client |= !go.relay;
}

/// The node's configuration from the flags both modes share.
fn node_config(cli: &Cli, go: Option<&GoOptions>, data_dir: &std::path::Path) -> NodeConfig {
    let mut config = NodeConfig::new(Keypair::generate_ed25519());
    config.listen = if go.is_some_and(|g| g.no_listen) {
        Vec::new()
    } else if cli.listen.is_empty() {
        default_listen()
    } else {
        cli.listen.clone()
    };
    config.bootstrap = cli.bootstrap.clone();
    // The node remembers its ports and peers in its data directory (see
    // hive_node::memory); go's daemon remembers nothing, so in its mode only
    // an explicit --data-dir turns this on.
    if cli.data_dir.is_some() || go.is_none() {
        config.state_file = Some(data_dir.join(hive_node::memory::STATE_FILE));
    }
    // Nor does go's daemon dial back a peer that went away (only bootstrap
    // peers, with -b): in its mode a peer trimmed by -connManager or dropped
    // by DISCONNECT stays away, as go's clients expect, data dir or not.
    config.target_peers = if go.is_none() { cli.target_peers } else { 0 };
    // go's daemon has no catch-up: its clients see exactly what gossip gave.
    config.catch_up = go.is_none();
    config.mdns = !cli.no_mdns;
    config.max_message_size = cli.max_message_size;
    config.max_connections = cli.max_connections;
    config.external_addrs = cli.announce.clone();
    config.relay_client = !cli.no_relay_client;
    config.autonat = cli.autonat;
    config.upnp = cli.upnp;
    config.peer_limits = peer_limits(cli);
    config.history = hive_node::history::HistoryConfig {
        path: Some(hive_node::history::default_path(data_dir)),
        max_age: Duration::from_secs(cli.history_hours.saturating_mul(3600)),
        max_per_topic: cli.history_per_topic.max(1),
        max_bytes: cli.history_max_bytes,
        fsync: cli.durability == crate::cli::Durability::Fsync,
    };
    config
}

/// A budget below one largest message would evict every message as it
/// arrives.
fn check_history_budget(cli: &Cli) -> Result<()> {
    let max = cli.history_max_bytes;
    if max != 0 && max < cli.max_message_size as u64 {
        anyhow::bail!(
            "--history-max-bytes {max} is below --max-message-size {}: every message would be evicted as it arrives (0 = no budget)",
            cli.max_message_size
        );
    }
    Ok(())
}

/// The per-peer rate limits from --direct-rate, --direct-burst,
/// --direct-bytes-rate and --sync-rate.
fn peer_limits(cli: &Cli) -> hive_node::limits::PeerLimits {
    use hive_node::limits::{PeerLimits, Rate};
    let bytes = cli.direct_bytes_rate as f64;
    PeerLimits {
        direct_msgs: Rate {
            per_sec: cli.direct_rate,
            burst: cli.direct_burst.max(1.0),
        },
        direct_bytes: Rate {
            per_sec: bytes,
            // One largest message always fits.
            burst: (2.0 * bytes).max(cli.max_message_size as f64),
        },
        sync_requests: Rate {
            per_sec: cli.sync_rate,
            burst: (10.0 * cli.sync_rate).max(1.0),
        },
    }
}

/// go's daemon: a relay service (HOP) from the start unless turned off,
/// whatever the reachability (its `-relay` runs go-libp2p's relay
/// unconditionally); autorelay reserves on the trusted relays, by default
/// the bootstrap peers, while the node is not reachable.
fn apply_go_node_options(config: &mut NodeConfig, go: &GoOptions) {
    config.reachability = go.reachability;
    config.dht_client = go.dht_client;
    config.pubsub_sign = go.pubsub_sign;
    config.pubsub_strict = go.pubsub_strict;
    if let Some(d) = go.gossipsub_heartbeat {
        config.gossipsub_heartbeat = d;
    }
    if let Some(d) = go.gossipsub_initial_delay {
        config.gossipsub_initial_delay = d;
    }
    config.conn_manager = go.conn_manager.then_some(go.conn_limits);
    // go-libp2p-kad-dht refreshes its buckets; its users' DHTs expect it.
    config.bucket_refresh = true;
    config.autonat |= go.autonat;
    config.tcp_security = match (go.noise, go.tls) {
        (true, false) => hive_node::TcpSecurity::NoiseOnly,
        (false, true) => hive_node::TcpSecurity::TlsOnly,
        _ => hive_node::TcpSecurity::Both,
    };
    config.upnp |= go.nat_port_map;
    if go.relay && go.relay_service {
        config.relay_service = Some(go.relay_limits.clone());
    }
    if go.relay && go.auto_relay {
        let trusted = if go.trusted_relays.is_empty() {
            go.bootstrap.clone()
        } else {
            go.trusted_relays.clone()
        };
        config.auto_relay = Some(AutoRelay {
            relays: trusted,
            only_when_private: true,
        });
    }
}

fn go_front(go: &GoOptions) -> GoFront {
    GoFront {
        control: go.control.clone(),
        quiet: go.quiet,
        persistent_max_msg: go.persistent_max_msg,
        conn_manager: go.conn_manager,
        idle_timeout: go.idle_timeout,
        metrics_addr: go.metrics_addr,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn env() -> Env {
        Env {
            exit_with_parent: false,
            pid: 4242,
            temp_dir: PathBuf::from("/tmp"),
            default_data_dir: PathBuf::from("/home/u/.local/share/hive-p2pd"),
        }
    }

    /// The settings for a command line, split as `main` splits it.
    fn settings(args: &[&str]) -> Result<Settings> {
        let args = std::iter::once("hive-p2pd")
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        let (hive, go) = compat::split_args(args)?;
        Settings::from_cli(Cli::try_parse_from(hive)?, go, &env())
    }

    fn addrs(list: &[&str]) -> Vec<Multiaddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn hive_defaults() {
        let s = settings(&[]).unwrap();
        let data_dir = env().default_data_dir;
        assert_eq!(s.data_dir, data_dir);
        assert!(!s.scratch);
        assert_eq!(s.key_file, Some(data_dir.join("identity.key")));
        assert_eq!(s.ipc, "127.0.0.1:0");
        assert_eq!(s.max_frame_bytes, hive_proto::DEFAULT_MAX_FRAME_BYTES);
        assert!(!s.exit_with_parent);
        assert!(s.go.is_none() && s.notices.is_empty());
        let children = ChildSettings {
            via_host: false,
            no_mdns: false,
            max: 16,
        };
        assert_eq!(s.children, children);
        let n = &s.node;
        assert_eq!(
            n.listen,
            addrs(&["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"])
        );
        assert!(n.bootstrap.is_empty() && n.external_addrs.is_empty());
        assert!(n.mdns && n.relay_client && !n.autonat && !n.upnp);
        assert_eq!(
            n.state_file,
            Some(data_dir.join(hive_node::memory::STATE_FILE))
        );
        assert_eq!(n.target_peers, 8);
        assert!(n.catch_up);
        assert_eq!(n.max_connections, 512);
        assert_eq!(n.max_message_size, hive_node::DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(n.conn_manager, Some(hive_node::connmgr::Limits::HIVE));
        assert_eq!(n.reachability, Reachability::Auto);
        assert!(n.relay_service.is_none() && n.auto_relay.is_none());
        assert_eq!(n.history.path, Some(data_dir.join("history.db")));
        assert_eq!(n.history.max_age, Duration::from_secs(24 * 3600));
        assert_eq!(n.history.max_per_topic, 100_000);
        assert_eq!(n.history.max_bytes, 1 << 30);
    }

    #[test]
    fn the_history_budget_holds_at_least_one_message() {
        let n = settings(&["--history-max-bytes=2000000"]).unwrap().node;
        assert_eq!(n.history.max_bytes, 2_000_000);
        assert_eq!(
            settings(&["--history-max-bytes=0"])
                .unwrap()
                .node
                .history
                .max_bytes,
            0
        );
        let Err(err) = settings(&["--history-max-bytes=1000"]) else {
            panic!("a budget below one message was taken");
        };
        assert!(err.to_string().contains("--max-message-size"), "{err}");
        let small = ["--history-max-bytes=1000", "--max-message-size=1000"];
        assert_eq!(settings(&small).unwrap().node.history.max_bytes, 1000);
    }

    #[test]
    fn hive_flags() {
        let relay = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzv1Tdt7WXkVDsnB3nSyZHrVVjDjHuvx5EQzz2qrG7Vb";
        let s = settings(&[
            "--data-dir=/d",
            "--key-file=/k/id.key",
            "--listen=/ip4/127.0.0.1/tcp/4001",
            "--relay-service",
            "--relay",
            relay,
            "--no-conn-manager",
            "--no-mdns",
            "--children-via-host",
            "--history-per-topic=0",
            "--exit-with-parent",
        ])
        .unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/d"));
        assert_eq!(s.key_file, Some(PathBuf::from("/k/id.key")));
        assert!(s.exit_with_parent && s.children.via_host && s.children.no_mdns);
        let n = &s.node;
        assert_eq!(n.listen, addrs(&["/ip4/127.0.0.1/tcp/4001"]));
        assert_eq!(n.reachability, Reachability::Public);
        assert_eq!(n.relay_service, Some(RelayService::default()));
        let explicit = AutoRelay {
            relays: addrs(&[relay]),
            only_when_private: false,
        };
        assert_eq!(n.auto_relay, Some(explicit));
        assert!(n.conn_manager.is_none() && !n.mdns);
        assert_eq!(n.history.max_per_topic, 1, "at least one message per topic");
        assert_eq!(n.state_file, Some(PathBuf::from("/d/node-state.json")));
    }

    #[test]
    fn environment_turns_on_exit_with_parent() {
        let (hive, go) = compat::split_args(vec!["hive-p2pd".into()]).unwrap();
        let env = Env {
            exit_with_parent: true,
            ..env()
        };
        let s = Settings::from_cli(Cli::try_parse_from(hive).unwrap(), go, &env).unwrap();
        assert!(s.exit_with_parent);
    }

    #[test]
    fn bad_hive_flags_are_refused() {
        let e = settings(&["--relay=/ip4/127.0.0.1/tcp/1"]).unwrap_err();
        assert!(e.to_string().contains("/p2p/RELAY-ID"), "{e}");
        let e = settings(&["--conn-high=600"]).unwrap_err();
        assert!(e.to_string().contains("above --max-connections"), "{e}");
        let e = settings(&["--conn-low=50", "--conn-high=10"]).unwrap_err();
        assert!(e.to_string().contains("--conn-low/--conn-high"), "{e}");
    }

    #[test]
    fn go_defaults() {
        let s = settings(&["-listen=/unix/tmp/p.sock"]).unwrap();
        // No -id and no --data-dir: a fresh identity in scratch space.
        assert!(s.scratch);
        assert_eq!(s.key_file, None);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/hive-p2pd-4242"));
        assert!(s.children.no_mdns);
        let go = s.go.as_ref().unwrap();
        assert_eq!(go.control, ControlAddr::Unix("/tmp/p.sock".into()));
        assert!(!go.quiet && !go.conn_manager);
        assert_eq!(go.idle_timeout, Duration::ZERO);
        assert_eq!(go.persistent_max_msg, crate::control::MAX_FRAME);
        let n = &s.node;
        assert!(!n.mdns, "go's daemon runs no mDNS");
        assert_eq!(n.listen, default_listen());
        assert_eq!(n.state_file, None, "go's daemon remembers nothing");
        assert_eq!(n.target_peers, 0, "nor dials back peers that went away");
        assert!(!n.catch_up, "nor catches up from its peers");
        assert!(n.conn_manager.is_none());
        assert_eq!(n.relay_service, Some(RelayService::default()));
        assert!(n.auto_relay.is_none() && n.relay_client);
        assert!(n.pubsub_sign && n.pubsub_strict && !n.dht_client);
    }

    #[test]
    fn go_flags() {
        let boot = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzv1Tdt7WXkVDsnB3nSyZHrVVjDjHuvx5EQzz2qrG7Vb";
        let s = settings(&[
            "-id=/k/go.key",
            "-hostAddrs=/ip4/127.0.0.1/tcp/0",
            &format!("-bootstrapPeers={boot}"),
            "-b",
            "-autoRelay",
            "-connManager",
            "-connHi=400",
            "-idleTimeout=30s",
            "-q",
        ])
        .unwrap();
        // -id keeps the identity; the data dir is scratch space of this
        // daemon's own (two daemons with -id files once shared the default
        // one, and its history).
        assert!(s.scratch);
        assert_eq!(s.key_file, Some(PathBuf::from("/k/go.key")));
        assert_eq!(s.data_dir, PathBuf::from("/tmp/hive-p2pd-4242"));
        assert_eq!(s.notices.len(), 1, "{:?}", s.notices);
        let go = s.go.as_ref().unwrap();
        assert!(go.quiet && go.conn_manager);
        assert_eq!(go.idle_timeout, Duration::from_secs(30));
        let n = &s.node;
        assert_eq!(n.listen, addrs(&["/ip4/127.0.0.1/tcp/0"]));
        assert_eq!(n.bootstrap, addrs(&[boot]), "-b dials -bootstrapPeers");
        let trusted = AutoRelay {
            relays: addrs(&[boot]),
            only_when_private: true,
        };
        assert_eq!(
            n.auto_relay,
            Some(trusted),
            "the bootstrap peers are the relays"
        );
        assert_eq!(n.conn_manager.map(|l| l.high), Some(400));
        assert_eq!(n.max_connections, 800, "room above -connHi to trim from");
        assert_eq!(n.state_file, None);
    }

    #[test]
    fn go_flags_turning_things_off() {
        let boot = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzv1Tdt7WXkVDsnB3nSyZHrVVjDjHuvx5EQzz2qrG7Vb";
        let s = settings(&[
            &format!("-bootstrapPeers={boot}"),
            "-relay=false",
            "-autoRelay",
            "-noListenAddrs",
            "--data-dir=/d",
        ])
        .unwrap();
        assert!(!s.scratch);
        assert_eq!(s.key_file, Some(PathBuf::from("/d/identity.key")));
        let n = &s.node;
        assert!(
            n.bootstrap.is_empty(),
            "without -b the bootstrap peers are not dialed"
        );
        assert!(n.listen.is_empty());
        assert!(!n.relay_client && n.relay_service.is_none() && n.auto_relay.is_none());
        assert_eq!(n.state_file, Some(PathBuf::from("/d/node-state.json")));
        assert_eq!(n.target_peers, 0);
    }

    #[test]
    fn peer_rate_flags() {
        use hive_node::limits::PeerLimits;
        assert_eq!(settings(&[]).unwrap().node.peer_limits, PeerLimits::DEFAULT);
        let n = settings(&[
            "--direct-rate",
            "5",
            "--direct-bytes-rate",
            "1000",
            "--sync-rate",
            "0",
        ])
        .unwrap()
        .node;
        assert_eq!(n.peer_limits.direct_msgs.per_sec, 5.0);
        // One largest message always fits the byte bucket.
        assert_eq!(n.peer_limits.direct_bytes.burst, n.max_message_size as f64);
        assert!(n.peer_limits.sync_requests.is_unlimited());
        let Err(err) = settings(&["--direct-burst", "inf"]) else {
            panic!("--direct-burst inf accepted");
        };
        assert!(err.to_string().contains("--direct-burst"), "{err}");
    }
}
