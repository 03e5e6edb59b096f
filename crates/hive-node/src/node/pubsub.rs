//! Gossipsub: subscriptions, publishing (with Hive's id envelope), and the
//! messages and topic events that come in.

use hive_proto::{
    Bytes, Event, PublishResult, SubscribeResult, TopicInfo, TopicPeersResult, TopicsResult,
};
use libp2p::gossipsub;

use super::{Node, PubsubError};
use crate::envelope;

fn check_topic(topic: &str) -> Result<(), PubsubError> {
    if topic.is_empty() {
        return Err(PubsubError::EmptyTopic);
    }
    Ok(())
}

impl Node {
    pub(super) fn subscribe(&mut self, topic: &str) -> Result<SubscribeResult, PubsubError> {
        check_topic(topic)?;
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        let ident = gossipsub::IdentTopic::new(topic);
        let changed = gossipsub
            .subscribe(&ident)
            .map_err(|e| PubsubError::Subscribe(format!("{e:?}")))?;
        if changed {
            self.sync.subscribed(topic, Some(crate::sync::now_ms()));
            // Scored from now on: its invalid messages count against their sender.
            if let Err(e) = gossipsub.set_topic_params(ident, crate::scoring::topic_params()) {
                tracing::warn!(topic, error = e, "topic not scored");
            }
        }
        Ok(SubscribeResult { changed })
    }

    pub(super) fn unsubscribe(&mut self, topic: &str) -> Result<SubscribeResult, PubsubError> {
        check_topic(topic)?;
        let changed = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .unsubscribe(&gossipsub::IdentTopic::new(topic));
        if changed {
            self.sync.subscribed(topic, None);
        }
        Ok(SubscribeResult { changed })
    }

    /// The topics this node is subscribed to, by name.
    pub(super) fn subscribed_topics(&self) -> Vec<String> {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        gossipsub.topics().map(|t| t.to_string()).collect()
    }

    pub(super) fn topics(&self) -> TopicsResult {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let topics = gossipsub
            .topics()
            .map(|hash| TopicInfo {
                topic: hash.to_string(),
                peers: gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&hash))
                    .count(),
            })
            .collect();
        TopicsResult { topics }
    }

    pub(super) fn topic_peers(&self, topic: &str) -> TopicPeersResult {
        let hash = gossipsub::IdentTopic::new(topic).hash();
        let peers = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&&hash))
            .map(|(peer, _)| peer.to_string())
            .collect();
        TopicPeersResult { peers }
    }

    pub(super) fn publish(
        &mut self,
        topic: &str,
        data: Vec<u8>,
        id: Option<String>,
    ) -> Result<PublishResult, PubsubError> {
        check_topic(topic)?;
        if let Some(id) = &id {
            if !envelope::valid_id(id) {
                return Err(PubsubError::BadId {
                    id: id.clone(),
                    max: envelope::MAX_ID_LEN,
                });
            }
        }
        if data.len() > self.max_message_size {
            return Err(PubsubError::TooLarge {
                size: data.len(),
                limit: self.max_message_size,
            });
        }
        let payload = match &id {
            Some(id) => envelope::wrap(id, &data),
            None => data,
        };
        let topic_id = gossipsub::IdentTopic::new(topic);
        let kept = self.keeps_own.then(|| payload.clone());
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic_id, payload)
        {
            Ok(message_id) => {
                let id = id.unwrap_or_else(|| message_id.to_string());
                if let Some(raw) = kept {
                    self.keep_own(topic, &id, &message_id, raw);
                }
                Ok(PublishResult { id })
            }
            // The same id was published moments ago: it is out already.
            Err(gossipsub::PublishError::Duplicate) if id.is_some() => Ok(PublishResult {
                id: id.unwrap_or_default(),
            }),
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Err(PubsubError::NoPeers {
                topic: topic.to_string(),
            }),
            Err(e) => Err(PubsubError::Failed {
                topic: topic.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Keep this node's own message in its history (`raw`: what went over
    /// gossip, with its sequence number; it is signed when a peer asks, see
    /// `history::own`), so that a node that was away can fetch it from its
    /// author too, not only from another subscriber: with two nodes, the
    /// author is the only one that has it.
    fn keep_own(&mut self, topic: &str, id: &str, message_id: &gossipsub::MessageId, raw: Vec<u8>) {
        let Some(seqno) = self.signatures.take_own(message_id) else {
            return;
        };
        self.intake.offer(crate::history::Entry::Message {
            topic: topic.to_string(),
            from: self.peer_id.to_string(),
            id: id.to_string(),
            data: raw,
            seqno: Some(Bytes(seqno.to_be_bytes().to_vec())),
            signature: None,
            key: None,
            origin: crate::history::Origin::Own,
        });
    }

    pub(super) fn handle_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                message_id,
                message,
                ..
            } => {
                let (id, data) = match envelope::unwrap(&message.data) {
                    Some((id, payload)) => (id.to_string(), payload.to_vec()),
                    None => (message_id.to_string(), message.data),
                };
                let signed = self
                    .signatures
                    .take(message.source, message.sequence_number);
                self.intake.offer(crate::history::Entry::Message {
                    topic: message.topic.to_string(),
                    from: message.source.map(|p| p.to_string()).unwrap_or_default(),
                    id,
                    data,
                    seqno: message
                        .sequence_number
                        .map(|n| Bytes(n.to_be_bytes().to_vec())),
                    signature: signed.as_ref().map(|s| Bytes(s.signature.clone())),
                    key: signed.and_then(|s| s.key).map(Bytes),
                    origin: crate::history::Origin::Gossip,
                })
            }
            gossipsub::Event::Subscribed { peer_id, topic, .. } => {
                self.emit(Event::TopicPeerJoined {
                    topic: topic.to_string(),
                    peer_id: peer_id.to_string(),
                });
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } => {
                self.emit(Event::TopicPeerLeft {
                    topic: topic.to_string(),
                    peer_id: peer_id.to_string(),
                });
            }
            other => tracing::debug!(?other, "gossipsub event"),
        }
    }
}
