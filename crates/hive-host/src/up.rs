//! `hive up`: bind the API, start supervising the daemon, and shut both down
//! cleanly on SIGINT/SIGTERM.

use axum::serve::ListenerExt;
use std::future::IntoFuture;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiLimits, AppState};
use crate::cli::{LogFormat, UpArgs};
use crate::hive::{self, Hive, NodeTemplate};
use crate::supervisor::DaemonSettings;

/// How long the HTTP server may take to finish in-flight requests once the
/// daemon is stopped.
const HTTP_DRAIN: Duration = Duration::from_secs(3);

/// `hive up`: build the configuration, start, wait for a signal (or the
/// HTTP server's end), shut down.
pub async fn run(args: UpArgs, log_format: LogFormat) -> anyhow::Result<()> {
    let config = HostConfig::from_args(args, log_format)?;
    let host = Host::start(config).await?;
    host.wait().await;
    host.shutdown().await;
    tracing::info!("host stopped");
    Ok(())
}

/// Everything `hive up` needs, checked before anything starts.
struct HostConfig {
    /// `--http`, not yet bound.
    http: String,
    tokens: api::auth::Tokens,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    template: NodeTemplate,
    max_nodes: usize,
    /// `--nodes`: how many nodes to have once the stored ones are back.
    nodes: usize,
    max_message_size: usize,
    direct_ttl_ms: i64,
    publish_ttl_ms: i64,
    max_outbox: u64,
    max_ws_clients: i64,
    plain_pubsub: bool,
}

impl HostConfig {
    /// Read the token files and check the arguments; touches nothing but
    /// the files the arguments name.
    fn from_args(args: UpArgs, log_format: LogFormat) -> anyhow::Result<Self> {
        check_peer_limits(&args)?;
        let data_dir = match args.node.data_dir {
            Some(dir) => dir,
            None => dirs::data_dir()
                .map(|d| d.join("hive"))
                .context("no platform data directory; pass --data-dir")?,
        };
        let tokens = read_tokens(
            args.api_token.as_deref(),
            args.api_token_file.as_deref(),
            args.api_tokens_file.as_deref(),
        )?;
        check_exposure(&args.node.http, !tokens.is_empty())?;
        // Caught here, not by each daemon start (which the supervisor would
        // retry forever).
        if let Some(relay) = args.relays.iter().find(|r| !r.contains("/p2p/")) {
            bail!("--relay {relay}: the address needs its /p2p/RELAY-ID part");
        }
        let daemon_bin = resolve_daemon_bin(args.node.daemon_bin)?;
        Ok(HostConfig {
            http: args.node.http,
            tokens,
            allowed_hosts: args.allowed_hosts,
            allowed_origins: args.allowed_origins,
            template: NodeTemplate {
                daemon: DaemonSettings {
                    daemon_bin,
                    no_mdns: args.no_mdns,
                    log_format: log_format.as_str().to_owned(),
                    peer_target: args.peer_target,
                    relays: args.relays,
                    relay_service: args.relay_service,
                    relay_reservation_secs: args.relay_reservation_secs,
                    conn_low: args.conn_low,
                    conn_high: args.conn_high,
                    peer_limits: crate::peer_guard::PeerLimits {
                        rates: crate::peer_guard::DaemonRates {
                            direct_rate: args.direct_rate,
                            direct_burst: args.direct_burst,
                            direct_bytes_rate: args.direct_bytes_rate,
                            sync_rate: args.sync_rate,
                        },
                        budget: crate::peer_guard::InboxBudget {
                            per_peer: args.inbox_peer_bytes,
                            total: args.inbox_max_bytes,
                        },
                        history_max_bytes: args.history_max_bytes,
                    },
                    worker_threads: None,
                },
                data_dir,
                listen: args.node.listen,
                bootstrap: args.node.bootstrap,
                retention: Duration::from_secs(args.retention_secs),
                retention_count: args.retention_count,
                durability: args.durability,
            },
            max_nodes: args.max_nodes.unwrap_or_else(hive::default_max_nodes),
            nodes: args.nodes,
            max_message_size: args.max_message_size,
            direct_ttl_ms: (args.direct_ttl as i64).saturating_mul(1000),
            publish_ttl_ms: (args.publish_ttl as i64).saturating_mul(1000),
            max_outbox: args.max_outbox,
            max_ws_clients: args.max_ws_clients,
            plain_pubsub: args.plain_pubsub,
        })
    }
}

/// `--api-token` (or its file) and `--api-tokens-file`.
fn read_tokens(
    token: Option<&str>,
    token_file: Option<&Path>,
    tokens_file: Option<&Path>,
) -> anyhow::Result<api::auth::Tokens> {
    let api_token = match (token, token_file) {
        (Some(t), _) => Some(t.trim().to_owned()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the API token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    }
    .filter(|t| !t.is_empty());
    let mut tokens = api::auth::Tokens::new(api_token);
    if let Some(path) = tokens_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the API tokens file {}", path.display()))?;
        tokens
            .add_file(&text)
            .with_context(|| format!("--api-tokens-file {}", path.display()))?;
    }
    Ok(tokens)
}

/// A running host: what `start` started, for `wait` and `shutdown`.
struct Host {
    shutdown: CancellationToken,
    hive: Hive,
    server: JoinHandle<std::io::Result<()>>,
    signals: JoinHandle<()>,
    /// Restoring the stored nodes and growing to `--nodes`.
    grow: JoinHandle<()>,
}

impl Host {
    /// Create the data directory, bind the API, start the first node and
    /// serve.
    async fn start(config: HostConfig) -> anyhow::Result<Host> {
        let data_dir = &config.template.data_dir;
        let daemon_dir = data_dir.join("daemon");
        std::fs::create_dir_all(&daemon_dir)
            .with_context(|| format!("cannot create {}", daemon_dir.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} private", data_dir.display()))?;
        }
        let listener = TcpListener::bind(&config.http)
            .await
            .with_context(|| format!("cannot bind the HTTP API on {}", config.http))?;
        let local = listener
            .local_addr()
            .context("cannot read the HTTP listener's address")?;
        let guard = api::guard::Policy::new(local, &config.allowed_hosts, &config.allowed_origins)?;
        announce(&format!("http://{local}"))?;
        tracing::info!(http = %local, data_dir = %data_dir.display(), "host listening");

        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(watch_signals(shutdown.clone()));
        let hive = Hive::new(config.template, config.max_nodes, shutdown.clone());
        hive.start_root()
            .map_err(|e| anyhow::anyhow!("cannot start the first node: {e}"))?;
        let grow = {
            // Stored nodes first, then as many new ones as `--nodes` asks for.
            let hive = hive.clone();
            let wanted = config.nodes;
            tokio::spawn(async move {
                hive.restore().await;
                grow(&hive, wanted).await;
            })
        };
        let app = api::router(AppState {
            hive: hive.clone(),
            shutdown: shutdown.clone(),
            limits: Arc::new(ApiLimits {
                tokens: config.tokens,
                max_message_size: config.max_message_size,
                direct_ttl_ms: config.direct_ttl_ms,
                publish_ttl_ms: config.publish_ttl_ms,
                max_outbox: config.max_outbox,
                max_ws_clients: config.max_ws_clients,
                plain_pubsub: config.plain_pubsub,
                guard,
            }),
        });
        // TCP_NODELAY on every API connection: with Nagle, an event frame
        // written while the previous one waits for its (delayed) ACK sat for
        // up to 40 ms, so at a calm 200 messages/s an `/api/events` client
        // got them 1-48 ms late (p50 16.5 ms) instead of about 1 ms.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on an API connection");
            }
        });
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        let server = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let served = server.await;
                shutdown.cancel();
                served
            })
        };
        Ok(Host {
            shutdown,
            hive,
            server,
            signals,
            grow,
        })
    }

    /// Until SIGINT/SIGTERM, or until the HTTP server ends by itself (an
    /// error), which shuts the host down too.
    async fn wait(&self) {
        self.shutdown.cancelled().await;
    }

    /// Stop every daemon, then the HTTP server, and join every task `start`
    /// started: on return no daemon is left.
    async fn shutdown(self) {
        self.shutdown.cancel();
        // A spawn waiting for its node would otherwise hold on for a minute.
        self.grow.abort();
        if let Err(e) = self.grow.await {
            if !e.is_cancelled() {
                tracing::error!(error = %e, "node restore task failed");
            }
        }
        self.hive.stopped().await;
        let mut server = self.server;
        match tokio::time::timeout(HTTP_DRAIN, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
            Err(_) => {
                tracing::warn!("HTTP connections still open after {HTTP_DRAIN:?}; closing them");
                server.abort();
                let _ = server.await;
            }
        }
        if let Err(e) = self.signals.await {
            tracing::error!(error = %e, "signal task failed");
        }
    }
}

/// The peer-limit flags, checked at start: each daemon would refuse bad
/// rates at every restart, and a budget below one message or one peer's
/// share would evict everything at once.
fn check_peer_limits(args: &UpArgs) -> anyhow::Result<()> {
    if args.inbox_peer_bytes < args.max_message_size as u64 {
        bail!(
            "--inbox-peer-bytes {} is below --max-message-size {}: a peer's every message would be evicted at once",
            args.inbox_peer_bytes,
            args.max_message_size
        );
    }
    // Caught here, as the daemon would refuse them at every start.
    for (flag, rate) in [
        ("--direct-rate", args.direct_rate),
        ("--direct-burst", args.direct_burst),
        ("--sync-rate", args.sync_rate),
    ] {
        if rate.is_some_and(|r| !r.is_finite() || r < 0.0) {
            bail!("{flag} must be a number of at least 0 (0 = no limit)");
        }
    }
    // The daemon's own largest message: the host does not change it.
    const DAEMON_MAX_MESSAGE: u64 = 1 << 20;
    if let Some(n) = args
        .history_max_bytes
        .filter(|n| *n != 0 && *n < DAEMON_MAX_MESSAGE)
    {
        bail!("--history-max-bytes {n} is below the daemon's largest message ({DAEMON_MAX_MESSAGE} bytes): every message would be evicted as it arrives (0 = no budget)");
    }
    if args.inbox_max_bytes < args.inbox_peer_bytes {
        bail!(
            "--inbox-max-bytes {} is below --inbox-peer-bytes {}: the total budget must hold at least one peer's",
            args.inbox_max_bytes,
            args.inbox_peer_bytes
        );
    }
    Ok(())
}

/// Refuse to expose the API beyond this machine without a token.
fn check_exposure(http: &str, has_token: bool) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> = http
        .to_socket_addrs()
        .with_context(|| format!("--http {http:?} is not a HOST:PORT address"))?
        .collect();
    if addrs.iter().any(|a| !a.ip().is_loopback()) && !has_token {
        bail!(
            "refusing to serve the API on {http} without an API token: anyone who can reach it could \
             publish and read messages. Pass --api-token (or HIVE_API_TOKEN / --api-token-file), \
             or bind 127.0.0.1."
        );
    }
    Ok(())
}

/// `hive up --nodes N`: start children of the first node until the host has
/// `wanted` nodes, printing progress on stderr while they come up.
async fn grow(hive: &Hive, wanted: usize) {
    let have = hive.views().len();
    if wanted <= have {
        return;
    }
    // Children join through the first node: it must be up first.
    if !hive.wait_running_id(hive::ROOT_ID).await {
        eprintln!("hive: the first node is not running; not starting more nodes");
        return;
    }
    let missing = wanted - have;
    eprintln!("hive: starting {missing} more node(s) for --nodes {wanted}");
    let mut done = 0;
    while done < missing {
        let batch = (missing - done).min(hive::start_window()) as u32;
        match hive.spawn(None, Some(batch)).await {
            Ok(nodes) => {
                for node in nodes {
                    done += 1;
                    eprintln!(
                        "hive: node {}/{wanted} {} {} ({})",
                        have + done,
                        node.id,
                        node.state,
                        node.peer_id
                    );
                }
            }
            Err(e) => {
                eprintln!("hive: cannot start more nodes: {e}");
                return;
            }
        }
    }
    eprintln!("hive: all {wanted} nodes started");
}

/// The one line on stdout: tests and scripts read it to find the port.
fn announce(http: &str) -> anyhow::Result<()> {
    let line = serde_json::json!({"event": "listening", "http": http});
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("cannot write to stdout")?;
    out.flush().context("cannot flush stdout")?;
    Ok(())
}

fn resolve_daemon_bin(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(path) => path,
        None => std::env::current_exe()
            .context("cannot locate the hive executable")?
            .parent()
            .context("the hive executable has no parent directory")?
            .join("hive-p2pd"),
    };
    if !path.is_file() {
        bail!(
            "daemon binary {} not found; build hive-p2pd next to hive or pass --daemon-bin PATH",
            path.display()
        );
    }
    Ok(path)
}

async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        _ = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn config(extra: &[&str]) -> anyhow::Result<HostConfig> {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().to_str().expect("utf-8 temp path").to_owned();
        let mut argv = vec!["hive", "up", "--data-dir", &data];
        if !extra.contains(&"--daemon-bin") {
            argv.extend(["--daemon-bin", "/bin/sh"]);
        }
        argv.extend_from_slice(extra);
        let Command::Up(args) = Cli::try_parse_from(argv)?.command else {
            unreachable!("parsed `hive up`");
        };
        HostConfig::from_args(*args, LogFormat::Text)
    }

    #[test]
    fn an_exposed_api_needs_a_token_and_a_relay_its_peer_id() {
        let err = config(&["--http", "0.0.0.0:0"]).err().expect("refused");
        assert!(err.to_string().contains("without an API token"), "{err}");
        let ok = config(&["--http", "0.0.0.0:0", "--api-token", " secret "]).expect("accepted");
        assert!(!ok.tokens.is_empty());
        let err = config(&["--relay", "/ip4/127.0.0.1/tcp/1"])
            .err()
            .expect("refused");
        assert!(err.to_string().contains("/p2p/RELAY-ID"), "{err}");
        let err = config(&["--daemon-bin", "/nonexistent/hive-p2pd"])
            .err()
            .expect("refused");
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn ttls_become_milliseconds_and_the_node_template_takes_the_daemon_flags() {
        let c = config(&["--direct-ttl", "7", "--no-mdns", "--conn-low", "3"]).expect("ok");
        assert_eq!(c.direct_ttl_ms, 7000);
        assert!(c.template.daemon.no_mdns);
        assert_eq!(c.template.daemon.conn_low, Some(3));
    }

    #[test]
    fn peer_limits_are_checked_and_the_rates_passed_to_the_daemon() {
        let c = config(&[
            "--direct-rate",
            "5",
            "--sync-rate",
            "0",
            "--inbox-peer-bytes",
            "2000000",
            "--history-max-bytes",
            "3000000",
        ])
        .expect("ok");
        let limits = &c.template.daemon.peer_limits;
        assert_eq!(limits.budget.per_peer, 2_000_000);
        assert_eq!(
            limits.daemon_args(),
            [
                "--direct-rate",
                "5",
                "--sync-rate",
                "0",
                "--history-max-bytes",
                "3000000"
            ]
        );
        for (args, says) in [
            (&["--direct-rate", "NaN"][..], "--direct-rate"),
            (&["--inbox-peer-bytes", "1000"][..], "--max-message-size"),
            (&["--inbox-max-bytes", "2000000"][..], "--inbox-peer-bytes"),
            (&["--history-max-bytes", "1000"][..], "--history-max-bytes"),
        ] {
            let err = config(args).err().expect("refused");
            assert!(err.to_string().contains(says), "{args:?}: {err}");
        }
    }
}
