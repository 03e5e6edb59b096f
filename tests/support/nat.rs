//! Two hosts behind two NATs, made of network namespaces: the shape in which
//! only a hole punch joins two peers.
//!
//! ```text
//!   inside_a ── nat_a ──┐                 ┌── nat_b ── inside_b
//!   10.220.S.2   10.218.S.2 ── internet ── 10.219.S.2   10.221.S.2
//!                         (10.218.S.1, 10.219.S.1: routes, no filter)
//! ```
//!
//! Each NAT (nftables, in its own namespace) masquerades what its inside
//! host sends out, lets back in only what belongs to a connection or flow
//! the inside started, and drops, silently as home routers do, anything
//! unsolicited from outside: a SYN nobody inside sent for is never answered,
//! not even with a reset. The internet namespace forwards between the two
//! NATs and is where a relay runs. Needs root, iproute2 and nftables.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::netns::{ip, veth};

pub struct TwoNats {
    subnet: u32,
    pub internet: String,
    pub nat_a: String,
    pub nat_b: String,
    pub inside_a: String,
    pub inside_b: String,
}

/// Run `args` inside network namespace `ns`.
fn exec_in(ns: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .with_context(|| format!("running {} in {ns}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} in {ns}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A NAT router's rules: masquerade out of `wan`, stateful in.
fn nat_rules(wan: &str, lan: &str) -> String {
    format!(
        "table ip hivenat {{
  chain postrouting {{ type nat hook postrouting priority srcnat; oifname \"{wan}\" masquerade; }}
  chain forward {{ type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname \"{lan}\" oifname \"{wan}\" accept
  }}
  chain input {{ type filter hook input priority filter; policy accept;
    iifname \"{wan}\" ct state established,related accept
    iifname \"{wan}\" drop
  }}
}}
"
    )
}

impl TwoNats {
    /// Whether nftables is here (besides root and iproute2).
    pub fn available() -> bool {
        crate::netns::Lan::available()
            && Command::new("nft")
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
    }

    pub fn new() -> Result<TwoNats> {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nth = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{:x}", (pid.wrapping_mul(8).wrapping_add(nth)) % 0xfffff);
        let subnet = 1 + (pid.wrapping_add(nth.wrapping_mul(37)) % 250);
        let nats = TwoNats {
            subnet,
            internet: format!("hni{tag}"),
            nat_a: format!("hnna{tag}"),
            nat_b: format!("hnnb{tag}"),
            inside_a: format!("hnha{tag}"),
            inside_b: format!("hnhb{tag}"),
        };
        for ns in nats.all() {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        for (side, nat, inside, wan_net, lan_net) in [
            ("a", &nats.nat_a, &nats.inside_a, 218, 220),
            ("b", &nats.nat_b, &nats.inside_b, 219, 221),
        ] {
            let wan = format!("hnw{side}{tag}");
            let lan = format!("hnl{side}{tag}");
            veth(
                (
                    &nats.internet,
                    &format!("hnx{side}{tag}"),
                    &format!("10.{wan_net}.{subnet}.1/24"),
                ),
                (nat, &wan, &format!("10.{wan_net}.{subnet}.2/24")),
            )?;
            veth(
                (nat, &lan, &format!("10.{lan_net}.{subnet}.1/24")),
                (
                    inside,
                    &format!("hnh{side}{tag}"),
                    &format!("10.{lan_net}.{subnet}.2/24"),
                ),
            )?;
            ip(&[
                "-n",
                nat,
                "route",
                "add",
                "default",
                "via",
                &format!("10.{wan_net}.{subnet}.1"),
            ])?;
            ip(&[
                "-n",
                inside,
                "route",
                "add",
                "default",
                "via",
                &format!("10.{lan_net}.{subnet}.1"),
            ])?;
            exec_in(nat, &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])?;
            let rules = std::env::temp_dir().join(format!("hive-nat-{tag}-{side}.nft"));
            std::fs::write(&rules, nat_rules(&wan, &lan))?;
            let loaded = exec_in(nat, &["nft", "-f", &rules.to_string_lossy()]);
            let _ = std::fs::remove_file(&rules);
            loaded?;
        }
        exec_in(
            &nats.internet,
            &["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
        )?;
        Ok(nats)
    }

    fn all(&self) -> [&String; 5] {
        [
            &self.internet,
            &self.nat_a,
            &self.nat_b,
            &self.inside_a,
            &self.inside_b,
        ]
    }

    /// The internet's address on NAT A's side.
    pub fn internet_a(&self) -> String {
        format!("10.218.{}.1", self.subnet)
    }

    /// The internet's address on NAT B's side.
    pub fn internet_b(&self) -> String {
        format!("10.219.{}.1", self.subnet)
    }

    /// NAT A's public address: what the internet sees of host A.
    pub fn public_a(&self) -> String {
        format!("10.218.{}.2", self.subnet)
    }

    /// NAT B's public address: what the internet sees of host B.
    pub fn public_b(&self) -> String {
        format!("10.219.{}.2", self.subnet)
    }
}

impl Drop for TwoNats {
    fn drop(&mut self) {
        for ns in self.all() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
