//! go-libp2p-daemon's connection manager, for clients of the control
//! protocol: CONNMANAGER tags with weights per peer, TRIM, and with
//! `-connManager` a watch that trims once the connected peers pass the high
//! watermark (`-connHi`) down to the low one (`-connLo`), sparing peers
//! connected for less than the grace period (`-connGrace`) and keeping the
//! heaviest-tagged ones longest. Without `-connManager` nothing is trimmed,
//! as go's daemon then runs no manager either.
//!
//! rust-libp2p has no trimming manager; this one works from outside the
//! swarm, through the node's `peers` and `disconnect` operations.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hive_node::NodeHandle;
use hive_proto::{Op, PeerInfo, PeersResult};
use libp2p::PeerId;

use super::ask;

/// How often the watch compares the peer count with the high watermark.
const WATCH_EVERY: Duration = Duration::from_secs(10);

/// The watermarks and grace period (go's `-connLo`, `-connHi`,
/// `-connGrace`; the same defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub low: usize,
    pub high: usize,
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            low: 256,
            high: 512,
            grace: Duration::from_secs(120),
        }
    }
}

pub struct ConnManager {
    limits: Limits,
    /// Trimming on: `-connManager`.
    enabled: bool,
    tags: Mutex<HashMap<PeerId, HashMap<String, i64>>>,
}

impl ConnManager {
    pub fn new(limits: Limits, enabled: bool) -> Arc<ConnManager> {
        Arc::new(ConnManager {
            limits,
            enabled,
            tags: Mutex::new(HashMap::new()),
        })
    }

    fn tags(&self) -> MutexGuard<'_, HashMap<PeerId, HashMap<String, i64>>> {
        self.tags.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tag(&self, peer: PeerId, tag: String, weight: i64) {
        self.tags().entry(peer).or_default().insert(tag, weight);
    }

    pub fn untag(&self, peer: &PeerId, tag: &str) {
        let mut tags = self.tags();
        if let Some(of_peer) = tags.get_mut(peer) {
            of_peer.remove(tag);
            if of_peer.is_empty() {
                tags.remove(peer);
            }
        }
    }

    fn weight(&self, peer: &PeerId) -> i64 {
        self.tags()
            .get(peer)
            .map(|t| t.values().copied().sum())
            .unwrap_or(0)
    }

    /// Which peers to close to come down to the low watermark: those past
    /// their grace period, lightest first, then the most recent first.
    fn victims(&self, peers: &[PeerInfo]) -> Vec<PeerId> {
        let excess = peers.len().saturating_sub(self.limits.low);
        let mut candidates: Vec<(i64, f64, PeerId)> = peers
            .iter()
            .filter(|p| p.connected_secs.unwrap_or(0.0) >= self.limits.grace.as_secs_f64())
            .filter_map(|p| {
                let peer = p.peer_id.parse::<PeerId>().ok()?;
                Some((self.weight(&peer), p.connected_secs.unwrap_or(0.0), peer))
            })
            .collect();
        candidates.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        candidates
            .into_iter()
            .take(excess)
            .map(|(_, _, p)| p)
            .collect()
    }

    /// TRIM: close connections down to the low watermark. Returns how many
    /// peers were disconnected. Does nothing unless `-connManager` is on.
    pub async fn trim(&self, node: &NodeHandle) -> Result<usize, String> {
        if !self.enabled {
            return Ok(0);
        }
        let peers: PeersResult = ask(node, Op::Peers).await?;
        Ok(self.trim_among(node, &peers.peers).await)
    }

    /// Close the victims among `peers`; how many were closed.
    async fn trim_among(&self, node: &NodeHandle, peers: &[PeerInfo]) -> usize {
        let victims = self.victims(peers);
        let mut closed = 0;
        for peer in victims {
            match node
                .request(Op::Disconnect {
                    peer_id: peer.to_string(),
                })
                .await
            {
                Ok(_) => closed += 1,
                Err(e) => tracing::debug!(%peer, error = %e.message, "trim: disconnect failed"),
            }
        }
        if closed > 0 {
            tracing::info!(
                closed,
                low = self.limits.low,
                "connection manager trimmed peers"
            );
        }
        closed
    }

    /// With `-connManager`: trim whenever the peers pass the high
    /// watermark. Runs until the node stops.
    pub async fn watch(self: Arc<Self>, node: NodeHandle) {
        if !self.enabled {
            return;
        }
        let mut every = tokio::time::interval(WATCH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let peers: PeersResult = match ask(&node, Op::Peers).await {
                Ok(peers) => peers,
                Err(e) => {
                    tracing::debug!(error = %e, "connection manager stops: no peer list");
                    return;
                }
            };
            if peers.peers.len() > self.limits.high {
                self.trim_among(&node, &peers.peers).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(peer: PeerId, secs: f64) -> PeerInfo {
        PeerInfo {
            peer_id: peer.to_string(),
            addrs: vec![],
            connections: vec![],
            rtt_ms: None,
            connected_secs: Some(secs),
        }
    }

    #[test]
    fn trims_the_lightest_peers_past_their_grace_down_to_low() {
        let limits = Limits {
            low: 2,
            high: 3,
            grace: Duration::from_secs(10),
        };
        let m = ConnManager::new(limits, true);
        let [heavy, light, newest, young] = [(); 4].map(|_| PeerId::random());
        m.tag(heavy, "keep".into(), 100);
        m.tag(light, "a".into(), 5);
        m.tag(light, "b".into(), -1);
        let peers = [
            info(heavy, 60.0),
            info(light, 60.0),
            info(newest, 20.0),
            info(young, 1.0),
            info(PeerId::random(), 50.0),
        ];
        // Five peers, low 2: three go; the young one is spared by grace,
        // so the three lightest of the rest: untagged (0) newest first,
        // then the light one (4).
        let victims = m.victims(&peers);
        assert_eq!(victims.len(), 3);
        assert!(!victims.contains(&heavy) && !victims.contains(&young));
        assert_eq!(victims[0], newest);
        assert_eq!(victims[2], light);
        m.untag(&heavy, "keep");
        assert_eq!(m.weight(&heavy), 0);
        assert_eq!(m.weight(&light), 4);
    }
}
