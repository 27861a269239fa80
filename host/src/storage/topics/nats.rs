//! The networked topic backend: each app's published events in its `TOPICS` [`EventLog`] (a
//! stream), the topic, attributes and publishing time in headers and the payload as the message
//! body. An event's id is its stream sequence as 16 hex digits ([`event_key`]), so ids sort in
//! publishing order and the execution store accepts an event by its id.

use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use bytes::Bytes;

use super::{PublishError, TopicBackend, TopicEvent};
use crate::clock::now_ms;
use crate::storage::nats::{EventLog, Nats, OpenCache, event_key, event_sequence, random_id};

/// Header: the topic an event was published to.
const TOPIC: &str = "Topic";
/// Header: the publisher's attributes, as a JSON array of [name, value] pairs.
const ATTRIBUTES: &str = "Topic-Attributes";
/// Header: when the event was published, in ms since the Unix epoch.
const PUBLISHED: &str = "Published-Ms";

/// Topic logs on NATS JetStream.
pub struct NatsTopics {
    nats: Nats,
    /// The logs opened so far, by app.
    logs: OpenCache<String, EventLog>,
}

impl NatsTopics {
    /// The topic logs on `nats` (each app's is created when first used).
    pub fn new(nats: Nats) -> NatsTopics {
        NatsTopics { nats, logs: OpenCache::default() }
    }

    async fn log(&self, app: &str) -> Result<EventLog, PublishError> {
        let open = || async { EventLog::open(&self.nats, "TOPICS", app).await.map_err(|e| failed("opening", app, e)) };
        self.logs.get_or_open(app.to_string(), open).await
    }
}

fn failed(what: &str, app: &str, e: impl std::fmt::Display) -> PublishError {
    PublishError::Storage(format!("{what} the topic log of app `{app}`: {e}"))
}

/// The event a message of the log holds.
fn event(message: StreamMessage) -> Result<TopicEvent, String> {
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_string());
    let attributes = header(ATTRIBUTES).unwrap_or_else(|| "[]".into());
    Ok(TopicEvent {
        id: event_key(message.sequence),
        topic: header(TOPIC).ok_or_else(|| format!("event {}: no topic", message.sequence))?,
        payload: message.payload.to_vec(),
        attributes: serde_json::from_str(&attributes).map_err(|e| format!("event {}: {e}", message.sequence))?,
        published_ms: header(PUBLISHED).and_then(|ms| ms.parse().ok()).unwrap_or(0),
    })
}

#[async_trait::async_trait]
impl TopicBackend for NatsTopics {
    async fn append(
        &self,
        app: &str,
        topic: &str,
        payload: Vec<u8>,
        attributes: Vec<(String, String)>,
    ) -> Result<TopicEvent, PublishError> {
        let max = self.nats.client.server_info().max_payload;
        if payload.len() > max {
            let error =
                format!("payload: {} bytes, at most {max} on this NATS cluster (its max_payload)", payload.len());
            return Err(PublishError::Invalid(error));
        }
        let published_ms = now_ms();
        // JSON escapes line breaks, which header values cannot hold.
        let encoded = serde_json::to_string(&attributes).map_err(|e| failed("appending to", app, e))?;
        let message = PublishMessage::build()
            .payload(Bytes::from(payload.clone()))
            .header(TOPIC, topic)
            .header(ATTRIBUTES, encoded.as_str())
            .header(PUBLISHED, published_ms.to_string().as_str());
        let log = self.log(app).await?;
        let sequence = log.append(&random_id(), message).await.map_err(|e| failed("appending to", app, e))?;
        Ok(TopicEvent { id: event_key(sequence), topic: topic.to_string(), payload, attributes, published_ms })
    }

    async fn pending(&self, app: &str, limit: usize) -> Result<Vec<TopicEvent>, PublishError> {
        let messages = self.log(app).await?.pending(limit).await.map_err(|e| failed("reading", app, e))?;
        messages.into_iter().map(|m| event(m).map_err(|e| failed("reading", app, e))).collect()
    }

    async fn accept(&self, app: &str, id: &str) -> Result<(), PublishError> {
        // An id that is no sequence names no event: absent, which is fine.
        let Some(sequence) = event_sequence(id.as_bytes()) else { return Ok(()) };
        self.log(app).await?.accept(sequence).await.map_err(|e| failed("accepting an event of", app, e))
    }
}
