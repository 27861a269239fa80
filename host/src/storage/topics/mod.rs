//! Publish/subscribe topics: the library behind `host:api/topics` and the operator API.
//!
//! Publishing appends one durable event to the app's topic log; the trigger runner turns each
//! event into one queued execution per `[[trigger.topic]]` subscription of the topic and accepts
//! it (removes it from the log). From then on every subscription's delivery is an execution of
//! its own, retried by its own policy and re-run after a crash (at least once). The log lives in
//! a [`TopicBackend`], shaped as a stream read by a durable consumer: [`TopicBackend::pending`]
//! reads what was not accepted yet, [`TopicBackend::accept`] acknowledges. The embedded backend
//! is [`SledTopics`], the networked one [`NatsTopics`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use self::nats::NatsTopics;
pub use self::sled::SledTopics;
pub(crate) use self::sled::events_tree;

mod nats;
mod sled;
#[cfg(test)]
pub(crate) mod suite;

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

/// The durable log of published events, per app.
#[async_trait::async_trait]
pub trait TopicBackend: Send + Sync {
    /// Append an event to `app`'s log, durable on return; the event with the id (sorting in
    /// publishing order) and time the backend gave it.
    async fn append(
        &self,
        app: &str,
        topic: &str,
        payload: Vec<u8>,
        attributes: Vec<(String, String)>,
    ) -> Result<TopicEvent, PublishError>;

    /// Up to `limit` events of `app` not accepted yet, oldest first.
    async fn pending(&self, app: &str, limit: usize) -> Result<Vec<TopicEvent>, PublishError>;

    /// Remove an event from `app`'s log once it was handed to every subscription (absent is fine).
    async fn accept(&self, app: &str, id: &str) -> Result<(), PublishError>;
}

/// The topics of every app.
#[derive(Clone)]
pub struct Topics {
    backend: Arc<dyn TopicBackend>,
}

impl Topics {
    /// The topics of `backend`.
    pub fn new(backend: Arc<dyn TopicBackend>) -> Topics {
        Topics { backend }
    }

    /// Publish to `topic` of `app`; the event's id once it is durable.
    pub async fn publish(
        &self,
        app: &str,
        topic: &str,
        payload: Vec<u8>,
        attributes: Vec<(String, String)>,
    ) -> Result<String, PublishError> {
        super::check_name(topic).map_err(|e| PublishError::Invalid(format!("topic {e}")))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(PublishError::Invalid(format!("payload: {} bytes, at most {MAX_PAYLOAD}", payload.len())));
        }
        Ok(self.backend.append(app, topic, payload, attributes).await?.id)
    }

    /// Up to `limit` events of `app` not handed to its subscriptions yet, oldest first (the
    /// topic triggers accept each through the execution store, which removes it).
    pub async fn pending(&self, app: &str, limit: usize) -> Result<Vec<TopicEvent>, PublishError> {
        self.backend.pending(app, limit).await
    }
}
