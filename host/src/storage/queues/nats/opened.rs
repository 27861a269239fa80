//! A queue's streams and consumer, and the requests made on them.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, PullConsumer};
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind, RetentionPolicy};
use async_nats::jetstream::{self, AckKind};
use bytes::Bytes;
use futures_util::StreamExt;
use ring::hmac;

use super::{ACK_WAIT, Seen};
use crate::storage::nats::{Nats, NatsError, random_id};
use crate::storage::queues::QueueError;

/// The durable consumer every node reads a queue through.
const CONSUMER: &str = "work";

/// How long a fetch waits for its next message before it takes the batch as complete.
const FETCH_WAIT: Duration = Duration::from_secs(5);

/// How long counting messages waits for the consumer to see the messages this node sent.
const CATCH_UP: Duration = Duration::from_millis(200);

/// How long a fetch waits when there is nothing to hand out. A publish is acknowledged by the
/// stream's leader, while the consumer's leader may be another server that has not applied it
/// yet: a fetch that did not wait at all could miss a message sent just before.
const FETCH_EXPIRES: Duration = Duration::from_millis(20);

/// One delivery of a message, as its ack subject
/// (`$JS.ACK.STREAM.CONSUMER.DELIVERED.SEQUENCE.CONSUMER_SEQUENCE.PUBLISHED_NS.PENDING`) says.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    /// The ack subject.
    pub reply: String,
    /// The stream's name.
    pub stream: String,
    /// How many times the server has delivered the message, this delivery included.
    pub delivered: u64,
    /// The message's stream sequence.
    pub sequence: u64,
    /// When the message was stored, in ns since the Unix epoch.
    pub published_ns: i128,
}

impl Delivery {
    /// The delivery of ack subject `reply`, if it is one.
    pub fn parse(reply: &str) -> Option<Delivery> {
        let tokens: Vec<&str> = reply.strip_prefix("$JS.ACK.")?.split('.').collect();
        // Servers from 2.10 on may send the longer form with a domain and an account first
        // (and a token last).
        let at = match tokens.len() {
            7 => 0,
            9 | 10 => 2,
            _ => return None,
        };
        Some(Delivery {
            reply: reply.to_string(),
            stream: tokens[at].to_string(),
            delivered: tokens[at + 2].parse().ok()?,
            sequence: tokens[at + 3].parse().ok()?,
            published_ns: tokens[at + 5].parse().ok()?,
        })
    }
}

/// The lease key of a queue, kept at `subject` of its record stream: made by the first node that
/// opens the queue (two at once publish under one message id, so the first one's is kept).
async fn secret(nats: &Nats, records: &stream::Stream, subject: &str) -> Result<hmac::Key, NatsError> {
    let read = || async {
        match records.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(message.payload)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    let key = match nats.retry(read).await? {
        Some(key) => key,
        None => {
            let fresh = PublishMessage::build().payload(Bytes::from(random_id())).message_id("secret");
            nats.retry(|| async { nats.js.send_publish(subject.to_string(), fresh.clone()).await?.await }).await?;
            nats.retry(read).await?.ok_or_else(|| NatsError::Request(format!("{subject}: written, then missing")))?
        }
    };
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &key))
}

/// What the deliveries of a message were, beyond the server's count: kept (in a stream of the
/// queue's own) only for messages delivered more than once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    /// The last delivery handed out (or, after a retry, the next one): earlier leases are stale.
    pub delivered: u64,
    /// Deliveries that were no attempt: the message was received before its delay was over.
    pub early: u64,
}

/// A queue's streams and consumer.
#[derive(Clone)]
pub(super) struct Opened {
    nats: Nats,
    name: String,
    stream: stream::Stream,
    subject: String,
    consumer: PullConsumer,
    records: stream::Stream,
    records_subject: String,
    /// This node (this process's store of the queue), in announcements.
    node: String,
    /// The key that signs leases, the same on every node.
    secret: hmac::Key,
}

impl Opened {
    /// The streams and consumer of queue `name` of `app`, created on first use.
    pub async fn open(nats: &Nats, app: &str, name: &str) -> Result<Opened, QueueError> {
        let failed = |what: &str, e: NatsError| QueueError::Storage(format!("opening queue `{name}` ({what}): {e}"));
        let stream_name = nats.name("Q", &[app, name]);
        let subject = format!("{stream_name}.m");
        let config = stream::Config {
            name: stream_name.clone(),
            subjects: vec![subject.clone()],
            retention: RetentionPolicy::WorkQueue,
            num_replicas: nats.replicas,
            max_bytes: -1,
            max_message_size: -1,
            ..Default::default()
        };
        let stream = nats.stream(config.clone()).await.map_err(|e| failed("stream", e))?;
        let consumer_config = consumer::pull::Config {
            durable_name: Some(CONSUMER.to_string()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            // Attempts are counted and dead letters moved by us, never by the server.
            max_deliver: -1,
            // Messages waiting for their delay count as unacknowledged: no limit.
            max_ack_pending: -1,
            ..Default::default()
        };
        let consumer = nats
            .retry(|| stream.get_or_create_consumer(CONSUMER, consumer_config.clone()))
            .await
            .map_err(|e| failed("consumer", e))?;
        let records_name = nats.name("QR", &[app, name]);
        let records_config = stream::Config {
            name: records_name.clone(),
            subjects: vec![format!("{records_name}.>")],
            max_messages_per_subject: 1,
            num_replicas: nats.replicas,
            max_bytes: -1,
            max_message_size: -1,
            ..Default::default()
        };
        let records = nats.stream(records_config.clone()).await.map_err(|e| failed("records", e))?;
        let secret =
            secret(nats, &records, &format!("{records_name}.secret")).await.map_err(|e| failed("secret", e))?;
        Ok(Opened {
            nats: nats.clone(),
            name: name.to_string(),
            stream,
            subject,
            consumer,
            records,
            records_subject: records_name,
            node: random_id(),
            secret,
        })
    }

    /// The MAC of a lease, as hex.
    pub fn sign(&self, lease: &str) -> String {
        hmac::sign(&self.secret, lease.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `mac` is the MAC of `lease` (compared in constant time).
    pub fn signed(&self, lease: &str, mac: &str) -> bool {
        let bytes: Option<Vec<u8>> =
            (0..mac.len()).step_by(2).map(|i| mac.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect();
        bytes.is_some_and(|bytes| hmac::verify(&self.secret, lease.as_bytes(), &bytes).is_ok())
    }

    /// The error for a request on this queue that failed.
    pub fn failed(&self, what: &str, e: impl std::fmt::Display) -> QueueError {
        QueueError::Storage(format!("{what} of queue `{}`: {e}", self.name))
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream.cached_info().config.name
    }

    /// This node, as its announcements name it.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The core NATS subject (outside the stream) of announcements.
    fn announced(&self) -> String {
        format!("{}.announced", self.stream_name())
    }

    /// Tell the other nodes that message `sequence` is visible from `at` on (at most once: a
    /// node that misses it finds the message when it next looks).
    pub async fn announce(&self, sequence: u64, at: u64, how: Seen) {
        let how = if how == Seen::GivenBack { "g" } else { "s" };
        let text = format!("{} {sequence} {at} {how}", self.node);
        if let Err(error) = self.nats.client.publish(self.announced(), Bytes::from(text)).await {
            tracing::debug!(%error, queue = %self.name, "cannot announce a message");
        }
    }

    /// What an announcement says: the node, the message's stream sequence, when it becomes
    /// visible and how the node saw it.
    pub fn announced_message(text: &str) -> Option<(&str, u64, u64, Seen)> {
        let mut parts = text.split(' ');
        let (node, sequence, at, how) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let how = if how == "g" { Seen::GivenBack } else { Seen::Sent };
        Some((node, sequence.parse().ok()?, at.parse().ok()?, how))
    }

    /// The announcements of every node.
    pub async fn announcements(&self) -> Result<async_nats::Subscriber, QueueError> {
        self.nats.client.subscribe(self.announced()).await.map_err(|e| self.failed("watching", e))
    }

    /// The subject messages are sent to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Up to `max` deliveries (whose messages fit in `max_bytes`, with their headers), without
    /// waiting for messages that are not there.
    pub async fn fetch(&self, max: usize, max_bytes: Option<u64>) -> Result<Vec<jetstream::Message>, QueueError> {
        let request = || async {
            let mut fetch = self.consumer.fetch().max_messages(max).expires(FETCH_EXPIRES);
            if let Some(bytes) = max_bytes {
                fetch = fetch.max_bytes(usize::try_from(bytes).unwrap_or(usize::MAX));
            }
            fetch.messages().await
        };
        let mut batch = self.nats.retry(request).await.map_err(|e| self.failed("receiving", e))?;
        let mut messages = Vec::new();
        loop {
            match tokio::time::timeout(FETCH_WAIT, batch.next()).await {
                Ok(Some(Ok(message))) => messages.push(message),
                Err(_) | Ok(None) => break,
                // 409: the next message is over the byte budget.
                Ok(Some(Err(e))) if e.to_string().contains("409") => break,
                Ok(Some(Err(e))) if messages.is_empty() => return Err(self.failed("receiving", e)),
                // The messages delivered so far are leased: keep them.
                Ok(Some(Err(e))) => {
                    tracing::warn!(queue = %self.name, error = %e, "a fetch ended early");
                    break;
                }
            }
        }
        Ok(messages)
    }

    /// Answer a delivery (ack, nak, ...) and wait for the server to confirm it; from any node.
    pub async fn answer(&self, reply: &str, kind: AckKind) -> Result<(), QueueError> {
        let payload = Bytes::from(kind);
        self.nats
            .retry(|| self.nats.client.request(reply.to_string(), payload.clone()))
            .await
            .map(drop)
            .map_err(|e| self.failed("answering a delivery", e))
    }

    /// Tell the server a delivery is still being worked on (its ack deadline starts again).
    pub async fn progress(&self, reply: &str) -> Result<(), QueueError> {
        let payload = Bytes::from(AckKind::Progress);
        self.nats.client.publish(reply.to_string(), payload).await.map_err(|e| self.failed("keeping a lease", e))
    }

    /// The message at `sequence`, if it is still in the queue.
    pub async fn message(&self, sequence: u64) -> Result<Option<StreamMessage>, QueueError> {
        self.nats
            .retry(|| async {
                match self.stream.get_raw_message(sequence).await {
                    Ok(message) => Ok(Some(message)),
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|e| self.failed("reading a message", e))
    }

    /// The first and last sequences the stream holds (first > last when it is empty).
    pub async fn sequences(&self) -> Result<(u64, u64), QueueError> {
        let info =
            self.nats.retry(|| self.stream.get_info()).await.map_err(|e| self.failed("reading the stream", e))?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// Remove the message at `sequence` (absent is fine).
    pub async fn delete(&self, sequence: u64) -> Result<(), QueueError> {
        self.nats
            .retry(|| async {
                match self.stream.delete_message(sequence).await {
                    Ok(_) => Ok(()),
                    // No such message (removed already).
                    Err(e) if e.to_string().contains("error code 10057)") => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|e| self.failed("removing a message", e))
    }

    /// The message a lease names and its record, if the lease is its last delivery.
    pub async fn current(&self, delivery: &Delivery, lease: &str) -> Result<(StreamMessage, Record), QueueError> {
        let (message, record) = tokio::try_join!(self.message(delivery.sequence), self.record(delivery.sequence))?;
        match message {
            Some(message)
                if message.time.unix_timestamp_nanos() == delivery.published_ns
                    && record.delivered <= delivery.delivered =>
            {
                Ok((message, record))
            }
            _ => Err(QueueError::LeaseExpired(lease.to_string())),
        }
    }

    /// The record of the message at `sequence` (all zero when there is none).
    pub async fn record(&self, sequence: u64) -> Result<Record, QueueError> {
        let subject = format!("{}.{sequence}", self.records_subject);
        let found = self
            .nats
            .retry(|| async {
                match self.records.get_last_raw_message_by_subject(&subject).await {
                    Ok(message) => Ok(Some(message.payload)),
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|e| self.failed("reading a delivery record", e))?;
        let Some(payload) = found else { return Ok(Record::default()) };
        let text = String::from_utf8_lossy(&payload);
        let mut numbers = text.split(' ').map(|n| n.parse().unwrap_or(0));
        Ok(Record { delivered: numbers.next().unwrap_or(0), early: numbers.next().unwrap_or(0) })
    }

    /// Replace the record of the message at `sequence`.
    pub async fn set_record(&self, sequence: u64, record: Record) -> Result<(), QueueError> {
        let subject = format!("{}.{sequence}", self.records_subject);
        let payload = Bytes::from(format!("{} {}", record.delivered, record.early));
        // Writing the same record twice is harmless: only the last one is kept.
        self.nats
            .retry(|| async { self.nats.js.publish(subject.clone(), payload.clone()).await?.await })
            .await
            .map(drop)
            .map_err(|e| self.failed("writing a delivery record", e))
    }

    /// Remove the record of the message at `sequence` (absent is fine).
    pub async fn drop_record(&self, sequence: u64) -> Result<(), QueueError> {
        let subject = format!("{}.{sequence}", self.records_subject);
        self.nats
            .retry(|| async { self.records.purge().filter(subject.clone()).await })
            .await
            .map(drop)
            .map_err(|e| self.failed("removing a delivery record", e))
    }

    /// The consumer's counts, once it has seen the message at `sequence` (or after a while:
    /// the consumer's leader may apply the stream's messages after the stream's leader
    /// acknowledged them).
    pub async fn consumer_info(&self, sequence: u64) -> Result<consumer::Info, QueueError> {
        let give_up = std::time::Instant::now() + CATCH_UP;
        loop {
            let info =
                self.nats.retry(|| self.consumer.get_info()).await.map_err(|e| self.failed("counting messages", e))?;
            // Messages after the last delivered one are all pending, unless one was removed
            // before its delivery: then this never holds and the wait runs out.
            let seen = info.delivered.stream_sequence + info.num_pending;
            if seen >= sequence || std::time::Instant::now() > give_up {
                return Ok(info);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
