//! Direct messages (acknowledged once the receiver stored them) and Hive's
//! ping: the two request-response protocols.

use std::sync::atomic::Ordering;
use std::time::Instant;

use hive_proto::{PingResult, SendResult};
use libp2p::{request_response, PeerId};

use super::{Delivery, DirectError, Node, PingError, Reply};
use crate::behaviour::{DirectAck, DirectRequest, PingRequest, PingResponse, Refusal};

impl Node {
    pub(super) fn send_direct(
        &mut self,
        peer: PeerId,
        data: Vec<u8>,
        id: Option<String>,
        reply: Reply<SendResult, DirectError>,
    ) {
        if data.len() > self.max_message_size {
            let _ = reply.send(Err(DirectError::TooLarge {
                size: data.len(),
                limit: self.max_message_size,
            }));
            return;
        }
        if peer == self.peer_id {
            let _ = reply.send(Err(DirectError::ToSelf));
            return;
        }
        let id = id.unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
        let request = DirectRequest {
            id: id.clone(),
            data,
        };
        let request_id = self
            .swarm
            .behaviour_mut()
            .direct
            .send_request(&peer, request);
        self.pending_sends.insert(request_id, (id, reply));
    }

    pub(super) fn handle_direct(
        &mut self,
        event: request_response::Event<DirectRequest, DirectAck>,
    ) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                if !self
                    .direct_limiter
                    .admit(peer, request.data.len(), Instant::now())
                {
                    self.refuse_direct(peer, request.id, channel);
                    return;
                }
                // Acknowledged once on disk; a retried duplicate is dropped
                // by the history (same sender and id) and acknowledged too.
                self.intake.offer(crate::history::Entry::Direct {
                    from: peer.to_string(),
                    id: request.id,
                    data: request.data,
                    ack: channel,
                });
            }
            E::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((id, reply)) = self.pending_sends.remove(&request_id) {
                    let result = if let Some(refusal) = response.refused {
                        Err(DirectError::Refused { id, refusal })
                    } else if response.id == id {
                        Ok(SendResult { id })
                    } else {
                        Err(DirectError::WrongAck {
                            id,
                            got: response.id,
                        })
                    };
                    let _ = reply.send(result);
                }
            }
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((id, reply)) = self.pending_sends.remove(&request_id) {
                    let _ = reply.send(Err(DirectError::NotAcked {
                        id,
                        peer,
                        delivery: Delivery::of(&error),
                        reason: error.to_string(),
                    }));
                }
            }
            E::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound direct message failed");
            }
            E::ResponseSent { .. } => {}
        }
    }

    /// Answer a direct message over its sender's rate limit with a refusal
    /// (never a silent drop: the sender's daemon reports `rate_limited`).
    fn refuse_direct(
        &mut self,
        peer: PeerId,
        id: String,
        channel: request_response::ResponseChannel<DirectAck>,
    ) {
        let n = self.refusals.direct.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(%peer, refused = n, "direct messages refused: sender over its rate limit");
        }
        let ack = DirectAck {
            id,
            refused: Some(Refusal::RateLimited),
        };
        if self
            .swarm
            .behaviour_mut()
            .direct
            .send_response(channel, ack)
            .is_err()
        {
            tracing::debug!(%peer, "direct message refusal could not be sent");
        }
    }

    pub(super) fn ping(&mut self, peer: PeerId, reply: Reply<PingResult, PingError>) {
        let nonce = rand::random();
        let request_id = self
            .swarm
            .behaviour_mut()
            .hping
            .send_request(&peer, PingRequest { nonce });
        self.pending_pings
            .insert(request_id, (Instant::now(), reply));
    }

    pub(super) fn handle_hping(
        &mut self,
        event: request_response::Event<PingRequest, PingResponse>,
    ) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                let _ = self.swarm.behaviour_mut().hping.send_response(
                    channel,
                    PingResponse {
                        nonce: request.nonce,
                    },
                );
            }
            E::Message {
                message: M::Response { request_id, .. },
                ..
            } => {
                if let Some((sent, reply)) = self.pending_pings.remove(&request_id) {
                    let rtt_ms = sent.elapsed().as_secs_f64() * 1000.0;
                    let _ = reply.send(Ok(PingResult { rtt_ms }));
                }
            }
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending_pings.remove(&request_id) {
                    let _ = reply.send(Err(PingError::Failed {
                        peer,
                        delivery: Delivery::of(&error),
                        reason: error.to_string(),
                    }));
                }
            }
            E::InboundFailure { .. } | E::ResponseSent { .. } => {}
        }
    }
}
