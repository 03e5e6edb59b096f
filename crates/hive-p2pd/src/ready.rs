//! The lines a daemon prints on stdout once it is ready.
//!
//! Clients wait for them: a client that has read them can connect at once.
//! In Hive mode that is one JSON [`ReadyLine`]; in go mode the lines
//! harnesses written for go-libp2p-daemon wait for (`Peer ID:` and the bare
//! listen addresses under `Peer Addrs:`), or nothing with `-q`. Logs go to
//! stderr, so nothing else is ever written here.

use std::io::Write;

use anyhow::Result;
use hive_proto::{ReadyLine, PROTOCOL_VERSION};

use crate::control::ControlAddr;

/// Which lines to print.
#[derive(Debug, Clone, Copy)]
pub enum Style<'a> {
    /// Hive's JSON ready line.
    Json,
    /// go-libp2p-daemon's lines, naming the bound control socket.
    Go {
        control: &'a ControlAddr,
        quiet: bool,
    },
}

/// This daemon's ready line.
pub fn line(peer_id: String, listen_addrs: Vec<String>, ipc: String) -> ReadyLine {
    ReadyLine {
        event: "ready".into(),
        ipc,
        peer_id,
        listen_addrs,
        pid: std::process::id(),
        daemon_version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: PROTOCOL_VERSION,
    }
}

/// Write the lines for `ready` in `style`, and flush them.
pub fn print(out: &mut impl Write, ready: &ReadyLine, style: Style<'_>) -> Result<()> {
    match style {
        Style::Go { quiet: true, .. } => {}
        Style::Go { control, .. } => {
            writeln!(out, "Control socket: {}", control.display())?;
            writeln!(out, "Peer ID: {}", ready.peer_id)?;
            writeln!(out, "Peer Addrs:")?;
            for addr in &ready.listen_addrs {
                match addr.parse::<libp2p::Multiaddr>() {
                    Ok(full) => writeln!(out, "{}", hive_node::without_p2p(&full))?,
                    Err(_) => writeln!(out, "{addr}")?,
                }
            }
        }
        Style::Json => writeln!(out, "{}", serde_json::to_string(ready)?)?,
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWGzv1Tdt7WXkVDsnB3nSyZHrVVjDjHuvx5EQzz2qrG7Vb";

    fn ready() -> ReadyLine {
        line(
            PEER.into(),
            vec![
                format!("/ip4/127.0.0.1/tcp/4001/p2p/{PEER}"),
                format!("/ip4/127.0.0.1/tcp/9/p2p/{PEER}/p2p-circuit/p2p/{PEER}"),
            ],
            "ws://127.0.0.1:5000".into(),
        )
    }

    fn printed(style: Style<'_>) -> String {
        let mut out = Vec::new();
        print(&mut out, &ready(), style).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hive_mode_prints_one_json_line() {
        let text = printed(Style::Json);
        assert_eq!(text.lines().count(), 1, "{text}");
        let parsed: ReadyLine = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(parsed.event, "ready");
        assert_eq!(parsed.ipc, "ws://127.0.0.1:5000");
        assert_eq!(parsed.peer_id, PEER);
        assert_eq!(parsed.pid, std::process::id());
        assert_eq!(parsed.protocol_version, PROTOCOL_VERSION);
        assert_eq!(parsed.listen_addrs, ready().listen_addrs);
    }

    #[test]
    fn go_mode_prints_go_daemons_lines_with_bare_addresses() {
        let control = ControlAddr::Unix("/tmp/p2pd.sock".into());
        let text = printed(Style::Go {
            control: &control,
            quiet: false,
        });
        let expected = [
            "Control socket: /unix/tmp/p2pd.sock".to_string(),
            format!("Peer ID: {PEER}"),
            "Peer Addrs:".to_string(),
            "/ip4/127.0.0.1/tcp/4001".to_string(),
            // Only the last /p2p/ goes: a relayed address keeps its relay.
            format!("/ip4/127.0.0.1/tcp/9/p2p/{PEER}/p2p-circuit"),
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected);
        assert_eq!(
            printed(Style::Go {
                control: &control,
                quiet: true
            }),
            ""
        );
    }
}
