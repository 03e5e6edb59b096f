//! Binding the listen addresses at start-up, old ports first.
//!
//! Each planned address may carry a fallback: a configured `…/tcp/0` is
//! tried on the port it had last time (so that peers that remember the old
//! address find the node again), and if that port is taken now, on the
//! configured address itself, with a log line that says so. Without a
//! fallback an address that does not bind fails start-up, with the reason.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};

use crate::behaviour::Behaviour;
use crate::node::NodeError;

/// One address bound: what was configured and what it bound to.
#[derive(Debug, Clone)]
pub struct Bound {
    pub configured: Multiaddr,
    pub addrs: Vec<Multiaddr>,
}

struct Waiting {
    tried: Multiaddr,
    configured: Multiaddr,
    fallback: Option<Multiaddr>,
}

/// Bind every planned address (see [`crate::memory::NodeState::listen_plan`]):
/// `(first try, fallback)`. Returns once each has at least one address.
pub async fn bind_all(
    swarm: &mut Swarm<Behaviour>,
    plan: Vec<(Multiaddr, Option<Multiaddr>)>,
    timeout: Duration,
    why: impl Fn(&Multiaddr) -> Option<&'static str>,
) -> Result<Vec<Bound>, NodeError> {
    let mut waiting: HashMap<ListenerId, Waiting> = HashMap::new();
    let mut bound: Vec<Bound> = Vec::new();
    // A listener on an unspecified address (`0.0.0.0`) reports one address
    // per interface; those after its first are the same listener's too.
    let mut bound_by: HashMap<ListenerId, usize> = HashMap::new();
    for (first, fallback) in plan {
        let configured = fallback.clone().unwrap_or_else(|| first.clone());
        start(swarm, &mut waiting, first, configured, fallback, &why)?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    while !waiting.is_empty() {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| NodeError::ListenTimeout(timeout))?;
        let (listener_id, reason) = match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                if let Some(w) = waiting.remove(&listener_id) {
                    bound_by.insert(listener_id, bound.len());
                    bound.push(Bound {
                        configured: w.configured,
                        addrs: vec![address],
                    });
                } else if let Some(&i) = bound_by.get(&listener_id) {
                    bound[i].addrs.push(address);
                } else {
                    tracing::debug!(%address, "listen address of no planned listener");
                }
                continue;
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => (listener_id, format!("{reason:?}")),
            SwarmEvent::ListenerError { listener_id, error } => (listener_id, describe(&error)),
            other => {
                tracing::debug!(?other, "event before listening");
                continue;
            }
        };
        if let Some(w) = waiting.remove(&listener_id) {
            retry_or_fail(swarm, &mut waiting, w, reason, &why)?;
        }
    }
    Ok(bound)
}

fn start(
    swarm: &mut Swarm<Behaviour>,
    waiting: &mut HashMap<ListenerId, Waiting>,
    tried: Multiaddr,
    configured: Multiaddr,
    fallback: Option<Multiaddr>,
    why: &impl Fn(&Multiaddr) -> Option<&'static str>,
) -> Result<(), NodeError> {
    match swarm.listen_on(tried.clone()) {
        Ok(id) => {
            waiting.insert(
                id,
                Waiting {
                    tried,
                    configured,
                    fallback,
                },
            );
            Ok(())
        }
        Err(e) => {
            let w = Waiting {
                tried,
                configured,
                fallback,
            };
            retry_or_fail(swarm, waiting, w, describe(&e), why)
        }
    }
}

fn retry_or_fail(
    swarm: &mut Swarm<Behaviour>,
    waiting: &mut HashMap<ListenerId, Waiting>,
    w: Waiting,
    reason: String,
    why: &impl Fn(&Multiaddr) -> Option<&'static str>,
) -> Result<(), NodeError> {
    match w.fallback {
        Some(fallback) => {
            tracing::warn!(
                old = %w.tried,
                %reason,
                "the port this node listened on last time is taken now; listening on a new one instead \
                 (peers that remember the old address are dialed by this node)"
            );
            start(swarm, waiting, fallback, w.configured, None, why)
        }
        None => Err(NodeError::Listen {
            reason: why(&w.tried).map(str::to_owned).unwrap_or_else(|| {
                if reason.contains("Address already in use") || reason.contains("AddrInUse") {
                    format!(
                        "{reason}: another process holds this port; pick another port or stop it"
                    )
                } else {
                    reason
                }
            }),
            addr: w.tried,
        }),
    }
}

/// The error's text, or its debug form when the text is empty (some
/// transport errors display as nothing).
fn describe<E: std::fmt::Display + std::fmt::Debug>(e: &E) -> String {
    let text = e.to_string();
    if text.is_empty() {
        format!("{e:?}")
    } else {
        text
    }
}
