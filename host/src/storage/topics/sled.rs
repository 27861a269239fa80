//! The embedded topic backend: one sled tree per app (`topic-events/APP`), event id → event as
//! JSON. The trigger runner removes accepted events in the same sled transaction that writes
//! their executions (see [`events_tree`]).

use std::sync::Arc;

use super::{PublishError, TopicBackend, TopicEvent};
use crate::clock::now_ms;
use crate::store::Store;

/// Topic logs in the embedded store.
pub struct SledTopics {
    store: Arc<Store>,
}

impl SledTopics {
    /// The topic logs of `store`.
    pub fn new(store: Arc<Store>) -> SledTopics {
        SledTopics { store }
    }
}

fn storage(e: impl std::fmt::Display) -> PublishError {
    PublishError::Storage(e.to_string())
}

/// The log of published events of `app` not yet handed to its subscriptions.
pub(crate) fn events_tree(store: &Store, app: &str) -> Result<sled::Tree, sled::Error> {
    store.tree(&format!("topic-events/{app}"))
}

#[async_trait::async_trait]
impl TopicBackend for SledTopics {
    async fn append(
        &self,
        app: &str,
        topic: &str,
        payload: Vec<u8>,
        attributes: Vec<(String, String)>,
    ) -> Result<TopicEvent, PublishError> {
        let id = format!("{:016x}", self.store.next_id().map_err(storage)?);
        let event = TopicEvent { id, topic: topic.to_string(), payload, attributes, published_ms: now_ms() };
        let bytes = serde_json::to_vec(&event).map_err(storage)?;
        events_tree(&self.store, app).and_then(|t| t.insert(event.id.as_bytes(), bytes)).map_err(storage)?;
        self.store.durable().await.map_err(PublishError::Storage)?;
        self.store.new_events.notify_waiters();
        Ok(event)
    }

    async fn pending(&self, app: &str, limit: usize) -> Result<Vec<TopicEvent>, PublishError> {
        let tree = events_tree(&self.store, app).map_err(storage)?;
        let events = tree.iter().values().take(limit);
        events.map(|bytes| serde_json::from_slice(&bytes.map_err(storage)?).map_err(storage)).collect()
    }

    async fn accept(&self, app: &str, id: &str) -> Result<(), PublishError> {
        events_tree(&self.store, app).and_then(|t| t.remove(id.as_bytes())).map_err(storage)?;
        self.store.durable().await.map_err(PublishError::Storage)
    }
}
