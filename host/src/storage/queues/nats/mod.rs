//! The networked queue backend: per (app, queue) a work-queue stream read by ONE durable pull
//! consumer that every node shares, so the server hands each message to one node at a time.
//!
//! - **Leases.** A lease is a delivery, `QUEUE/ID/ATTEMPT/ACK/MAC` with ACK the delivery's ack
//!   subject (less `$JS.ACK.`): any node can answer it, so the operator API may complete a
//!   message on another node than the one that received it. The MAC (HMAC-SHA256 of the rest,
//!   by a secret every node reads from the queue's record stream) makes a lease impossible to
//!   make up from a message id: it can only be received, as on sled.
//! - **Lease length.** The server's ack deadline is one per consumer ([`ACK_WAIT`]), so the node
//!   that received a message keeps it for the `visibility` asked (see [`keeper`]): progress
//!   (`+WPI`) while more than the deadline is left, a nak when the visibility runs out. When that
//!   node dies, the server redelivers within [`ACK_WAIT`].
//! - **Attempts and dead letters.** The consumer delivers forever (`max_deliver: -1`); the server's
//!   delivery count, less the early receipts of delayed messages, is the attempt, and a message
//!   past its last attempt is returned as exhausted for the caller to dead-letter and remove.
//! - **Stale leases.** The server acks by stream sequence whatever delivery an ack subject names,
//!   so `complete` and `retry` first check that the lease is the message's last delivery: the
//!   message is still there with the lease's publish time, and no later delivery is recorded.
//!   Redeliveries (rare) are recorded in a small stream per queue, the [`Record`]s.
//! - **Delays.** 2.9 servers have no delayed publish: a delayed message carries `Visible-At` and
//!   is given back with a nak for the time left when received early.
//! - **What a node knows.** [`QueueStore::next_visible_ms`] and the corrections to the server's
//!   counts in `stats` come from what this node saw, and from what the others announce (see
//!   [`watch`], which also wakes the queue trigger).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::AckKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use tokio::sync::{Notify, OnceCell};
use tokio::task::AbortHandle;

use self::opened::{Delivery, Opened, Record};
use super::{Exhausted, Listed, Message, QueueBackend, QueueError, QueueStats, QueueStore, Received, bad_lease};
use crate::clock::now_ms;
use crate::names::dead_letters_of;
use crate::storage::nats::{Nats, random_id};

mod keeper;
mod opened;
#[cfg(test)]
mod tests;
mod watch;

/// How long the server waits for word on a delivery before it hands the message out again: the
/// longest a message leased by a node that died stays invisible.
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// How many messages a node remembers the visibility of before it forgets those visible now.
const REMEMBERED: usize = 10_000;

/// Header of a message inserted under an id of its own (else its id is its stream sequence).
const ID: &str = "Queue-Id";
/// Header of a delayed message: when it becomes visible, in ms since the Unix epoch.
const VISIBLE_AT: &str = "Visible-At";

/// Queues on NATS JetStream.
pub struct NatsQueues {
    nats: Nats,
}

impl NatsQueues {
    /// The queues on `nats` (streams are created when a queue is first used).
    pub fn new(nats: Nats) -> NatsQueues {
        NatsQueues { nats }
    }
}

impl QueueBackend for NatsQueues {
    fn open(&self, app: &str, name: &str) -> Result<Arc<dyn QueueStore>, QueueError> {
        Ok(Arc::new(NatsQueue {
            nats: self.nats.clone(),
            app: app.to_string(),
            name: name.to_string(),
            opened: OnceCell::new(),
            local: Arc::default(),
            changed: Arc::default(),
            watcher: Mutex::default(),
        }))
    }
}

/// One queue, as this node sees it.
struct NatsQueue {
    nats: Nats,
    app: String,
    name: String,
    /// The streams and consumer, opened on first use (opening is I/O, `QueueBackend::open` is not).
    opened: OnceCell<Opened>,
    local: Arc<Mutex<Local>>,
    /// Woken when another node announces a message, or the consumer holds unknown ones.
    changed: Arc<Notify>,
    /// The task watching for those.
    watcher: Mutex<Option<AbortHandle>>,
}

/// What this node knows of the queue: its leases and when messages it saw become visible.
#[derive(Default)]
struct Local {
    /// The leases this node handed out and keeps, by stream sequence.
    held: HashMap<u64, keeper::Held>,
    /// When messages this node sent, leased or gave back become visible, by stream sequence.
    visible: HashMap<u64, (u64, Seen)>,
    /// Exhausted messages handed to the caller to dead-letter: id → stream sequence.
    exhausted: HashMap<String, u64>,
    /// The stream sequence of the last message sent from this node.
    last_sent: u64,
}

/// How this node last saw a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Sent from here (the server counts it as ready even while it waits for its delay).
    Sent,
    /// Leased by this node.
    Leased,
    /// Given back by this node (the server counts it as leased until it is handed out again).
    GivenBack,
}

impl Local {
    /// Note when message `sequence` becomes visible.
    fn saw(&mut self, sequence: u64, at: u64, how: Seen) {
        // A node that sends but never receives would only add: past times are then forgotten.
        if self.visible.len() >= REMEMBERED {
            let now = now_ms();
            self.visible.retain(|_, (at, _)| *at > now);
        }
        self.visible.insert(sequence, (at, how));
    }

    /// Stop keeping the lease of message `sequence`, if this node holds one.
    fn release(&mut self, sequence: u64) {
        if let Some(held) = self.held.remove(&sequence) {
            held.task.abort();
        }
    }
}

/// The id of a message: its `Queue-Id` header, else its stream sequence as 16 hex digits.
fn message_id(headers: Option<&HeaderMap>, sequence: u64) -> String {
    match headers.and_then(|h| h.get(ID)) {
        Some(id) => id.as_str().to_string(),
        None => format!("{sequence:016x}"),
    }
}

impl NatsQueue {
    /// The first `max` messages of the stream, oldest first, with their sequences.
    async fn walk(&self, opened: &Opened, max: usize) -> Result<Vec<(u64, Listed)>, QueueError> {
        let (first, last) = opened.sequences().await?;
        let mut listed = Vec::new();
        // Removed messages leave gaps in the sequence: those read as absent.
        for sequence in first..=last {
            if listed.len() == max {
                break;
            }
            if let Some(message) = opened.message(sequence).await? {
                let id = message_id(Some(&message.headers), sequence);
                listed.push((sequence, Listed { id, body: message.payload.to_vec() }));
            }
        }
        Ok(listed)
    }

    async fn opened(&self) -> Result<&Opened, QueueError> {
        let open = || async {
            let opened = Opened::open(&self.nats, &self.app, &self.name).await?;
            let watcher = watch::start(opened.clone(), self.local.clone(), self.changed.clone()).await?;
            *self.watcher.lock().unwrap() = Some(watcher);
            Ok(opened)
        };
        self.opened.get_or_try_init(open).await
    }

    /// The delivery a lease of this queue names.
    fn delivery(&self, opened: &Opened, lease: &str) -> Result<Delivery, QueueError> {
        let mut parts = lease.split('/');
        let (Some(_), Some(_), Some(_), Some(ack), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_lease(lease));
        };
        let delivery = Delivery::parse(&format!("$JS.ACK.{ack}"))
            .filter(|d| d.stream == opened.stream_name())
            .ok_or_else(|| bad_lease(lease))?;
        match opened.signed(&lease[..lease.len() - mac.len() - 1], mac) {
            true => Ok(delivery),
            false => Err(QueueError::LeaseExpired(lease.to_string())),
        }
    }

    /// Publish a message, idempotently under `message_id`; its stream sequence.
    async fn publish(&self, body: Vec<u8>, message: PublishMessage, message_id: &str) -> Result<u64, QueueError> {
        let opened = self.opened().await?;
        let max = self.nats.client.server_info().max_payload;
        if body.len() > max {
            return Err(QueueError::Invalid(format!(
                "body: {} bytes, at most {max} on this NATS cluster (its max_payload)",
                body.len()
            )));
        }
        let message = message.payload(Bytes::from(body));
        let message = message.message_id(message_id);
        let subject = opened.subject().to_string();
        let ack = self
            .nats
            .retry(|| async { self.nats.js.send_publish(subject.clone(), message.clone()).await?.await })
            .await
            .map_err(|e| QueueError::Storage(format!("sending to queue `{}`: {e}", self.name)))?;
        Ok(ack.sequence)
    }

    /// Take one delivered message: a lease, an exhausted message, or (received early) nothing.
    async fn take(
        &self,
        opened: &Opened,
        message: async_nats::jetstream::Message,
        visibility: Duration,
        max_attempts: u32,
        received: &mut Received,
    ) -> Result<(), QueueError> {
        let reply = message.reply.as_ref().map(|r| r.to_string()).unwrap_or_default();
        let delivery = Delivery::parse(&reply).ok_or_else(|| opened.failed("reading a delivery", reply.clone()))?;
        let sequence = delivery.sequence;
        let headers = message.headers.as_ref();
        let now = now_ms();
        let early = headers.and_then(|h| h.get(VISIBLE_AT)).and_then(|v| v.as_str().parse::<u64>().ok());
        let early = early.filter(|&at| at > now);
        // First deliveries of messages due now, nearly all of them, need no record.
        let record = match delivery.delivered == 1 && early.is_none() {
            true => Record::default(),
            false => opened.record(sequence).await?,
        };
        if let Some(at) = early {
            let record = Record { delivered: delivery.delivered, early: record.early + 1 };
            opened.set_record(sequence, record).await?;
            opened.answer(&delivery.reply, AckKind::Nak(Some(Duration::from_millis(at - now)))).await?;
            self.local.lock().unwrap().saw(sequence, at, Seen::Sent);
            return Ok(());
        }
        let attempt = delivery.delivered.saturating_sub(record.early);
        let id = message_id(headers, sequence);
        if attempt > u64::from(max_attempts) {
            let mut local = self.local.lock().unwrap();
            local.exhausted.insert(id.clone(), sequence);
            local.visible.remove(&sequence);
            received.exhausted.push((id, message.payload.to_vec()));
            return Ok(());
        }
        if attempt > 1 && record.delivered < delivery.delivered {
            // Makes the leases of earlier deliveries stale.
            opened.set_record(sequence, Record { delivered: delivery.delivered, ..record }).await?;
        }
        let ack = delivery.reply.strip_prefix("$JS.ACK.").unwrap_or(&delivery.reply);
        let unsigned = format!("{}/{id}/{attempt}/{ack}", self.name);
        let lease = format!("{unsigned}/{}", opened.sign(&unsigned));
        let deadline = now + visibility.as_millis() as u64;
        self.local.lock().unwrap().saw(sequence, deadline, Seen::Leased);
        keeper::keep(opened, &self.local, delivery, deadline);
        let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
        received.leased.push(Message { id, body: message.payload.to_vec(), attempt, lease });
        Ok(())
    }

    /// Note and announce a message sent from this node, visible from `at` on.
    async fn sent(&self, sequence: u64, at: u64) -> Result<(), QueueError> {
        {
            let mut local = self.local.lock().unwrap();
            local.saw(sequence, at, Seen::Sent);
            local.last_sent = local.last_sent.max(sequence);
        }
        self.opened().await?.announce(sequence, at, Seen::Sent).await;
        Ok(())
    }

    /// Forget this node's lease of `delivery` (it is settled), if it holds that one.
    fn settled(&self, delivery: &Delivery) {
        let mut local = self.local.lock().unwrap();
        if local.held.get(&delivery.sequence).is_some_and(|held| held.delivery.delivered == delivery.delivered) {
            local.release(delivery.sequence);
        }
    }
}

#[async_trait::async_trait]
impl QueueStore for NatsQueue {
    async fn send(&self, body: Vec<u8>, delay: Duration) -> Result<String, QueueError> {
        let visible_at = now_ms() + delay.as_millis() as u64;
        let mut message = PublishMessage::build();
        if !delay.is_zero() {
            message = message.header(VISIBLE_AT, visible_at.to_string().as_str());
        }
        let sequence = self.publish(body, message, &random_id()).await?;
        self.sent(sequence, visible_at).await?;
        Ok(format!("{sequence:016x}"))
    }

    async fn insert(&self, id: &str, body: Vec<u8>) -> Result<(), QueueError> {
        let sequence = self.publish(body, PublishMessage::build().header(ID, id), id).await?;
        self.sent(sequence, now_ms()).await
    }

    async fn receive(
        &self,
        max: u32,
        visibility: Duration,
        max_bytes: u64,
        max_attempts: u32,
    ) -> Result<Received, QueueError> {
        let opened = self.opened().await?;
        keeper::give_back_expired(opened, &self.local).await;
        let mut received = Received::default();
        let bounded = max_bytes != u64::MAX;
        let mut bytes = 0u64;
        let started = now_ms();
        loop {
            // The first message is leased whatever its size; the server counts the next ones
            // (with their headers) against what is left of the budget.
            let (wanted, budget) = match (bounded, received.leased.is_empty()) {
                (true, true) => (1, None),
                (true, false) => (max as usize - received.leased.len(), Some(max_bytes.saturating_sub(bytes))),
                (false, _) => (max as usize - received.leased.len(), None),
            };
            if budget == Some(0) {
                break;
            }
            let batch = opened.fetch(wanted, budget).await?;
            let drained = batch.len() < wanted;
            for message in batch {
                bytes = bytes.saturating_add(message.payload.len() as u64);
                self.take(opened, message, visibility, max_attempts, &mut received).await?;
            }
            if drained || received.leased.len() == max as usize {
                if drained {
                    // What this node thought visible when the fetch began was taken (by this
                    // node or another), and its leases that ran out were given back above.
                    self.local.lock().unwrap().visible.retain(|_, (at, _)| *at > started);
                }
                break;
            }
        }
        Ok(received)
    }

    async fn complete(&self, lease: &str) -> Result<(), QueueError> {
        let opened = self.opened().await?;
        let delivery = self.delivery(opened, lease)?;
        let (_, record) = opened.current(&delivery, lease).await?;
        self.settled(&delivery);
        opened.answer(&delivery.reply, AckKind::Ack).await?;
        if record != Record::default() {
            opened.drop_record(delivery.sequence).await?;
        }
        self.local.lock().unwrap().visible.remove(&delivery.sequence);
        Ok(())
    }

    async fn retry(&self, lease: &str, delay: Duration, max_attempts: u32) -> Result<Option<Exhausted>, QueueError> {
        let opened = self.opened().await?;
        let delivery = self.delivery(opened, lease)?;
        let (message, record) = opened.current(&delivery, lease).await?;
        let sequence = delivery.sequence;
        if delivery.delivered.saturating_sub(record.early) >= u64::from(max_attempts) {
            let id = message_id(Some(&message.headers), sequence);
            self.local.lock().unwrap().exhausted.insert(id.clone(), sequence);
            return Ok(Some((id, message.payload.to_vec())));
        }
        self.settled(&delivery);
        // Recorded before the nak: from now on this lease is stale, even before the redelivery.
        opened.set_record(sequence, Record { delivered: delivery.delivered + 1, ..record }).await?;
        opened.answer(&delivery.reply, AckKind::Nak((!delay.is_zero()).then_some(delay))).await?;
        let at = now_ms() + delay.as_millis() as u64;
        self.local.lock().unwrap().saw(sequence, at, Seen::GivenBack);
        opened.announce(sequence, at, Seen::GivenBack).await;
        Ok(None)
    }

    async fn remove(&self, id: &str) -> Result<(), QueueError> {
        let opened = self.opened().await?;
        let known = self.local.lock().unwrap().exhausted.remove(id);
        let sequence = match known {
            Some(sequence) => sequence,
            // A message this node did not see exhausted: found by its id if that is its sequence,
            // else, in a dead-letter queue (a dead letter keeps the id it had in its queue, and
            // only an operator removes one), by a walk of the stream. Elsewhere it is gone
            // already: a walk there would read a whole queue for nothing.
            None => {
                let at_id = match u64::from_str_radix(id, 16) {
                    Ok(sequence) => {
                        opened.message(sequence).await?.filter(|m| message_id(Some(&m.headers), sequence) == id)
                    }
                    Err(_) => None,
                };
                match at_id {
                    Some(message) => message.sequence,
                    None if dead_letters_of(&self.name).is_some() => {
                        match self.walk(opened, usize::MAX).await?.into_iter().find(|(_, m)| m.id == id) {
                            Some((sequence, _)) => sequence,
                            None => return Ok(()),
                        }
                    }
                    None => return Ok(()),
                }
            }
        };
        {
            let mut local = self.local.lock().unwrap();
            local.release(sequence);
            local.visible.remove(&sequence);
        }
        // Deleting the message also ends its delivery, if it is leased.
        opened.delete(sequence).await?;
        opened.drop_record(sequence).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let last_sent = self.local.lock().unwrap().last_sent;
        let info = self.opened().await?.consumer_info(last_sent).await?;
        let (mut ready, mut waiting) = (info.num_pending, info.num_ack_pending as u64);
        // The server counts a delayed message as ready and a message given back as leased
        // until it is handed out again; what this node saw corrects that. Leases are the ones
        // this node holds: the server does not tell a lease from a message held for its delay.
        let now = now_ms();
        let mut leased = 0;
        for &(at, how) in self.local.lock().unwrap().visible.values() {
            leased += u64::from(how == Seen::Leased && at > now);
            if how == Seen::Sent && at > now && ready > 0 {
                (ready, waiting) = (ready - 1, waiting + 1);
            } else if how == Seen::GivenBack && at <= now && waiting > 0 {
                (ready, waiting) = (ready + 1, waiting - 1);
            }
        }
        Ok(QueueStats { ready, waiting, leased: leased.min(waiting) })
    }

    async fn list(&self, max: usize) -> Result<Vec<Listed>, QueueError> {
        let opened = self.opened().await?;
        Ok(self.walk(opened, max).await?.into_iter().map(|(_, listed)| listed).collect())
    }

    fn next_visible_ms(&self) -> Option<u64> {
        self.local.lock().unwrap().visible.values().map(|&(at, _)| at).min()
    }

    async fn changed(&self) {
        // Opening starts the watcher: a node that has not used the queue yet learns of messages.
        if let Err(error) = self.opened().await {
            tracing::warn!(%error, queue = %self.name, "cannot watch a queue");
            tokio::time::sleep(ACK_WAIT).await;
            return;
        }
        self.changed.notified().await;
    }
}

impl Drop for NatsQueue {
    /// Leases of a node that stops are given back at once (not after [`ACK_WAIT`]).
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.lock().unwrap().take() {
            watcher.abort();
        }
        let held: Vec<keeper::Held> = self.local.lock().unwrap().held.drain().map(|(_, held)| held).collect();
        let (Some(opened), Ok(runtime)) = (self.opened.get().cloned(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        for held in &held {
            held.task.abort();
        }
        let local = self.local.clone();
        runtime.spawn(async move {
            for held in held {
                keeper::give_back(&opened, &local, &held.delivery).await;
            }
        });
    }
}
