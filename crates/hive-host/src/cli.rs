//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hive",
    version,
    about = "Hive: a peer-to-peer node host and its client"
)]
pub struct Cli {
    /// Format of the logs written to stderr (also passed to the daemon).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Base URL of a running host, for the client commands (before or after the command).
    #[arg(
        long,
        global = true,
        env = "HIVE_API",
        default_value = "http://127.0.0.1:7700"
    )]
    pub api: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host: supervise the daemon and serve the HTTP API.
    Up(Box<UpArgs>),
    /// Check what would stop a node from starting or meeting its peers
    /// (binaries, data directory, ports, bootstrap peers, a running host),
    /// and say what to do. Exit status 1 when a check fails.
    Doctor(crate::doctor::DoctorArgs),
    /// Show the host's status (pretty JSON).
    Status,
    /// Start child nodes that join the network through their parent.
    Spawn {
        /// Parent node id [default: the first node, n0].
        #[arg(long)]
        parent: Option<String>,
        /// How many children (1 to 64).
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Show the host's nodes as a tree, with state, peers and tension.
    Nodes {
        /// Print the raw JSON list instead.
        #[arg(long)]
        json: bool,
    },
    /// Stop a node and every node below it, and forget them.
    StopNode {
        /// Node id, as `hive nodes` shows it.
        id: String,
    },
    /// List connected peers.
    Peers,
    /// Dial a multiaddr.
    Dial {
        /// e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
        addr: String,
    },
    /// Publish a message on a topic (reads stdin when MESSAGE is absent).
    Publish {
        topic: String,
        message: Option<String>,
    },
    /// Subscribe to a topic and print its messages, one JSON line each.
    Subscribe {
        topic: String,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Send a direct message to a peer (reads stdin when MESSAGE is absent).
    Send {
        peer: String,
        message: Option<String>,
        /// Seconds to wait for the remote acknowledgement before returning
        /// with the message still queued (it is retried until its TTL).
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Print stored history: received messages (or direct, expired, failed), one page as JSON.
    Messages {
        /// Only this topic.
        #[arg(long)]
        topic: Option<String>,
        /// message, direct, expired or failed.
        #[arg(long, default_value = "message")]
        kind: String,
        /// Only entries after this cursor.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// The flags `hive up` and `hive doctor` share, so that doctor checks the
/// node `hive up` with the same flags would run.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct NodeArgs {
    /// Where the host keeps its state [default: <platform data dir>/hive].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP API; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub http: String,
    /// Multiaddr for the daemon to listen on (repeatable) [default: daemon's choice].
    #[arg(long)]
    pub listen: Vec<String>,
    /// Multiaddr of a bootstrap peer (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// Path of the daemon [default: hive-p2pd beside this executable].
    #[arg(long)]
    pub daemon_bin: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Disable mDNS discovery on the local network.
    #[arg(long)]
    pub no_mdns: bool,

    /// Keep a slot on this relay (repeatable; RELAY-ADDR/p2p/RELAY-ID), so
    /// that peers that cannot dial this host's nodes reach them through it.
    #[arg(long = "relay", value_name = "MULTIADDR")]
    pub relays: Vec<String>,

    /// Let the nodes serve as circuit relays for other peers.
    #[arg(long)]
    pub relay_service: bool,
    /// With --relay-service: how long a slot the nodes grant lasts unless
    /// its holder renews it (the daemon's default, an hour, when not given).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub relay_reservation_secs: Option<u64>,
    /// Require `Authorization: Bearer TOKEN` on every HTTP and WebSocket request
    /// (WebSockets may pass `?token=TOKEN`). Needed to bind a non-loopback address.
    #[arg(long, env = "HIVE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Another name this API may be reached by (repeatable): `NAME` (any
    /// port, e.g. behind a reverse proxy) or `NAME:PORT`. Requests whose Host
    /// is not loopback, the bound address or one of these get 403 (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "NAME[:PORT]")]
    pub allowed_hosts: Vec<String>,
    /// A web origin whose pages may change state and open WebSockets
    /// (repeatable, e.g. http://app.example:3000); it also gets CORS headers.
    /// The API's own origin is always allowed; other origins get 403.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,
    /// Read the API token from this file instead.
    #[arg(long, value_name = "PATH", conflicts_with = "api_token")]
    pub api_token_file: Option<PathBuf>,
    /// More API tokens with scopes, one `NAME:SCOPES:TOKEN` a line (SCOPES:
    /// read, write, admin, comma-separated; `#` starts a comment). The
    /// `--api-token` token has all scopes.
    #[arg(long, value_name = "PATH")]
    pub api_tokens_file: Option<PathBuf>,
    /// Largest message accepted by publish and send, in bytes (413 above).
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024)]
    pub max_message_size: usize,
    /// How long an undelivered direct message is retried before it is reported expired.
    #[arg(long, value_name = "SECS", default_value_t = 24 * 3600)]
    pub direct_ttl: u64,
    /// How long a publish that cannot go out (no peers in the topic) is retried.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub publish_ttl: u64,
    /// Most messages waiting in the outbox; beyond it the API answers 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_outbox: u64,
    /// Most concurrent `/api/events` WebSocket clients; more get 503.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_ws_clients: i64,
    /// Received messages are kept this long for replay (`/api/events?after=`, `/api/messages`).
    #[arg(long, value_name = "SECS", default_value_t = 7 * 24 * 3600)]
    pub retention_secs: u64,
    /// ...and at most this many.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub retention_count: u64,
    /// Start (or keep) a hive of this many nodes: the first one and its children.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub nodes: usize,
    /// Most nodes this host supervises [default: what the machine's memory holds, 4 to 256].
    #[arg(long, value_name = "N")]
    pub max_nodes: Option<usize>,
    /// Publish bare payloads by default, for networks with libp2p peers that
    /// are not Hive nodes (they see Hive's envelope bytes otherwise). Hive
    /// receivers then cannot drop a message re-sent after a crash as a
    /// duplicate. Per request: `?envelope=true|false`.
    #[arg(long)]
    pub plain_pubsub: bool,
    /// Connections each daemon keeps at least, dialing known peers below it
    /// (its connection manager's low watermark) [default: the daemon's, 8].
    #[arg(long, value_name = "N")]
    pub conn_low: Option<usize>,
    /// Connections past which each daemon closes the surplus down to
    /// --conn-low, sparing mesh, relay and recent peers [default: the daemon's, 16].
    #[arg(long, value_name = "N")]
    pub conn_high: Option<usize>,
    /// When an accepted publish or send is on disk. `normal`: the API answers
    /// once the message is in SQLite's WAL (it survives a crash or kill of
    /// the host, not a power loss or kernel crash). `fsync`: the API answers
    /// only after the WAL was fsynced (it survives power loss too); POSTs
    /// arriving together share one fsync.
    #[arg(long, value_enum, default_value_t = crate::store::Durability::Normal)]
    pub durability: crate::store::Durability,
    /// Connected peers a node should have; fewer raise its tension (0 = no target).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub peer_target: usize,
    /// Most payload bytes of received messages stored for one peer; past
    /// it that peer's oldest stored messages are evicted (and counted).
    #[arg(long, value_name = "BYTES", default_value_t = crate::peer_guard::InboxBudget::default().per_peer)]
    pub inbox_peer_bytes: u64,
    /// Most payload bytes of received messages stored in all; past it the
    /// oldest stored messages are evicted (and counted).
    #[arg(long, value_name = "BYTES", default_value_t = crate::peer_guard::InboxBudget::default().total)]
    pub inbox_max_bytes: u64,
    /// Direct messages a second each daemon accepts from one peer; past it
    /// (and --direct-burst) the sender gets `rate_limited` (0 = no limit)
    /// [default: the daemon's, 200].
    #[arg(long, value_name = "N")]
    pub direct_rate: Option<f64>,
    /// Direct messages one peer may send at once above --direct-rate
    /// [default: the daemon's, 400].
    #[arg(long, value_name = "N")]
    pub direct_burst: Option<f64>,
    /// Direct message payload bytes a second each daemon accepts from one
    /// peer [default: the daemon's, 8 MiB].
    #[arg(long, value_name = "BYTES")]
    pub direct_bytes_rate: Option<u64>,
    /// History-sync pages a second each daemon serves one peer [default:
    /// the daemon's, 20].
    #[arg(long, value_name = "N")]
    pub sync_rate: Option<f64>,
    /// Most bytes each daemon keeps in its history (`history.db`, what
    /// clients resume from); past it the oldest entries are evicted and
    /// counted (0 = no budget) [default: the daemon's, 1 GiB].
    #[arg(long, value_name = "BYTES")]
    pub history_max_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctor_reads_the_node_flags_exactly_as_up_does() {
        let flags = [
            "--data-dir",
            "/tmp/h",
            "--http",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/4001",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/4002/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
            "--daemon-bin",
            "/opt/hive-p2pd",
        ];
        let parse = |command: &str| {
            Cli::try_parse_from(["hive", command].into_iter().chain(flags)).expect(command)
        };
        let (Command::Up(up), Command::Doctor(doctor)) =
            (parse("up").command, parse("doctor").command)
        else {
            panic!("not up and doctor");
        };
        assert_eq!(up.node, doctor.node);
        assert_eq!(up.node.listen, ["/ip4/127.0.0.1/tcp/4001"]);
        assert_eq!(up.node.daemon_bin, Some(PathBuf::from("/opt/hive-p2pd")));
    }
}
