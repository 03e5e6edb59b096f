//! Command line of `hive-p2pd`.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use libp2p::Multiaddr;

/// The Hive p2p daemon: one libp2p node behind an authenticated WebSocket IPC.
///
/// The IPC token comes from the HIVE_IPC_TOKEN environment variable, else from
/// --token-file, else a new one is written to <data-dir>/ipc.token (mode 0600).
/// It is never taken from the command line, where `ps` would show it.
#[derive(Debug, Parser)]
#[command(
    name = "hive-p2pd",
    version,
    about = "The Hive p2p daemon: one libp2p node behind an authenticated WebSocket IPC.",
    long_about = None
)]
pub struct Cli {
    /// Directory for the identity key, the generated token, and what the
    /// node remembers across restarts (node-state.json: the ports it bound,
    /// the peers it knew), so that a restarted daemon binds the same ports
    /// and dials its peers again by itself.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Ed25519 identity (libp2p protobuf encoding); created with mode 0600 if absent.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Address to listen on (repeatable). Default: TCP and QUIC on every interface, random ports.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,

    /// Peer to dial at start and add to the DHT (repeatable). There are no public defaults.
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,

    /// Address at which others reach this node (repeatable), for example a
    /// public address forwarded to a listen address. Taken as confirmed:
    /// it is announced to peers and lets a relay service offer itself.
    #[arg(long = "announce", value_name = "MULTIADDR")]
    pub announce: Vec<Multiaddr>,

    /// Serve as a circuit relay (v2) for other peers, even before an
    /// external address is confirmed.
    #[arg(long)]
    pub relay_service: bool,

    /// With --relay-service: how long a slot granted to a peer lasts unless
    /// the peer renews it (peers renew a minute before the end, or after
    /// 30 s at the soonest).
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub relay_reservation_secs: u64,

    /// Keep a slot on this relay (repeatable; RELAY-ADDR/p2p/RELAY-ID), so
    /// that peers that cannot dial this node reach it at
    /// RELAY-ADDR/p2p/RELAY-ID/p2p-circuit/p2p/THIS-ID. Slots are renewed
    /// before they end and taken again after the relay comes back.
    #[arg(long = "relay", value_name = "MULTIADDR")]
    pub relays: Vec<Multiaddr>,

    /// Run AutoNAT: ask peers to dial the listen addresses back and do the
    /// same for them; confirmed addresses are announced.
    #[arg(long)]
    pub autonat: bool,

    /// Ask the local gateway (UPnP IGD) to forward the listen ports.
    #[arg(long)]
    pub upnp: bool,

    /// Neither dial peers through relays nor accept circuits from them.
    #[arg(long)]
    pub no_relay_client: bool,

    /// Turn off mDNS discovery of peers on the local network.
    #[arg(long)]
    pub no_mdns: bool,

    /// Where the IPC listens: a loopback `IP:PORT` (port 0 = any free port) or `unix:/path`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub ipc: String,

    /// File holding the IPC token (used when HIVE_IPC_TOKEN is not set).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Largest gossipsub message and direct message payload, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = hive_node::DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,

    /// Largest IPC frame answered normally; larger frames get a frame_too_large error.
    #[arg(long, value_name = "BYTES", default_value_t = hive_proto::DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,

    /// Most established libp2p connections in total.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_connections: u32,

    /// Hours of received messages kept in the history (`history.db` in the
    /// data directory), from which clients resume after a gap.
    #[arg(long, value_name = "HOURS", default_value_t = 24)]
    pub history_hours: u64,

    /// Most messages kept in the history per topic (and for direct messages).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub history_per_topic: u64,

    /// Most bytes kept in the history in all (payloads and what is stored
    /// with them); past it the oldest entries, of any topic, are evicted
    /// and counted in `status` (0 = no budget).
    #[arg(long, value_name = "BYTES", default_value_t = hive_node::history::DEFAULT_MAX_BYTES)]
    pub history_max_bytes: u64,

    /// When a received message counts as kept: `normal`, once its batch is
    /// committed to the history (survives a kill of the daemon, not a power
    /// loss); `fsync`, once that commit is also fsynced. A direct message is
    /// acknowledged to its sender only then. `hive up --durability fsync`
    /// passes `fsync` to its daemons.
    #[arg(long, value_enum, default_value_t = Durability::Normal)]
    pub durability: Durability,

    /// Direct messages a second accepted from one peer; past it (and a
    /// burst of --direct-burst) its messages are refused with `rate_limited`
    /// (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = hive_node::limits::PeerLimits::DEFAULT.direct_msgs.per_sec)]
    pub direct_rate: f64,

    /// Direct messages one peer may send at once above --direct-rate.
    #[arg(long, value_name = "N", default_value_t = hive_node::limits::PeerLimits::DEFAULT.direct_msgs.burst)]
    pub direct_burst: f64,

    /// Direct message payload bytes a second accepted from one peer (bursts
    /// of twice that, and always of one largest message; 0 = no limit).
    #[arg(long, value_name = "BYTES", default_value_t = hive_node::limits::PeerLimits::DEFAULT.direct_bytes.per_sec as u64)]
    pub direct_bytes_rate: u64,

    /// History-sync pages a second served to one peer (bursts of ten times
    /// that); past it the peer's sync stream is closed (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = hive_node::limits::PeerLimits::DEFAULT.sync_requests.per_sec)]
    pub sync_rate: f64,

    /// Connections kept at least (the connection manager's low watermark):
    /// below it the node dials peers its routing table knows.
    #[arg(long, value_name = "N", default_value_t = hive_node::connmgr::Limits::HIVE.low)]
    pub conn_low: usize,

    /// Connections past which the surplus over it is closed, sparing
    /// gossipsub mesh peers, relays and recent connections.
    #[arg(long, value_name = "N", default_value_t = hive_node::connmgr::Limits::HIVE.high)]
    pub conn_high: usize,

    /// Seconds a new connection is spared from trimming.
    #[arg(long, value_name = "SECS", default_value_t = hive_node::connmgr::Limits::HIVE.grace.as_secs())]
    pub conn_grace_secs: u64,

    /// Keep every connection (no watermarks, no trimming).
    #[arg(long)]
    pub no_conn_manager: bool,

    /// Peers this node tries to stay connected to: while fewer are
    /// connected, the peers it remembers (in <data-dir>/node-state.json) are
    /// dialed with backoff. Bootstrap peers are always kept connected.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub target_peers: usize,

    /// Exit when the parent process dies (also enabled by HIVE_EXIT_WITH_PARENT=1).
    #[arg(long)]
    pub exit_with_parent: bool,

    /// Leave `reproduce` to the host that supervises this daemon: push a
    /// `reproduce` event instead of starting children here.
    #[arg(long)]
    pub children_via_host: bool,

    /// Threads that run the daemon's async work (default: one per core).
    /// A host gives its child nodes one each: many daemons on one machine
    /// share its cores, and every thread beside the first adds wake-ups to
    /// an idle daemon.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub worker_threads: Option<u16>,

    /// Most child nodes this daemon starts itself (without a host).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_children: usize,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Cli {
    /// The connection manager's limits, or `None` with --no-conn-manager.
    pub fn conn_limits(&self) -> anyhow::Result<Option<hive_node::connmgr::Limits>> {
        if self.no_conn_manager {
            return Ok(None);
        }
        let limits = hive_node::connmgr::Limits {
            low: self.conn_low,
            high: self.conn_high,
            grace: std::time::Duration::from_secs(self.conn_grace_secs),
            trim_to: hive_node::connmgr::TrimTo::High,
        };
        limits
            .check()
            .map_err(|e| anyhow::anyhow!("--conn-low/--conn-high: {e}"))?;
        if u32::try_from(limits.high).map_or(true, |h| h > self.max_connections) {
            anyhow::bail!(
                "--conn-high ({}) is above --max-connections ({})",
                limits.high,
                self.max_connections
            );
        }
        Ok(Some(limits))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `--durability`: when the history's commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// SQLite WAL, `synchronous = NORMAL`.
    Normal,
    /// SQLite WAL, `synchronous = FULL`: every commit is fsynced.
    Fsync,
}
