//! A bootstrap peer that cannot be reached is said so, with the cause and
//! what to do: go-libp2p-daemon's users most often get "failed to start"
//! and no reason. Once at the first failure, then at most once a minute per
//! peer while the node keeps re-dialing it.

use std::time::{Duration, Instant};

use libp2p::swarm::DialError;
use libp2p::PeerId;

use super::Node;

const REPEAT: Duration = Duration::from_secs(60);

impl Node {
    pub(super) fn warn_bootstrap_unreachable(&mut self, peer: PeerId, error: &DialError) {
        let now = Instant::now();
        if self
            .bootstrap_warned
            .get(&peer)
            .is_some_and(|at| now.duration_since(*at) < REPEAT)
        {
            return;
        }
        self.bootstrap_warned.insert(peer, now);
        let addr = self
            .bootstrap_peers
            .get(&peer)
            .map(ToString::to_string)
            .unwrap_or_default();
        match error {
            DialError::WrongPeerId { obtained, .. } => tracing::warn!(
                %peer, %addr, answering = %obtained,
                "bootstrap peer not found: another node answers at its address (it made a new identity, or the address is someone else's now); fix the /p2p/ part of the bootstrap address (the peer's `hive status` shows its peer_id)"
            ),
            other => tracing::warn!(
                %peer, %addr, error = %other,
                "cannot reach bootstrap peer: is it running, and is that its address (its `hive status` lists listen_addrs)? retrying with backoff; `hive doctor --bootstrap ADDR` checks it"
            ),
        }
    }
}
