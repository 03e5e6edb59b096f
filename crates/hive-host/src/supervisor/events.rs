//! What the daemon pushes: messages go into the store (deduplicated, gaps
//! repaired from the daemon's history, see `inbound`) before they are
//! broadcast; other events update the status and are broadcast as they are.

use hive_proto::Event;
use tokio::sync::broadcast;

use super::Supervisor;
use crate::inbound::Inbound;
use crate::ipc_client::IpcClient;
use crate::state::HostEvent;
use hive_proto::sync::lock;

impl Supervisor {
    /// Store the daemon's messages and re-broadcast its events to host
    /// subscribers. Returns only if the store fails for good (then the
    /// daemon is restarted and the host resumes from its stored position).
    ///
    /// `client` is the link these events arrive on, also used to fetch from
    /// the daemon's history what did not arrive (see `inbound`).
    pub(super) async fn forward_events(
        &self,
        mut events: hive_proto::fanout::Receiver<Event>,
        client: &IpcClient,
    ) {
        let connected = Inbound::connect(
            self.shared.store.clone(),
            client.clone(),
            self.shared.events.clone(),
            self.shared.metrics.clone(),
            self.shared.inbound.clone(),
        )
        .await;
        let mut inbound = match connected {
            Ok(inbound) => inbound,
            Err(e) => {
                tracing::error!(error = %e, "cannot resume from the daemon's history");
                return;
            }
        };
        loop {
            // Whatever is queued goes into one batch (one transaction).
            let mut batch = Vec::new();
            let mut lagged = false;
            let mut next = match events.recv().await {
                Ok(event) => Some(event),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    lagged = true;
                    None
                }
                // The link is gone; the health loop notices and decides.
                Err(broadcast::error::RecvError::Closed) => {
                    return futures::future::pending().await;
                }
            };
            loop {
                match next.take() {
                    Some(Event::Lagged { missed }) => {
                        tracing::debug!(missed, "daemon dropped events for the host; repairing");
                        lagged = true;
                    }
                    Some(event @ (Event::Message { .. } | Event::Direct { .. })) => {
                        batch.push(event)
                    }
                    Some(event) => self.on_daemon_event(event),
                    None => {}
                }
                // Full: the rest waits in the queue for the next batch. (Taking
                // one more first and handing it on as a plain event, as this
                // did, sent a message to the host's clients unstored and
                // without a cursor, and B saw a false gap.)
                if batch.len() >= crate::inbound::MAX_BATCH {
                    break;
                }
                next = match events.try_recv() {
                    Ok(event) => Some(event),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        lagged = true;
                        None
                    }
                    Err(_) => break,
                };
            }
            if let Err(e) = inbound.absorb(batch, lagged).await {
                tracing::error!(error = %e, "cannot store inbound messages; reconnecting to resume");
                return;
            }
        }
    }

    /// A daemon event that is not a message: status kept up to date, then
    /// re-broadcast.
    fn on_daemon_event(&self, event: Event) {
        let m = &self.shared.metrics;
        match &event {
            Event::PeerConnected { .. } => {
                let mut s = lock(&self.shared.status);
                s.peers += 1;
                m.peers.set(s.peers as i64);
            }
            Event::PeerDisconnected { .. } => {
                let mut s = lock(&self.shared.status);
                s.peers = s.peers.saturating_sub(1);
                m.peers.set(s.peers as i64);
            }
            Event::NewListenAddr { addr } => {
                let mut s = lock(&self.shared.status);
                if !s.listen_addrs.contains(addr) {
                    s.listen_addrs.push(addr.clone());
                }
            }
            Event::ExpiredListenAddr { addr } => {
                lock(&self.shared.status).listen_addrs.retain(|a| a != addr);
            }
            _ => {}
        }
        let _ = self.shared.events.send(HostEvent::Daemon(event));
    }
}
