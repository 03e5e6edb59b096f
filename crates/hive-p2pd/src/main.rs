//! `hive-p2pd`: the Hive p2p daemon.
//!
//! Start-up order matters to clients: identity, token, node (every listen
//! address bound), IPC endpoint bound, and only then the one ready line on
//! stdout. A client that has read the ready line can connect at once.

mod children;
mod cli;
mod compat;
mod control;
mod identity;
mod ipc;
mod metrics_http;
mod parent;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use hive_node::config::{AutoRelay, Reachability, RelayService};
use hive_node::{Node, NodeConfig};
use hive_proto::{ReadyLine, ENV_EXIT_WITH_PARENT, ENV_IPC_TOKEN, PROTOCOL_VERSION};
use libp2p::Multiaddr;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use cli::{Cli, LogFormat};

fn main() -> ExitCode {
    // go-libp2p-daemon's single-dash flags are taken out first; the rest is ours.
    let (args, go) = match compat::split_args(std::env::args().collect()) {
        Ok(split) => split,
        Err(e) => {
            eprintln!("hive-p2pd: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, go)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("hive-p2pd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr only: stdout belongs to the ready line.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("hive-p2pd")
}

fn default_listen() -> Vec<Multiaddr> {
    ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect()
}

async fn run(mut cli: Cli, go: Option<compat::GoOptions>) -> Result<()> {
    if let Some(go) = &go {
        for notice in &go.notices {
            tracing::info!("{notice}");
        }
        // The go daemon's defaults: no mDNS, its listen addresses and key.
        cli.no_mdns = true;
        if cli.listen.is_empty() {
            cli.listen = go.host_addrs.clone();
        }
        // As go's daemon: -bootstrapPeers are dialed only with -b (they
        // are still the default trusted relays).
        if go.bootstrap_dial {
            cli.bootstrap.extend(go.bootstrap.iter().cloned());
        }
        if cli.key_file.is_none() {
            cli.key_file = go.key_file.clone();
        }
        // go's -connHi is where trimming starts, not a cap: leave room
        // above it for the manager to trim from.
        if go.conn_manager {
            let room = u32::try_from(go.conn_limits.high.saturating_mul(2)).unwrap_or(u32::MAX);
            cli.max_connections = cli.max_connections.max(room);
        }
        cli.announce.extend(go.announce.iter().cloned());
        cli.no_relay_client |= !go.relay;
    }
    let exit_with_parent =
        cli.exit_with_parent || std::env::var(ENV_EXIT_WITH_PARENT).is_ok_and(|v| v == "1");
    let parent = if exit_with_parent {
        Some(parent::arm().context("the parent process is already gone")?)
    } else {
        None
    };

    // Like the go daemon, a daemon started with its flags and no `-id` gets
    // a fresh identity each time and keeps nothing: harnesses start several
    // side by side and expect distinct peers.
    let ephemeral = go.is_some() && cli.key_file.is_none() && cli.data_dir.is_none();
    let data_dir = match (&cli.data_dir, ephemeral) {
        (Some(dir), _) => dir.clone(),
        (None, true) => std::env::temp_dir().join(format!("hive-p2pd-{}", std::process::id())),
        (None, false) => default_data_dir(),
    };
    identity::ensure_private_dir(&data_dir)?;
    let _cleanup = ephemeral.then(|| RemoveOnDrop(data_dir.clone()));
    let keypair = if ephemeral {
        libp2p::identity::Keypair::generate_ed25519()
    } else {
        let key_file = cli
            .key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("identity.key"));
        identity::load_or_create_keypair(&key_file)?
    };
    let token = identity::load_token(
        std::env::var(ENV_IPC_TOKEN).ok(),
        cli.token_file.as_deref(),
        &data_dir,
    )?;

    let mut config = NodeConfig::new(keypair);
    config.listen = if go.as_ref().is_some_and(|g| g.no_listen) {
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
    config.history = hive_node::history::HistoryConfig {
        path: Some(hive_node::history::default_path(&data_dir)),
        max_age: std::time::Duration::from_secs(cli.history_hours.saturating_mul(3600)),
        max_per_topic: cli.history_per_topic.max(1),
    };
    compat::check_relay_addrs("--relay", &cli.relays)?;
    match &go {
        // go's daemon: a relay service (HOP) from the start unless turned
        // off, whatever the reachability (its `-relay` runs go-libp2p's
        // relay unconditionally); autorelay reserves on the trusted relays,
        // by default the bootstrap peers, while the node is not reachable.
        Some(go) => {
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
            config.autonat |= go.autonat;
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
        None => {
            config.conn_manager = cli.conn_limits()?;
            if cli.relay_service {
                config.reachability = Reachability::Public;
                config.relay_service = Some(RelayService::default());
            }
        }
    }
    if !cli.relays.is_empty() {
        config.auto_relay = Some(AutoRelay {
            relays: cli.relays.clone(),
            only_when_private: false,
        });
    }
    let node = Node::start(config).await?;

    let listener = ipc::bind(&cli.ipc).await?;
    let ipc_url = listener.url()?;
    let ready = ReadyLine {
        event: "ready".into(),
        ipc: ipc_url.clone(),
        peer_id: node.peer_id().to_string(),
        listen_addrs: node.initial_listen_addrs().to_vec(),
        pid: std::process::id(),
        daemon_version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: PROTOCOL_VERSION,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let reproducer = if cli.children_via_host {
        children::Reproducer::ViaHost
    } else {
        children::Reproducer::Own(
            children::Children::new(
                data_dir.clone(),
                cli.no_mdns,
                cli.max_children,
                shutdown_rx.clone(),
            )
            .context("cannot locate the hive-p2pd executable for children")?,
        )
    };
    let ctx = Arc::new(ipc::Context {
        node: node.clone(),
        reproducer,
        token,
        max_frame_bytes: cli.max_frame_bytes,
    });
    let (persistent_open, persistent_watch) = control::persistent_counter();
    let control = match &go {
        Some(go) => {
            let (control, bound) = control::bind(&go.control).await?;
            let settings = control::Settings {
                max_msg: go.persistent_max_msg,
                open: persistent_open,
                connmgr: control::connmgr::ConnManager::new(&node, go.conn_manager),
            };
            tokio::spawn(control.serve(node.clone(), settings, shutdown_rx.clone()));
            Some(bound)
        }
        None => None,
    };
    let idle_timeout = go.as_ref().map(|g| g.idle_timeout).unwrap_or_default();
    if let Some(addr) = go.as_ref().and_then(|g| g.metrics_addr) {
        metrics_http::spawn(addr, node.clone()).await?;
    }
    let server = tokio::spawn(listener.serve(ctx, shutdown_rx));

    {
        let mut stdout = std::io::stdout().lock();
        match (&go, &control) {
            // The lines harnesses written for the go daemon wait for.
            (Some(go), Some(bound)) => {
                if !go.quiet {
                    writeln!(stdout, "Control socket: {}", bound.display())?;
                    writeln!(stdout, "Peer ID: {}", ready.peer_id)?;
                    writeln!(stdout, "Peer Addrs:")?;
                    for addr in &ready.listen_addrs {
                        let bare = addr.rsplit_once("/p2p/").map(|(a, _)| a).unwrap_or(addr);
                        writeln!(stdout, "{bare}")?;
                    }
                }
            }
            _ => writeln!(stdout, "{}", serde_json::to_string(&ready)?)?,
        }
        stdout.flush()?;
    }
    tracing::info!(peer_id = %ready.peer_id, ipc = %ipc_url, addrs = ?ready.listen_addrs, "ready");

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let parent_gone = async {
        match parent {
            Some(pid) => parent::watch(pid).await,
            None => std::future::pending().await,
        }
    };
    let idle = async {
        if idle_timeout.is_zero() {
            std::future::pending().await
        } else {
            control::idle(persistent_watch, idle_timeout).await
        }
    };
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = idle => tracing::info!(?idle_timeout, "-idleTimeout: no persistent connection for that long; shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
        _ = node.shutdown_requested() => tracing::info!("shutdown requested over the IPC"),
        _ = parent_gone => tracing::warn!("parent process died: shutting down"),
    }
    // Before the connections close: the peers connected now are the ones a
    // restart should dial.
    if tokio::time::timeout(Duration::from_secs(2), node.save_memory())
        .await
        .is_err()
    {
        tracing::warn!("node state not saved within 2 s of the stop");
    }
    let _ = shutdown_tx.send(true);
    // Give connections a moment to send their close frames (and the
    // shutdown op its answer).
    let _ = tokio::time::timeout(Duration::from_millis(500), server).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}

/// Removes a directory when dropped (an ephemeral daemon's scratch space).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
