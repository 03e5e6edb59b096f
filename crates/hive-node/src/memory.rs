//! What a node remembers across restarts, so that it comes back as the same
//! node whoever supervises it (the host, the Python package, systemd, a
//! script): the ports it bound for `…/tcp/0`-style listen addresses, and the
//! peers it was connected to (their addresses, when last seen).
//!
//! One small JSON file in the data directory (`node-state.json`), written
//! atomically (temporary file, fsync, rename) by one writer task that
//! coalesces changes, and bounded: at most [`MAX_PEERS`] peers with at most
//! [`MAX_ADDRS`] addresses each. A missing, unreadable or foreign file (another
//! peer id) is not an error: the node starts with an empty memory and says so.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// File name inside the data directory.
pub const STATE_FILE: &str = "node-state.json";
/// Most peers remembered (the most recently seen are kept).
pub const MAX_PEERS: usize = 64;
/// Most addresses remembered per peer.
pub const MAX_ADDRS: usize = 8;
/// Peers not seen for this long are forgotten.
const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Format version of the file.
const VERSION: u32 = 1;

/// One remembered peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownPeer {
    pub peer_id: String,
    /// Most useful first (the address last dialed successfully).
    pub addrs: Vec<String>,
    /// Unix seconds of the last connect or disconnect.
    pub last_seen: u64,
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub version: u32,
    /// The node these belong to; a file of another identity is ignored.
    pub peer_id: String,
    /// Configured listen address (as given) → the address it was bound to
    /// last time, for configured addresses with port 0.
    #[serde(default)]
    pub listen: BTreeMap<String, String>,
    #[serde(default)]
    pub peers: Vec<KnownPeer>,
}

/// Errors of the state file; never fatal to the node.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a node state file ({source}); it will be replaced")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source} (is the data directory writable?)")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl NodeState {
    pub fn empty(peer: PeerId) -> Self {
        NodeState {
            version: VERSION,
            peer_id: peer.to_string(),
            ..NodeState::default()
        }
    }

    /// Read `path`; a missing file gives an empty state, a file of another
    /// peer id too (with a warning).
    pub fn load(path: &Path, peer: PeerId) -> Result<Self, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty(peer)),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let state: NodeState = serde_json::from_str(&text).map_err(|source| StateError::Parse {
            path: path.to_owned(),
            source,
        })?;
        if state.peer_id != peer.to_string() {
            tracing::warn!(
                path = %path.display(),
                file_peer = %state.peer_id,
                "node state belongs to another identity; starting without remembered ports and peers"
            );
            return Ok(Self::empty(peer));
        }
        Ok(state.pruned(now_secs()))
    }

    /// Bounded: newest peers first, at most [`MAX_PEERS`], none older than
    /// [`MAX_AGE`], at most [`MAX_ADDRS`] addresses each.
    pub fn pruned(mut self, now: u64) -> Self {
        let oldest = now.saturating_sub(MAX_AGE.as_secs());
        self.peers.retain(|p| p.last_seen >= oldest);
        self.peers.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
        self.peers.truncate(MAX_PEERS);
        for p in &mut self.peers {
            p.addrs.truncate(MAX_ADDRS);
        }
        self
    }

    /// Write atomically: a crash mid-write leaves the old file.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let write_err = |source| StateError::Write {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(self).map_err(|e| write_err(e.into()))?;
        let mut file = std::fs::File::create(&tmp).map_err(write_err)?;
        file.write_all(&body).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }

    /// Where to listen: each configured address with port 0 that was bound
    /// before is tried on its old port first (the second element is the
    /// fallback, the configured address itself).
    pub fn listen_plan(&self, configured: &[Multiaddr]) -> Vec<(Multiaddr, Option<Multiaddr>)> {
        configured
            .iter()
            .map(|addr| {
                let pinned = self
                    .listen
                    .get(&addr.to_string())
                    .and_then(|p| p.parse::<Multiaddr>().ok())
                    .filter(|p| has_port_zero(addr) && same_shape(addr, p));
                match pinned {
                    Some(p) => (p, Some(addr.clone())),
                    None => (addr.clone(), None),
                }
            })
            .collect()
    }
}

/// The configured address has a TCP or UDP port 0.
pub fn has_port_zero(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::Tcp(0) | Protocol::Udp(0)))
}

/// `bound` with its port put into `configured` (which keeps its IP, so a
/// `0.0.0.0` listener stays one).
pub fn pin_port(configured: &Multiaddr, bound: &Multiaddr) -> Option<Multiaddr> {
    let port = bound.iter().find_map(|p| match p {
        Protocol::Tcp(n) | Protocol::Udp(n) => Some(n),
        _ => None,
    })?;
    Some(
        configured
            .iter()
            .map(|p| match p {
                Protocol::Tcp(0) => Protocol::Tcp(port),
                Protocol::Udp(0) => Protocol::Udp(port),
                other => other,
            })
            .collect(),
    )
}

/// Same protocols in the same order (only the port may differ).
fn same_shape(a: &Multiaddr, b: &Multiaddr) -> bool {
    let tag = |p: Protocol| p.to_string().split('/').nth(1).map(str::to_owned);
    a.iter().map(tag).eq(b.iter().map(tag))
}

/// The writer of the state file: one task that saves the newest state it
/// was handed, so that the node's loop never waits on the disk. Idle costs
/// nothing.
#[derive(Debug)]
pub struct Writer {
    tx: watch::Sender<(u64, NodeState)>,
    saved: watch::Receiver<u64>,
    version: u64,
}

/// Resolves once the state handed to the writer before it was made is on
/// disk (or the writer has stopped).
#[derive(Debug)]
pub struct Saved {
    saved: watch::Receiver<u64>,
    version: u64,
}

impl Saved {
    pub async fn wait(mut self) {
        let _ = self.saved.wait_for(|v| *v >= self.version).await;
    }
}

impl Writer {
    pub fn spawn(path: PathBuf, initial: NodeState) -> Self {
        let (tx, mut rx) = watch::channel((1, initial));
        let (saved_tx, saved) = watch::channel(0);
        rx.mark_changed();
        tokio::spawn(async move {
            let mut warned = false;
            while rx.changed().await.is_ok() {
                let (version, state) = rx.borrow_and_update().clone();
                let path = path.clone();
                let result = tokio::task::spawn_blocking(move || state.save(&path)).await;
                match result {
                    Ok(Ok(())) => warned = false,
                    Ok(Err(e)) if !warned => {
                        warned = true;
                        tracing::warn!(error = %e, "node state not saved: a restart will not find the same ports and peers");
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "node state not saved"),
                    Err(e) => tracing::warn!(error = %e, "node state writer failed"),
                }
                // Failed or not, this version is done with: waiting longer
                // would not save it.
                let _ = saved_tx.send(version);
                // No pause here: the keeper spaces its hand-overs while
                // changes keep coming (`reconnect::SendPace`), and a
                // polite stop's save must not wait behind one.
            }
        });
        Writer {
            tx,
            saved,
            version: 1,
        }
    }

    /// Save `state` soon (replacing any state not yet written).
    pub fn send(&mut self, state: NodeState) {
        self.version += 1;
        self.tx.send_replace((self.version, state));
    }

    /// The moment everything sent so far is written.
    pub fn saved(&self) -> Saved {
        Saved {
            saved: self.saved.clone(),
            version: self.version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    }

    #[test]
    fn listen_plan_pins_only_port_zero_of_the_same_shape() {
        let me = peer();
        let mut state = NodeState::empty(me);
        state
            .listen
            .insert("/ip4/0.0.0.0/tcp/0".into(), "/ip4/0.0.0.0/tcp/4001".into());
        state.listen.insert(
            "/ip4/127.0.0.1/tcp/0".into(),
            "/ip4/127.0.0.1/udp/4001/quic-v1".into(),
        );
        let tcp0: Multiaddr = "/ip4/0.0.0.0/tcp/0".parse().unwrap();
        let lo: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        let fixed: Multiaddr = "/ip4/0.0.0.0/tcp/5000".parse().unwrap();
        let plan = state.listen_plan(&[tcp0.clone(), lo.clone(), fixed.clone()]);
        assert_eq!(
            plan[0],
            ("/ip4/0.0.0.0/tcp/4001".parse().unwrap(), Some(tcp0.clone()))
        );
        assert_eq!(plan[1], (lo, None), "a pin of another shape is ignored");
        assert_eq!(plan[2], (fixed, None));
        let bound: Multiaddr = "/ip4/10.0.0.1/tcp/4321".parse().unwrap();
        assert_eq!(
            pin_port(&tcp0, &bound).unwrap().to_string(),
            "/ip4/0.0.0.0/tcp/4321"
        );
    }

    #[test]
    fn save_load_round_trip_bounded_and_foreign_files_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let me = peer();
        let mut state = NodeState::empty(me);
        let now = now_secs();
        for i in 0..(MAX_PEERS as u64 + 10) {
            state.peers.push(KnownPeer {
                peer_id: peer().to_string(),
                addrs: (0..20).map(|p| format!("/ip4/127.0.0.1/tcp/{p}")).collect(),
                last_seen: now - i,
            });
        }
        state.peers.push(KnownPeer {
            peer_id: peer().to_string(),
            addrs: vec![],
            last_seen: 1,
        });
        state.save(&path).unwrap();
        let loaded = NodeState::load(&path, me).unwrap();
        assert_eq!(loaded.peers.len(), MAX_PEERS);
        assert_eq!(loaded.peers[0].last_seen, now, "newest first");
        assert!(loaded.peers.iter().all(|p| p.addrs.len() == MAX_ADDRS));
        assert!(loaded.peers.iter().all(|p| p.last_seen != 1), "old ones go");
        let other = NodeState::load(&path, peer()).unwrap();
        assert!(other.peers.is_empty(), "another identity's file is ignored");
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(
            NodeState::load(&path, me),
            Err(StateError::Parse { .. })
        ));
        assert!(NodeState::load(&dir.path().join("absent"), me)
            .unwrap()
            .peers
            .is_empty());
    }

    #[tokio::test]
    async fn writer_saved_resolves_once_the_newest_state_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let me = peer();
        let mut writer = Writer::spawn(path.clone(), NodeState::empty(me));
        // Several changes in a burst: the last one is what lands.
        for i in 0..5u64 {
            let mut state = NodeState::empty(me);
            state.peers.push(KnownPeer {
                peer_id: peer().to_string(),
                addrs: vec![format!("/ip4/127.0.0.1/tcp/{}", 1000 + i)],
                last_seen: now_secs(),
            });
            writer.send(state);
        }
        writer.saved().wait().await;
        let loaded = NodeState::load(&path, me).unwrap();
        assert_eq!(loaded.peers.len(), 1);
        assert_eq!(loaded.peers[0].addrs, vec!["/ip4/127.0.0.1/tcp/1004"]);
    }
}
