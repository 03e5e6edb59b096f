//! `hive`: the Hive host and its command-line client.
//!
//! `hive up` supervises one `hive-p2pd` daemon (which alone speaks libp2p)
//! and serves the HTTP/WebSocket API; the other subcommands are clients of
//! that API.

mod api;
mod catch_up;
mod cli;
mod client_cmd;
mod doctor;
mod group_commit;
mod hive;
mod inbound;
mod inbox;
mod ipc_client;
mod ipc_stats;
mod kinds;
mod metrics;
mod outbox;
mod peer_guard;
mod state;
mod store;
mod supervisor;
mod tension;
mod trace;
mod up;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, LogFormat};

fn init_logging(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_host = matches!(cli.command, Command::Up(_));
    init_logging(cli.log_format, if is_host { "info" } else { "warn" });

    let result = match cli.command {
        Command::Up(args) => up::run(*args, cli.log_format).await,
        Command::Doctor(args) => doctor::run(args, &cli.api).await,
        other => client_cmd::run(other, &cli.api).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_host {
                tracing::error!(error = format!("{e:#}"), "hive up failed");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
