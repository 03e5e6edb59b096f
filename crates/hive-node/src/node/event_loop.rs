//! The node's loop: one `select!` says what woke it ([`Wake`]), then one
//! handler acts on it with the whole node at hand. Between the two the
//! `status` kept for askers outside the loop is marked stale (see
//! `status_cache`), before anything can change.

use futures::StreamExt;
use hive_proto::ListenAddrsResult;
use libp2p::Multiaddr;

use super::{Command, Node, BOOTSTRAP_REDIAL_INTERVAL};
use crate::behaviour::DirectAck;
use crate::relays::ReservationOutcome;

impl Node {
    /// Dial the bootstrap peers, look for relays, and run the loop.
    pub(super) fn launch(mut self, bootstrap: &[Multiaddr]) {
        for addr in bootstrap {
            self.dial_bootstrap(addr);
        }
        self.maintain_relays();
        tokio::spawn(self.run());
    }

    /// The loop: commands from IPC clients and events from the network.
    async fn run(mut self) {
        tracing::info!(peer_id = %self.peer_id, "node running");
        let mut maintenance = crate::grid_interval(BOOTSTRAP_REDIAL_INTERVAL);
        loop {
            let woke = tokio::select! {
                _ = maintenance.tick() => Wake::Maintenance,
                // Peers a recent hand-over held back (see Keeper::flush).
                _ = sleep_until_some(self.keeper.deferred()), if self.keeper.deferred().is_some() => {
                    Wake::Deferred
                }
                Some(outcome) = self.relay_outcomes.recv() => Wake::Relay(outcome),
                command = self.commands.recv() => match command {
                    Some(command) => Wake::Command(command),
                    None => break,
                },
                Some(acked) = self.acks.recv() => Wake::Acked(acked),
                // The history is behind: push back on the network until
                // it has room (nothing is dropped).
                _ = self.intake.flush(), if !self.intake.accepting() => Wake::Flushed,
                event = self.swarm.select_next_some(), if self.intake.accepting() => {
                    Wake::Swarm(Box::new(event))
                }
            };
            // Before anything changes: a `status` kept from before is stale.
            self.status_cache.woke();
            self.handle_wake(woke);
        }
        tracing::info!("node stopped");
    }

    /// What the loop woke for, handled with the whole node at hand.
    fn handle_wake(&mut self, woke: Wake) {
        match woke {
            Wake::Maintenance => {
                self.redial_known_peers();
                self.maintain_relays();
                self.manage_connections();
                self.close_superseded_circuits();
            }
            Wake::Deferred => self.keeper.flush(),
            Wake::Relay(outcome) => {
                if let Some(change) = self.relays.on_outcome(outcome) {
                    self.apply_addr_change(change);
                }
            }
            Wake::Command(command) => self.handle_command(command),
            Wake::Acked(acked) => {
                let ack = DirectAck::stored(acked.id);
                if self
                    .swarm
                    .behaviour_mut()
                    .direct
                    .send_response(acked.channel, ack)
                    .is_err()
                {
                    // The sender gave up; it will retry with the same id.
                    tracing::debug!("direct message ack could not be sent");
                }
            }
            Wake::Flushed => {}
            Wake::Swarm(event) => self.handle_swarm_event(*event),
        }
    }

    /// One command from a [`NodeHandle`]. Operations that finish at once
    /// answer here; the others park their reply and are answered by a swarm
    /// event.
    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(Ok(self.status()));
            }
            Command::ListenAddrs(reply) => {
                let listen_addrs = self.own_addrs();
                let _ = reply.send(Ok(ListenAddrsResult { listen_addrs }));
            }
            Command::Peers(reply) => {
                let _ = reply.send(Ok(self.peers()));
            }
            Command::PeersAndTopics(reply) => {
                let peers = self.peers.keys().copied().collect();
                let _ = reply.send(Ok((peers, self.subscribed_topics())));
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::Disconnect { peer, reply } => {
                // Err means not connected, which is what the caller wants anyway.
                // Held: the node does not dial it back by itself, and
                // Kademlia forgets it (its lookups would dial it) until it
                // connects again.
                self.keeper.reconnect.hold(peer);
                self.swarm.behaviour_mut().kad.remove_peer(&peer);
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(Ok(()));
            }
            Command::Subscribe { topic, reply } => {
                let _ = reply.send(self.subscribe(&topic));
            }
            Command::Unsubscribe { topic, reply } => {
                let _ = reply.send(self.unsubscribe(&topic));
            }
            Command::Topics(reply) => {
                let _ = reply.send(Ok(self.topics()));
            }
            Command::TopicPeers { topic, reply } => {
                let _ = reply.send(Ok(self.topic_peers(&topic)));
            }
            Command::Publish {
                topic,
                data,
                id,
                reply,
            } => {
                let _ = reply.send(self.publish(&topic, data, id));
            }
            Command::Send {
                peer,
                data,
                id,
                reply,
            } => self.send_direct(peer, data, id, reply),
            Command::Ping { peer, reply } => self.ping(peer, reply),
            Command::Shutdown(reply) => {
                let _ = self.shutdown.send(true);
                let _ = reply.send(Ok(()));
            }
            Command::Metrics(reply) => {
                let _ = reply.send(self.encode_metrics());
            }
            Command::Trim(reply) => {
                let _ = reply.send(Ok(self.trim_connections(crate::connmgr::Moment::Asked)));
            }
            Command::SaveMemory { reply } => {
                let _ = reply.send(self.keeper.save());
            }
            kad => self.handle_kad_command(kad),
        }
    }
}

/// What woke the loop, handled once the `select!` has let go of its borrows.
enum Wake {
    Maintenance,
    Deferred,
    Relay(ReservationOutcome),
    Command(Command),
    Acked(crate::history::Acked),
    Flushed,
    Swarm(Box<libp2p::swarm::SwarmEvent<crate::behaviour::BehaviourEvent>>),
}

/// Sleeps until `at`; never ends for `None` (the branch is disabled then).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
