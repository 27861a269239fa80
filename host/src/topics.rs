//! Publish/subscribe topics: the library behind `host:api/topics` and the operator API.
//!
//! Publishing writes one durable event to the app's topic log (`topic-events/APP`); the trigger
//! runner turns each event into one queued execution per `[[trigger.topic]]` subscription of
//! the topic, in one transaction, and removes it. From then on every subscription's delivery is
//! an execution of its own, retried by its own policy and re-run after a crash (at least once).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::executions::now_ms;
use crate::store::Store;

/// The largest payload.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// A published message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicEvent {
    /// Unique in the host; ids sort in publishing order.
    pub id: String,
    /// The topic.
    pub topic: String,
    /// What was published.
    pub payload: Vec<u8>,
    /// (name, value) pairs set by the publisher.
    pub attributes: Vec<(String, String)>,
    /// When, in ms since the Unix epoch.
    pub published_ms: u64,
}

impl TopicEvent {
    /// The event as the JSON of the WIT record `topics.event` (the argument of subscribers).
    pub fn to_wit_json(&self) -> Value {
        use base64::Engine as _;
        json!({
            "id": self.id,
            "topic": self.topic,
            "payload": base64::engine::general_purpose::STANDARD.encode(&self.payload),
            "attributes": self.attributes,
            "published-ms": self.published_ms,
        })
    }
}

/// Why publishing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// An argument breaks the rules.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error("topic storage: {0}")]
    Storage(String),
}

/// The log of published events of `app` not yet handed to its subscriptions.
pub(crate) fn events_tree(store: &Store, app: &str) -> Result<sled::Tree, sled::Error> {
    store.tree(&format!("topic-events/{app}"))
}

/// Publish to `topic` of `app`; the event's id once it is on disk.
pub async fn publish(
    store: &Store,
    app: &str,
    topic: &str,
    payload: Vec<u8>,
    attributes: Vec<(String, String)>,
) -> Result<String, PublishError> {
    let storage = |e: String| PublishError::Storage(e);
    topic.parse::<crate::manifest::ResourceName>().map_err(|e| PublishError::Invalid(format!("topic {e}")))?;
    if payload.len() > MAX_PAYLOAD {
        return Err(PublishError::Invalid(format!("payload: {} bytes, at most {MAX_PAYLOAD}", payload.len())));
    }
    let id = format!("{:016x}", store.next_id().map_err(|e| storage(e.to_string()))?);
    let event = TopicEvent { id: id.clone(), topic: topic.to_string(), payload, attributes, published_ms: now_ms() };
    let bytes = serde_json::to_vec(&event).map_err(|e| storage(e.to_string()))?;
    events_tree(store, app).and_then(|t| t.insert(id.as_bytes(), bytes)).map_err(|e| storage(e.to_string()))?;
    store.durable().await.map_err(storage)?;
    store.new_events.notify_waiters();
    Ok(id)
}
