//! [`EventLog`]: an app's log of item or topic events as a JetStream stream. An event's key is
//! its stream sequence as 16 hex digits (so keys sort in log order, and a topic event's id can be
//! its key); accepting an event deletes its message, so what is pending is what the stream still
//! holds.

use super::{Nats, NatsError};
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};

/// One app's event log of one kind.
#[derive(Clone)]
pub struct EventLog {
    nats: Nats,
    stream: stream::Stream,
    subject: String,
}

impl EventLog {
    /// The log of `kind` (`ITEMS` for item events, `TOPICS` for published events) of `app`,
    /// created on first use.
    pub async fn open(nats: &Nats, kind: &str, app: &str) -> Result<EventLog, NatsError> {
        EventLog::open_named(nats, nats.name(kind, &[app])).await
    }

    /// The log in stream `name` (a name made by [`Nats::name`]), created on first use.
    pub async fn open_named(nats: &Nats, name: String) -> Result<EventLog, NatsError> {
        let config = stream::Config {
            subjects: vec![format!("{name}.events")],
            name: name.clone(),
            num_replicas: nats.replicas,
            max_bytes: -1,
            max_message_size: -1,
            ..Default::default()
        };
        let stream = nats.stream(config.clone()).await?;
        Ok(EventLog { nats: nats.clone(), stream, subject: format!("{name}.events") })
    }

    /// Append an event, durable on return: its sequence. `id` makes a retried append (after a
    /// lost acknowledgement, within two minutes) a no-op that answers the first one's sequence.
    pub async fn append(&self, id: &str, event: PublishMessage) -> Result<u64, NatsError> {
        let event = event.message_id(id);
        let ack = self
            .nats
            .retry(|| async { self.nats.js.send_publish(self.subject.clone(), event.clone()).await?.await })
            .await?;
        Ok(ack.sequence)
    }

    /// Up to `limit` events not accepted yet, oldest first.
    pub async fn pending(&self, limit: usize) -> Result<Vec<StreamMessage>, NatsError> {
        let mut events = Vec::new();
        let mut next = 1;
        while events.len() < limit {
            let found = self
                .nats
                .retry(|| async {
                    match self.stream.get_first_raw_message_by_subject(&self.subject, next).await {
                        Ok(message) => Ok(Some(message)),
                        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            match found {
                Some(message) => {
                    next = message.sequence + 1;
                    events.push(message);
                }
                None => break,
            }
        }
        Ok(events)
    }

    /// The sequence of the last event appended (accepted or not; 0 before the first): it
    /// changes whenever an event is appended.
    pub async fn last_sequence(&self) -> Result<u64, NatsError> {
        self.nats
            .retry(|| {
                let mut stream = self.stream.clone();
                async move { stream.info().await.map(|i| i.state.last_sequence) }
            })
            .await
    }

    /// Remove the event with sequence `sequence` (absent is fine).
    pub async fn accept(&self, sequence: u64) -> Result<(), NatsError> {
        self.nats
            .retry(|| async {
                match self.stream.delete_message(sequence).await {
                    Ok(_) => Ok(()),
                    // Deleted already (by another node accepting it at the same moment, or an
                    // earlier try): 10043 inside the stream, 10057 below its first message.
                    Err(e) if ["error code 10043)", "error code 10057)"].iter().any(|c| e.to_string().contains(c)) => {
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            })
            .await
    }
}

/// The key of the event at `sequence`, as [`crate::storage::executions::EventRef`] carries it.
pub fn event_key(sequence: u64) -> String {
    format!("{sequence:016x}")
}

/// The sequence of the event with key `key`.
pub fn event_sequence(key: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(key).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn pending_until_accepted() {
        let nats = crate::storage::nats::testing::nats().await;
        let log = EventLog::open(&nats, "TOPICS", "app").await.unwrap();
        assert!(log.pending(10).await.unwrap().is_empty());
        let mut sequences = Vec::new();
        for (id, body) in [("a", "one"), ("b", "two"), ("c", "three")] {
            sequences.push(log.append(id, PublishMessage::build().payload(Bytes::from(body))).await.unwrap());
        }
        let again = log.append("b", PublishMessage::build().payload(Bytes::from("two"))).await.unwrap();
        assert_eq!(again, sequences[1], "a retried append is the first one");
        log.accept(sequences[1]).await.unwrap();
        log.accept(sequences[1]).await.unwrap();
        let pending: Vec<Bytes> = log.pending(10).await.unwrap().into_iter().map(|m| m.payload).collect();
        assert_eq!(pending, [Bytes::from("one"), Bytes::from("three")]);
        assert_eq!(log.pending(1).await.unwrap().len(), 1);
        assert_eq!(event_sequence(event_key(sequences[2]).as_bytes()), Some(sequences[2]));
    }
}
