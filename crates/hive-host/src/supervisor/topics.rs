//! The subscriptions the API asked for: kept in memory and in the store, and
//! replayed on every new daemon so that a restart is invisible to clients.

use std::time::Duration;

use hive_proto::Op;

use super::Supervisor;
use crate::ipc_client::IpcClient;
use hive_proto::sync::lock;

const RESUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Supervisor {
    /// Topics the API wants subscribed.
    pub fn desired_topics(&self) -> Vec<String> {
        lock(&self.shared.topics).iter().cloned().collect()
    }

    /// Record a subscription (in memory and in the store); true if it was
    /// already wanted.
    pub async fn want_topic(&self, topic: &str) -> bool {
        let already = !lock(&self.shared.topics).insert(topic.to_owned());
        if !already {
            if let Err(e) = self
                .shared
                .store
                .set_topic_wanted(topic.to_owned(), true)
                .await
            {
                tracing::warn!(%topic, error = %e, "cannot store the subscription");
            }
        }
        already
    }

    /// Forget a subscription; true if it was wanted.
    pub async fn unwant_topic(&self, topic: &str) -> bool {
        let removed = lock(&self.shared.topics).remove(topic);
        if let Err(e) = self
            .shared
            .store
            .set_topic_wanted(topic.to_owned(), false)
            .await
        {
            tracing::warn!(%topic, error = %e, "cannot forget the stored subscription");
        }
        removed
    }

    /// Make the new daemon look like the old one to API clients: their
    /// subscriptions. (Peers and ports the daemon restores itself.)
    pub(super) async fn on_ready(&self, client: &IpcClient) {
        // Pipelined: one round trip for all topics, not one per topic.
        let resubscribes = self.desired_topics().into_iter().map(|topic| async move {
            let op = Op::Subscribe {
                topic: topic.clone(),
            };
            if let Err(e) = client.request(op, RESUBSCRIBE_TIMEOUT).await {
                tracing::warn!(%topic, error = %e, "re-subscribe failed");
            }
        });
        futures::future::join_all(resubscribes).await;
        *lock(&self.shared.client) = Some(client.clone());
    }
}
