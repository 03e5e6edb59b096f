//! Gossipsub peer scoring: a peer that sends invalid messages (bad
//! signatures, malformed) or misbehaves in the protocol (GRAFT floods
//! during backoff, IHAVE promises it does not keep) sinks below the
//! thresholds and is, in turn, left out of gossip, of publishing and of
//! the mesh, then graylisted: everything it sends is ignored until its
//! score decays back.
//!
//! Only those two penalties are on. Everything that can lower an honest
//! peer's score is off: IP colocation (tests, LANs and NATs put many honest
//! peers on one address), slowness (a loaded machine is not an attacker),
//! mesh delivery deficits (small meshes and quiet topics would punish the
//! peers in them), so an honest peer's score stays at 0, where none of the
//! thresholds acts, exactly as without scoring.

use std::time::Duration;

use libp2p::gossipsub::{PeerScoreParams, PeerScoreThresholds, TopicScoreParams};

/// The scores below which a peer is cut off, step by step.
pub fn thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        // No gossip (IHAVE/IWANT) to or from it.
        gossip_threshold: -10.0,
        // Not published to.
        publish_threshold: -50.0,
        // Everything it sends is ignored.
        graylist_threshold: -80.0,
        // At 0 an honest peer's peer exchange is taken as without scoring.
        accept_px_threshold: 0.0,
        opportunistic_graft_threshold: 0.0,
    }
}

/// The node-wide parameters (topics get theirs when subscribed).
pub fn params() -> PeerScoreParams {
    PeerScoreParams {
        ip_colocation_factor_weight: 0.0,
        slow_peer_weight: 0.0,
        // P7, squared past the threshold: a few slips (a GRAFT just after a
        // PRUNE when peers reconnect) cost nothing; about a dozen within the
        // decay reach the graylist.
        behaviour_penalty_weight: -1.0,
        behaviour_penalty_threshold: 2.0,
        behaviour_penalty_decay: 0.9,
        decay_interval: Duration::from_secs(1),
        ..PeerScoreParams::default()
    }
}

/// A subscribed topic's parameters: invalid messages only (P4), squared:
/// three invalid messages graylist their sender; the count decays by half
/// every second, so a peer that stops recovers within seconds.
pub fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.5,
        ..TopicScoreParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameters_are_valid_and_three_invalid_messages_graylist() {
        params().validate().unwrap();
        thresholds().validate().unwrap();
        topic_params().validate().unwrap();
        let t = topic_params();
        let p4 = |n: f64| t.topic_weight * t.invalid_message_deliveries_weight * n * n;
        assert!(p4(2.0) > thresholds().graylist_threshold);
        assert!(p4(3.0) < thresholds().graylist_threshold);
        let p = params();
        let p7 = |n: f64| p.behaviour_penalty_weight * (n - p.behaviour_penalty_threshold).powi(2);
        assert!(
            p7(3.0) > thresholds().gossip_threshold,
            "a slip or three is free"
        );
        assert!(p7(12.0) < thresholds().graylist_threshold);
    }
}
