//! `hbench`: the load generators of bench/run that need more speed than
//! Python gives. Each prints one JSON object on stdout.
//!
//! ```text
//! hbench echo-server                      a bare tokio-tungstenite WebSocket echo server (prints its URL)
//! hbench ipc-rtt --url U [--token T] --inflight N --count C [--op status]
//!                                         request/response round trips (`status`) over a WebSocket
//! hbench ipc-rtt --url U --url2 U2 ...    one at a time, alternating between two servers
//! hbench ipc-pubsub --pub-url U --sub-url U[,U...] --token T [--dial ADDR] --topic T [sweep options]
//!                                         publish on one daemon's IPC, receive on the others'
//! hbench control-pubsub --pub-sock PATH --sub-socks PATH[,PATH...] --topic T [sweep options]
//!                                         the same through go-libp2p-daemon's control protocol
//!                                         (PUBLISH on a new connection each, up to 64 at once, as
//!                                         p2pclient does; SUBSCRIBE streams), for any daemon
//! hbench host-pubsub --pub-api URL --sub-api URL --topic T [sweep options]
//!                                         POST publish on one host, receive on another's /api/events
//! hbench host-accept --api URL [--topic T --conns 64 --secs 5 --size 256]
//!                                         POSTs accepted per second with --conns in flight, and their latency
//! sweep options: --size 256 --lat-count 1000 --lat-rate 200 --rates 500,1000,... --secs 3 --grace 3
//!                --burst N (then N messages as fast as possible) --conns 16 (HTTP connections)
//! ```
//!
//! One module per concern: `ipc` speaks the Hive IPC through `hive-proto`,
//! `control` go's control protocol, `http` the host's API; `sweep` is the
//! pubsub rate ladder all three pubsub generators share.

mod args;
mod control;
mod control_pubsub;
mod echo;
mod host_accept;
mod host_pubsub;
mod http;
mod ipc;
mod ipc_pubsub;
mod rtt;
mod sweep;

use args::Args;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let cmd = argv.get(1).cloned().unwrap_or_default();
    let args = Args::parse(&argv[2.min(argv.len())..]);
    let rt = if args.get("threads") == Some("1") || cmd != "echo-server" {
        // Load generators run on one thread: the machine has two cores and
        // the daemon under test needs the other one.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    let result = rt.block_on(async {
        match cmd.as_str() {
            "echo-server" => echo::echo_server().await,
            "ipc-rtt" => rtt::ipc_rtt(&args).await,
            "ipc-pubsub" => ipc_pubsub::ipc_pubsub(&args).await,
            "host-pubsub" => host_pubsub::host_pubsub(&args).await,
            "host-accept" => host_accept::host_accept(&args).await,
            "control-pubsub" => control_pubsub::control_pubsub(&args).await,
            _ => Err(format!("unknown command {cmd:?}; see the source for usage").into()),
        }
    });
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("hbench {cmd}: {e}");
            std::process::exit(1);
        }
    }
}
