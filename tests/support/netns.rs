//! A small private network made of Linux network namespaces: one namespace
//! holding a bridge, and one namespace per test host joined to it by a veth
//! pair. Multicast (mDNS) works across the bridge, and no packet ever leaves
//! the namespaces the test created. Needs root (CAP_NET_ADMIN), which CI has.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The private network; removed again on drop.
pub struct Lan {
    tag: String,
    subnet: u32,
    bridge_ns: String,
    pub hosts: Vec<String>,
}

pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A veth pair between two namespaces, each end `(namespace, device,
/// address/prefix)`, both up.
pub fn veth(a: (&str, &str, &str), b: (&str, &str, &str)) -> Result<()> {
    let (ns_a, dev_a, addr_a) = a;
    let (ns_b, dev_b, addr_b) = b;
    ip(&[
        "-n", ns_a, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b,
    ])?;
    ip(&["-n", ns_a, "addr", "add", addr_a, "dev", dev_a])?;
    ip(&["-n", ns_b, "addr", "add", addr_b, "dev", dev_b])?;
    ip(&["-n", ns_a, "link", "set", dev_a, "up"])?;
    ip(&["-n", ns_b, "link", "set", dev_b, "up"])
}

impl Lan {
    /// Whether this machine lets us make namespaces (root with iproute2).
    pub fn available() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        root && Command::new("ip")
            .arg("-V")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Create a bridge and `n` host namespaces with addresses 10.213.X.(i+1)/24,
    /// where X is derived from the process id so parallel runs do not clash.
    pub fn new(n: usize) -> Result<Lan> {
        // Several LANs in one test process (tests run in parallel) need
        // their own names and subnets.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nth = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{:x}", (pid.wrapping_mul(8).wrapping_add(nth)) % 0xfffff);
        let subnet = 1 + (pid.wrapping_add(nth.wrapping_mul(37)) % 250);
        let bridge_ns = format!("hvb{tag}");
        let mut lan = Lan {
            tag: tag.clone(),
            subnet,
            bridge_ns: bridge_ns.clone(),
            hosts: Vec::new(),
        };
        ip(&["netns", "add", &bridge_ns])?;
        ip(&["-n", &bridge_ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("hv{i}{tag}");
            ip(&["netns", "add", &ns])?;
            lan.hosts.push(ns.clone());
            let host_end = format!("hv{i}h{tag}");
            let br_end = format!("hv{i}b{tag}");
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &ns, "link", "add", &host_end, "type", "veth", "peer", "name", &br_end,
                "netns", &bridge_ns,
            ])?;
            let addr = format!("10.213.{subnet}.{}/24", i + 1);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &host_end])?;
            ip(&["-n", &ns, "link", "set", &host_end, "multicast", "on"])?;
            ip(&["-n", &ns, "link", "set", &host_end, "up"])?;
            ip(&["-n", &bridge_ns, "link", "set", &br_end, "master", "br0"])?;
            ip(&["-n", &bridge_ns, "link", "set", &br_end, "up"])?;
            // Multicast needs a route; the connected /24 covers unicast.
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", &host_end])?;
        }
        Ok(lan)
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The address of host `i` on the bridge.
    pub fn addr(&self, i: usize) -> String {
        format!("10.213.{}.{}", self.subnet, i + 1)
    }

    /// Cut (or restore) host `i`'s link to the bridge.
    pub fn set_link(&self, i: usize, up: bool) -> Result<()> {
        let dev = format!("hv{i}h{}", self.tag);
        ip(&[
            "-n",
            &self.hosts[i],
            "link",
            "set",
            &dev,
            if up { "up" } else { "down" },
        ])
    }
}

impl Lan {
    /// Kill host `i`'s TCP connections to `peer_ip` (`ss -K`), as a NAT
    /// dropping its mapping or a middlebox resetting would: the connection
    /// is gone, not merely stalled.
    pub fn kill_connections(&self, i: usize, peer_ip: &str) -> Result<()> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[i],
                "ss",
                "-K",
                "-t",
                "dst",
                peer_ip,
            ])
            .output()
            .context("running ss -K")?;
        if !out.status.success() {
            bail!("ss -K: {}", String::from_utf8_lossy(&out.stderr));
        }
        // ss -K says nothing when the kernel cannot destroy sockets
        // (CONFIG_INET_DIAG_DESTROY): check that none is left.
        let left = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[i],
                "ss",
                "-H",
                "-t",
                "state",
                "established",
                "dst",
                peer_ip,
            ])
            .output()
            .context("running ss")?;
        let left = String::from_utf8_lossy(&left.stdout);
        if !left.trim().is_empty() {
            bail!("ss -K left connections to {peer_ip}: {left}");
        }
        Ok(())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in &self.hosts {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["netns", "del", &self.bridge_ns]);
    }
}

/// Three namespaces on two links that meet only at the middle one, which
/// does not forward: `left` and `right` each reach `middle`, never each
/// other (no route, no forwarding). The shape of a relay between a caller
/// and a host nobody can dial. Removed again on drop.
pub struct Split {
    subnet: u32,
    pub middle: String,
    pub left: String,
    pub right: String,
}

impl Split {
    pub fn new() -> Result<Split> {
        // Several splits in one test process (tests run in parallel) need
        // their own names and subnets, as LANs do.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nth = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{:x}", (pid.wrapping_mul(8).wrapping_add(nth)) % 0xfffff);
        let subnet = 1 + (pid.wrapping_add(nth.wrapping_mul(37)) % 250);
        let split = Split {
            subnet,
            middle: format!("hsm{tag}"),
            left: format!("hsl{tag}"),
            right: format!("hsr{tag}"),
        };
        for ns in [&split.middle, &split.left, &split.right] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for (side, ns, net) in [("l", &split.left, 216), ("r", &split.right, 217)] {
            let mid_end = format!("hs{side}m{tag}");
            let side_end = format!("hs{side}s{tag}");
            veth(
                (&split.middle, &mid_end, &format!("10.{net}.{subnet}.1/24")),
                (ns, &side_end, &format!("10.{net}.{subnet}.2/24")),
            )?;
        }
        Ok(split)
    }

    /// The middle's address on the left link.
    pub fn middle_left(&self) -> String {
        format!("10.216.{}.1", self.subnet)
    }

    /// The middle's address on the right link.
    pub fn middle_right(&self) -> String {
        format!("10.217.{}.1", self.subnet)
    }

    pub fn left_addr(&self) -> String {
        format!("10.216.{}.2", self.subnet)
    }

    pub fn right_addr(&self) -> String {
        format!("10.217.{}.2", self.subnet)
    }
}

impl Drop for Split {
    fn drop(&mut self) {
        for ns in [&self.left, &self.right, &self.middle] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// A TCP connection to `addr` made from inside the network namespace `ns`
/// (as `ip netns exec` would), for a test that lives outside it: a socket
/// keeps the namespace it was created in, so a thread enters `ns`,
/// connects, and hands the socket back.
pub fn connect_in(ns: &str, addr: std::net::SocketAddr) -> Result<std::net::TcpStream> {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path).with_context(|| path.clone())?;
                // SAFETY: setns on a namespace file we hold open; it only
                // changes this short-lived thread's network namespace.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns {path}: {}", std::io::Error::last_os_error());
                }
                std::net::TcpStream::connect(addr)
                    .with_context(|| format!("connect {addr} in {ns}"))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the netns thread panicked"))?
    })
}
