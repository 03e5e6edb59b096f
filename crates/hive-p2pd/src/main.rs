//! `hive-p2pd`: the Hive p2p daemon.
//!
//! `main` only builds the settings, starts the daemon, waits for a reason
//! to stop and shuts it down; each of those lives in its own module
//! (`settings`, `daemon`, `stop`, `ready`).

mod children;
mod cli;
mod compat;
mod control;
mod daemon;
mod dir_lock;
mod identity;
mod ipc;
mod metrics_http;
mod parent;
mod ready;
mod settings;
mod stop;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, LogFormat};
use settings::{Env, Settings};

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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.worker_threads {
        builder.worker_threads(usize::from(n));
    }
    let runtime = match builder.enable_all().build() {
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

/// The default log filter (`RUST_LOG` replaces it). webrtc-rs logs each
/// connection's state changes at info, a dozen lines per webrtc-direct
/// connection, and libp2p-webrtc each stream dropped: warnings only from
/// them by default.
const DEFAULT_LOG_FILTER: &str = "info,webrtc=warn,webrtc_ice=warn,webrtc_mdns=warn,\
    webrtc_dtls=warn,webrtc_sctp=warn,libp2p_webrtc=warn,libp2p_webrtc_utils=warn";

/// Logs go to stderr only: stdout belongs to the ready line.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(cli: Cli, go: Option<compat::GoOptions>) -> Result<()> {
    let settings = Settings::from_cli(cli, go, &Env::from_process())?;
    let mut daemon = daemon::Daemon::start(settings).await?;
    daemon.stopped().await?;
    daemon.shutdown().await;
    Ok(())
}
