//! Kademlia: the DHT commands start queries and park their replies; the
//! query results answer them, possibly after several steps.

use std::collections::HashSet;

use hive_proto::{Bytes, ClosestPeersResult, FindPeerResult, FindProvidersResult, GetRecordResult};
use libp2p::{kad, PeerId};

use super::{with_p2p, Command, KadError, KadPending, Node, Reply};

impl Node {
    /// The DHT's commands: each starts a query and parks its reply, except
    /// what is answered from here (a connected peer, a local record).
    pub(super) fn handle_kad_command(&mut self, command: Command) {
        match command {
            Command::FindPeer { peer, reply } => {
                if self.peers.contains_key(&peer) {
                    let info = self.peer_info(&peer, self.peers.get(&peer));
                    let _ = reply.send(Ok(FindPeerResult {
                        peer_id: info.peer_id,
                        addrs: info.addrs,
                    }));
                    return;
                }
                let id = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                let pending = KadPending::FindPeer {
                    target: peer,
                    reply,
                };
                self.pending_kad.insert(id, pending);
            }
            Command::Provide { key, reply } => match self
                .swarm
                .behaviour_mut()
                .kad
                .start_providing(kad::RecordKey::new(&key))
            {
                Ok(id) => {
                    self.pending_kad.insert(id, KadPending::Provide(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(KadError::ProvideRefused(e.to_string())));
                }
            },
            Command::ClosestPeers { key, reply } => {
                let id = self.swarm.behaviour_mut().kad.get_closest_peers(key);
                self.pending_kad.insert(id, KadPending::ClosestPeers(reply));
            }
            Command::FindProviders { key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                let providers = HashSet::new();
                let pending = KadPending::FindProviders { providers, reply };
                self.pending_kad.insert(id, pending);
            }
            Command::PutRecord { key, value, reply } => {
                let record = kad::Record::new(kad::RecordKey::new(&key), value);
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One)
                {
                    Ok(id) => {
                        self.pending_kad.insert(id, KadPending::PutRecord(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(KadError::PutRefused(e.to_string())));
                    }
                }
            }
            Command::GetRecord { key, reply } => self.get_record(key, reply),
            _ => tracing::error!("not a DHT command"),
        }
    }

    pub(super) fn get_record(&mut self, key: Vec<u8>, reply: Reply<GetRecordResult, KadError>) {
        let key = kad::RecordKey::new(&key);
        let local = {
            use kad::store::RecordStore;
            self.swarm
                .behaviour_mut()
                .kad
                .store_mut()
                .get(&key)
                .map(|r| r.into_owned())
        };
        match local {
            Some(record) => {
                let _ = reply.send(Ok(GetRecordResult {
                    value: Bytes(record.value),
                    publisher: record.publisher.map(|p| p.to_string()),
                }));
            }
            None => {
                let id = self.swarm.behaviour_mut().kad.get_record(key);
                self.pending_kad.insert(id, KadPending::GetRecord(reply));
            }
        }
    }

    pub(super) fn handle_kad(&mut self, event: kad::Event) {
        if let kad::Event::RoutablePeer { peer, address } = event {
            // A new connection to a Kademlia peer (inserts are manual).
            self.add_route(&peer, address);
            return;
        }
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return;
        };
        let bootstrap = matches!(result, kad::QueryResult::Bootstrap(_));
        let kind = match &result {
            kad::QueryResult::Bootstrap(_) => "bootstrap",
            kad::QueryResult::GetClosestPeers(_) => "closest_peers",
            _ => "other",
        };
        tracing::debug!(
            ?id,
            kind,
            step = step.count,
            last = step.last,
            "kademlia query step"
        );
        if bootstrap && !step.last && !self.bucket_refresh {
            // The self-lookup is over and Kademlia has moved on to its
            // first bucket refresh, not polled yet: finished now, it asks
            // nobody (and so does each refresh after it, down to the last).
            if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                query.finish();
            }
        }
        // Not after each step: a bootstrap's next lookup would dial again
        // the peers its previous one just left; nor at once (see
        // `conns::LOOKUP_LINGER`).
        if step.last {
            self.lookup_over = Some(std::time::Instant::now());
            if bootstrap {
                self.bootstrap_over(&id);
            }
        }
        let Some(pending) = self.pending_kad.remove(&id) else {
            return;
        };
        if let Some(still) = self.on_progress(pending, result, step.last) {
            self.pending_kad.insert(id, still);
        }
    }

    /// One step of a query: answers its caller, or returns what is still
    /// waiting for a later step.
    fn on_progress(
        &mut self,
        pending: KadPending,
        result: kad::QueryResult,
        last: bool,
    ) -> Option<KadPending> {
        use kad::QueryResult as Q;
        match (pending, result) {
            (KadPending::FindPeer { target, reply }, Q::GetClosestPeers(result)) => {
                let found = closest(result).into_iter().find(|p| p.peer_id == target);
                if let Some(found) = found {
                    let _ = reply.send(Ok(FindPeerResult {
                        peer_id: target.to_string(),
                        addrs: found.addrs.iter().map(|a| with_p2p(a, target)).collect(),
                    }));
                } else if last {
                    let _ = reply.send(Err(KadError::PeerNotFound(target)));
                } else {
                    return Some(KadPending::FindPeer { target, reply });
                }
            }
            (KadPending::ClosestPeers(reply), Q::GetClosestPeers(result)) => {
                let peers = closest(result).iter().map(found_peer).collect();
                let _ = reply.send(Ok(ClosestPeersResult { peers }));
            }
            (KadPending::Provide(reply), Q::StartProviding(result)) => {
                let _ = reply.send(match result {
                    Ok(_) => Ok(()),
                    Err(e) => Err(KadError::ProvideFailed(e.to_string())),
                });
            }
            (KadPending::FindProviders { providers, reply }, Q::GetProviders(result)) => {
                return self.on_providers(providers, reply, result, last);
            }
            (KadPending::PutRecord(reply), Q::PutRecord(result)) => {
                let _ = reply.send(match result {
                    Ok(_) => Ok(()),
                    // The record is in the local store already, where any
                    // peer's get finds it; replication is best effort (the
                    // routing table may not know the connected peers yet).
                    Err(kad::PutRecordError::QuorumFailed { .. }) => {
                        tracing::debug!("put_record: stored locally, quorum not reached");
                        Ok(())
                    }
                    Err(e) => Err(KadError::PutFailed(e.to_string())),
                });
            }
            (KadPending::GetRecord(reply), Q::GetRecord(result)) => match result {
                Ok(kad::GetRecordOk::FoundRecord(found)) => {
                    let _ = reply.send(Ok(GetRecordResult {
                        value: Bytes(found.record.value),
                        publisher: found.record.publisher.map(|p| p.to_string()),
                    }));
                }
                Ok(_) if !last => return Some(KadPending::GetRecord(reply)),
                Ok(_) | Err(_) => {
                    let _ = reply.send(Err(KadError::NoRecord));
                }
            },
            (pending, other) => {
                tracing::debug!(?other, "unexpected kademlia result");
                if !last {
                    return Some(pending);
                }
            }
        }
        None
    }

    /// Providers add up over the steps; the last one answers with them all.
    fn on_providers(
        &mut self,
        mut providers: HashSet<PeerId>,
        reply: Reply<FindProvidersResult>,
        result: kad::GetProvidersResult,
        last: bool,
    ) -> Option<KadPending> {
        if let Ok(kad::GetProvidersOk::FoundProviders {
            providers: found, ..
        }) = result
        {
            providers.extend(found);
        }
        if !last {
            return Some(KadPending::FindProviders { providers, reply });
        }
        let list = providers
            .iter()
            .map(|p| {
                let addrs = if *p == self.peer_id {
                    self.own_addrs()
                } else {
                    self.peer_info(p, self.peers.get(p)).addrs
                };
                FindPeerResult {
                    peer_id: p.to_string(),
                    addrs,
                }
            })
            .collect();
        let _ = reply.send(Ok(FindProvidersResult { providers: list }));
        None
    }
}

/// The peers a closest-peers query found; one that timed out still found
/// what it found.
fn closest(result: kad::GetClosestPeersResult) -> Vec<kad::PeerInfo> {
    match result {
        Ok(ok) => ok.peers,
        Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
    }
}

fn found_peer(found: &kad::PeerInfo) -> FindPeerResult {
    FindPeerResult {
        peer_id: found.peer_id.to_string(),
        addrs: found
            .addrs
            .iter()
            .map(|a| with_p2p(a, found.peer_id))
            .collect(),
    }
}
