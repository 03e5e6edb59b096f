//! The checks of `hive doctor`, one function per thing looked at.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::Check;
use crate::cli::NodeArgs;

/// How long one probe (a TCP connect, a request, `--version`) may take.
const PROBE: Duration = Duration::from_secs(3);

/// `hive up`'s own flags where they matter ([`NodeArgs`], one definition
/// for both), so that `hive doctor` checks the node that `hive up` with
/// these flags would run.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn all(args: &DoctorArgs, api: &str) -> Vec<Check> {
    let args = &args.node;
    let running = Running::probe(api).await;
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| dirs::data_dir().map(|d| d.join("hive")));
    let mut checks = vec![daemon_binary(args.daemon_bin.clone()).await];
    checks.extend(data_directory(data_dir.as_deref()));
    checks.push(http_port(&args.http, running.as_ref()));
    checks.extend(listen_ports(args, data_dir.as_deref(), running.as_ref()));
    for addr in &args.bootstrap {
        checks.push(bootstrap_peer(addr, running.as_ref()).await);
    }
    checks.extend(match &running {
        Some(running) => running.checks(),
        None => vec![Check::ok(
            "running host",
            format!("no host answers at {api}; checked what `hive up` would use"),
        )],
    });
    checks
}

/// `hive up`'s own rule: `--daemon-bin`, else `hive-p2pd` next to `hive`.
async fn daemon_binary(explicit: Option<PathBuf>) -> Check {
    const NAME: &str = "daemon binary";
    let path = match explicit.or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("hive-p2pd")))
    }) {
        Some(path) => path,
        None => {
            return Check::fail(
                NAME,
                "cannot locate the hive executable",
                "pass --daemon-bin PATH",
            )
        }
    };
    if !path.is_file() {
        return Check::fail(
            NAME,
            format!("{} not found", path.display()),
            "install hive-p2pd next to hive (cargo build --release, or pip install the hive-p2p wheel), or pass --daemon-bin PATH",
        );
    }
    let run = tokio::process::Command::new(&path)
        .arg("--version")
        .output();
    match tokio::time::timeout(PROBE, run).await {
        Ok(Ok(out)) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let ours = env!("CARGO_PKG_VERSION");
            if version.ends_with(ours) {
                Check::ok(NAME, format!("{} ({version})", path.display()))
            } else {
                Check::warn(
                    NAME,
                    format!("{} is {version}, this hive is {ours}", path.display()),
                    "use the hive-p2pd built with this hive (same version)",
                )
            }
        }
        Ok(Ok(out)) => Check::fail(
            NAME,
            format!("{} --version exited with {}", path.display(), out.status),
            "reinstall hive-p2pd; it does not run on this machine",
        ),
        Ok(Err(e)) => Check::fail(
            NAME,
            format!("cannot run {}: {e}", path.display()),
            "make it executable (chmod +x) and built for this machine",
        ),
        Err(_) => Check::fail(
            NAME,
            format!("{} --version did not answer in {PROBE:?}", path.display()),
            "reinstall hive-p2pd",
        ),
    }
}

fn data_directory(dir: Option<&Path>) -> Vec<Check> {
    const NAME: &str = "data directory";
    let Some(dir) = dir else {
        return vec![Check::fail(
            NAME,
            "this platform has no data directory",
            "pass --data-dir DIR",
        )];
    };
    let writable = if dir.exists() {
        if !dir.is_dir() {
            return vec![Check::fail(
                NAME,
                format!("{} exists and is not a directory", dir.display()),
                "pass --data-dir with a directory, or move that file away",
            )];
        }
        probe_write(dir).map(|()| format!("{} is writable", dir.display()))
    } else {
        match dir.ancestors().skip(1).find(|a| a.exists()) {
            Some(parent) if parent.is_dir() => probe_write(parent).map(|()| {
                format!(
                    "{} will be created (in {})",
                    dir.display(),
                    parent.display()
                )
            }),
            Some(parent) => Err(Unwritable::NotADirectory(parent.to_owned())),
            None => Err(Unwritable::NoParent),
        }
    };
    let mut checks = vec![match writable {
        Ok(detail) => Check::ok(NAME, detail),
        Err(why) => Check::fail(
            NAME,
            format!("{} cannot be written: {why}", dir.display()),
            "pass --data-dir with a directory this user can write, or fix its owner and mode",
        ),
    }];
    checks.push(identity(&dir.join("daemon").join("identity.key")));
    checks
}

/// Why the data directory cannot be written.
#[derive(Debug, thiserror::Error)]
enum Unwritable {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(std::path::PathBuf),
    #[error("no existing parent directory")]
    NoParent,
}

/// Create and remove a file in `dir`.
fn probe_write(dir: &Path) -> Result<(), Unwritable> {
    let probe = dir.join(format!(".hive-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    Ok(std::fs::remove_file(&probe)?)
}

fn identity(key: &Path) -> Check {
    const NAME: &str = "identity";
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(key) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check::ok(
            NAME,
            format!(
                "{} absent: a new peer id will be made at the first start",
                key.display()
            ),
        ),
        Err(e) => Check::fail(
            NAME,
            format!("cannot read {}: {e}", key.display()),
            "fix the file's owner, or move it away to make a new identity",
        ),
        Ok(meta) if meta.len() == 0 || std::fs::read(key).is_err() => Check::fail(
            NAME,
            format!("{} is empty or unreadable", key.display()),
            "move it away to make a new identity (the node gets a new peer id)",
        ),
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => Check::warn(
            NAME,
            format!(
                "{} can be read by other users (mode {:o})",
                key.display(),
                meta.permissions().mode() & 0o777
            ),
            format!("chmod 600 {}", key.display()),
        ),
        Ok(_) => Check::ok(NAME, format!("{} (mode 600)", key.display())),
    }
}

fn http_port(http: &str, running: Option<&Running>) -> Check {
    const NAME: &str = "http port";
    let Ok(addr) = http.parse::<SocketAddr>() else {
        return Check::fail(
            NAME,
            format!("--http {http} is not IP:PORT"),
            "pass --http 127.0.0.1:7700",
        );
    };
    if running.is_some_and(|r| r.http == addr) {
        return Check::ok(NAME, format!("{addr}: served by the running host"));
    }
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Check::ok(NAME, format!("{addr} is free")),
        Err(e) => Check::fail(
            NAME,
            format!("cannot bind {addr}: {e}"),
            "another process serves there (`ss -ltnp`); stop it or pass another --http",
        ),
    }
}

/// The TCP ports the node would bind: configured fixed ones, and the ones
/// it bound last time (node-state.json) for `tcp/0` addresses.
fn listen_ports(args: &NodeArgs, data_dir: Option<&Path>, running: Option<&Running>) -> Vec<Check> {
    let mut wanted: Vec<(SocketAddr, bool)> = args
        .listen
        .iter()
        .filter_map(|a| tcp_socket(a))
        .filter(|a| a.port() != 0)
        .map(|a| (a, true))
        .collect();
    if let Some(state) =
        data_dir.and_then(|d| read_state(&d.join("daemon").join("node-state.json")))
    {
        let pinned = state["listen"].as_object().cloned().unwrap_or_default();
        wanted.extend(
            pinned
                .values()
                .filter_map(|v| tcp_socket(v.as_str()?))
                .map(|a| (a, false)),
        );
    }
    wanted
        .into_iter()
        .map(|(addr, fixed)| listen_port(addr, fixed, running))
        .collect()
}

fn listen_port(addr: SocketAddr, fixed: bool, running: Option<&Running>) -> Check {
    let name = format!("listen port {}", addr.port());
    if running.is_some_and(|r| r.listens_on(addr.port())) {
        return Check::ok(name, format!("{addr}: bound by the running node"));
    }
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Check::ok(name, format!("{addr} is free")),
        Err(e) if fixed => Check::fail(
            name,
            format!("cannot bind {addr}: {e}"),
            "another process listens there (`ss -ltnp`): stop it, or give --listen another port",
        ),
        Err(e) => Check::warn(
            name,
            format!("{addr}, the port this node had last time, is taken: {e}"),
            "nothing to do: the node listens on a new port and dials the peers it knew; free the port to keep the old address",
        ),
    }
}

fn read_state(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// `/ip4|ip6/ADDR/tcp/PORT…` as a socket address (DNS names are left to
/// [`bootstrap_peer`]).
fn tcp_socket(multiaddr: &str) -> Option<SocketAddr> {
    let parts: Vec<&str> = multiaddr.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6", ip, "tcp", port, ..] => {
            Some(SocketAddr::new(ip.parse().ok()?, port.parse().ok()?))
        }
        _ => None,
    }
}

/// Host, port and claimed peer id of a bootstrap address.
fn bootstrap_target(multiaddr: &str) -> Option<(String, u16, Option<String>)> {
    let parts: Vec<&str> = multiaddr.split('/').collect();
    let (host, port) = match parts.as_slice() {
        ["", "ip4", ip, "tcp", port, ..] => (ip.to_string(), port.parse().ok()?),
        ["", "ip6", ip, "tcp", port, ..] => (format!("[{ip}]"), port.parse().ok()?),
        ["", "dns" | "dns4" | "dns6", name, "tcp", port, ..] => {
            (name.to_string(), port.parse().ok()?)
        }
        _ => return None,
    };
    let peer = parts
        .windows(2)
        .rev()
        .find(|w| w[0] == "p2p")
        .map(|w| w[1].to_string());
    Some((host, port, peer))
}

async fn bootstrap_peer(addr: &str, running: Option<&Running>) -> Check {
    let name = format!("bootstrap {addr}");
    let Some((host, port, peer)) = bootstrap_target(addr) else {
        return Check::fail(
            name,
            "not a TCP multiaddr this check understands",
            "write it as /ip4/IP/tcp/PORT/p2p/PEER-ID (or /dns4/NAME/…)",
        );
    };
    if peer.is_none() {
        return Check::warn(
            name,
            "no /p2p/PEER-ID part: any node at that address is accepted",
            "append /p2p/PEER-ID (the bootstrap node's `hive status` shows it)",
        );
    }
    let connect = tokio::net::TcpStream::connect(format!("{host}:{port}"));
    match tokio::time::timeout(PROBE, connect).await {
        Err(_) => return Check::fail(
            name,
            format!("no answer from {host}:{port} within {PROBE:?}"),
            "the peer is down or a firewall drops the connection; check the address and that the peer runs",
        ),
        Ok(Err(e)) => return Check::fail(
            name,
            format!("cannot connect to {host}:{port}: {e}"),
            "the peer is not listening there: check the address (its `hive status` lists its listen_addrs) and that it runs",
        ),
        Ok(Ok(_)) => {}
    }
    match running {
        Some(running) => running.dial(&name, addr).await,
        None => Check::ok(
            name,
            format!("{host}:{port} accepts connections (its peer id is checked once a host runs)"),
        ),
    }
}

/// A host answering at `--api`, and what it says about itself.
struct Running {
    base: String,
    http: SocketAddr,
    client: reqwest::Client,
    status: Value,
}

impl Running {
    async fn probe(api: &str) -> Option<Running> {
        let base = api.trim_end_matches('/').to_string();
        let http = base.strip_prefix("http://")?.parse().ok()?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = std::env::var("HIVE_API_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
        {
            let value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim())).ok()?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(PROBE * 5)
            .build()
            .ok()?;
        let status = client.get(format!("{base}/api/status")).send().await.ok()?;
        let status = status.json::<Value>().await.ok()?;
        Some(Running {
            base,
            http,
            client,
            status,
        })
    }

    fn listens_on(&self, port: u16) -> bool {
        self.status["listen_addrs"].as_array().is_some_and(|addrs| {
            addrs
                .iter()
                .filter_map(Value::as_str)
                .any(|a| tcp_socket(a).is_some_and(|s| s.port() == port))
        })
    }

    fn checks(&self) -> Vec<Check> {
        let st = &self.status;
        if st.get("error").is_some() {
            return vec![Check::fail(
                "running host",
                format!("{} refused the status request: {}", self.base, st["error"]),
                "set HIVE_API_TOKEN to a token of that host",
            )];
        }
        let state = st["daemon"]["state"].as_str().unwrap_or("unknown");
        let mut checks = vec![if state == "running" {
            Check::ok(
                "running host",
                format!(
                    "{}: daemon running, peer id {}",
                    self.base,
                    st["peer_id"].as_str().unwrap_or("?")
                ),
            )
        } else {
            Check::fail(
                "running host",
                format!(
                    "{}: daemon {state} after {} restarts",
                    self.base, st["daemon"]["restarts"]
                ),
                "read the host's log for the daemon's last error (`hive up` prints it on stderr)",
            )
        }];
        let peers = st["peers"].as_u64().unwrap_or(0);
        checks.push(if peers > 0 {
            Check::ok("peers", format!("{peers} connected"))
        } else {
            Check::warn(
                "peers",
                "no peer connected",
                "give a reachable --bootstrap peer, or turn mDNS on for a LAN",
            )
        });
        checks.extend(super::reach::checks(st));
        let tension = st["tension"].as_f64().unwrap_or(0.0);
        checks.push(if tension < 0.5 {
            Check::ok("tension", format!("τ = {tension:.2}"))
        } else {
            Check::warn(
                "tension",
                format!("τ = {tension:.2}, signals {}", st["signals"]),
                "the largest signal names what hurts (docs/01_ARCHITECTURE.md, tension)",
            )
        });
        checks
    }

    /// Ask the running node to dial `addr`: the peer id it finds there.
    async fn dial(&self, name: &str, addr: &str) -> Check {
        let answer = self
            .client
            .post(format!("{}/api/dial", self.base))
            .json(&serde_json::json!({ "addr": addr }))
            .send()
            .await;
        let body = match answer {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(e) => {
                return Check::warn(
                    name,
                    format!("the running host did not dial: {e}"),
                    "retry with the host running",
                )
            }
        };
        match body.get("error") {
            None => Check::ok(name, format!("reachable, and it is {}", body["peer_id"].as_str().unwrap_or("?"))),
            Some(error) => Check::fail(
                name,
                format!("the running node could not dial it: {}", error["message"].as_str().unwrap_or("?")),
                "a different peer id answers there (the peer made a new identity?), or it speaks no libp2p: check the /p2p/ part with that peer's `hive status`",
            ),
        }
    }
}
