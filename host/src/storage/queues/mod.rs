//! Durable work queues with leases: the library behind `host:api/queues`, `[[trigger.queue]]`
//! and the operator API.
//!
//! [`Queues`] opens each queue once per host through a [`QueueBackend`]; a [`Queue`] checks the
//! arguments, keeps the queue's settings and moves messages past their last attempt to the
//! dead-letter queue `NAME.dead`. The backend stores messages and their leases. Its shape is that
//! of a stream with a durable pull consumer: a lease is an ack deadline, [`QueueStore::retry`] a
//! nak with a delay, [`QueueStore::complete`] an ack. The embedded backend is [`SledQueues`],
//! the networked one [`NatsQueues`].
//!
//! A lease is `QUEUE/` followed by what the backend needs to find the delivery again (see
//! [`lease_queue`]); on sled `QUEUE/ID/ATTEMPT/NONCE`, where the nonce is 128 random bits stored
//! with the message, so that a lease cannot be guessed from a message id, only received.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

pub use self::nats::NatsQueues;
pub use self::sled::SledQueues;

mod nats;
mod sled;
#[cfg(test)]
pub(crate) mod suite;

/// Why a queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The lease is not the message's current one.
    #[error("lease `{0}` is not current: the message was completed, given back or received again")]
    LeaseExpired(String),
    /// An argument breaks the rules.
    #[error("{0}")]
    Invalid(String),
    /// No message with this id in the queue: (queue, id).
    #[error("no message `{1}` in `{0}`")]
    NoMessage(String, String),
    /// The store failed.
    #[error("queue storage: {0}")]
    Storage(String),
}

fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage(e.to_string())
}

/// Most messages one `receive` hands out.
pub const MAX_RECEIVE: u32 = 100;

/// The longest lease.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// The largest message body.
pub const MAX_BODY: usize = 16 << 20;

pub use crate::names::DEAD_LETTER_SUFFIX;
use crate::names::{dead_letter_queue, dead_letters_of};

/// A leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unique in its queue (on sled, in the host); ids sort in sending order. A dead letter keeps
    /// the id it had.
    pub id: String,
    /// What was sent.
    pub body: Vec<u8>,
    /// Which delivery this is, from 1.
    pub attempt: u32,
    /// Pass to [`Queue::complete`] or [`Queue::retry`]: `QUEUE/` then the backend's part.
    pub lease: String,
}

/// A message as [`Queue::list`] shows it: it stays where it is, leased or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its id (see [`Message::id`]).
    pub id: String,
    /// What was sent.
    pub body: Vec<u8>,
}

/// How many messages a queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Visible now.
    pub ready: u64,
    /// Leased, or waiting for their delay.
    pub waiting: u64,
    /// Of those waiting, the leased ones (the rest wait for a delay or a retry's backoff). On
    /// NATS, the leases this process holds: the server counts a message held for its delay as
    /// leased too.
    pub leased: u64,
}

/// The settings of one queue (from the app's `[queue.NAME]`; callers convert).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Deliveries of a message before it moves to the dead-letter queue.
    pub max_attempts: u32,
}

/// A message that had its last attempt, to be moved to the dead-letter queue: its id and body.
pub type Exhausted = (String, Vec<u8>);

/// What [`QueueStore::receive`] found.
#[derive(Debug, Default)]
pub struct Received {
    /// Messages leased now, oldest first.
    pub leased: Vec<Message>,
    /// Visible messages past their last attempt, left in place for the caller to dead-letter.
    pub exhausted: Vec<Exhausted>,
}

/// Where queues live: opens one queue's store.
pub trait QueueBackend: Send + Sync {
    /// The store of queue `name` of `app`, created on first use. Called once per queue and
    /// process: messages leased by a process that stopped become visible again.
    fn open(&self, app: &str, name: &str) -> Result<Arc<dyn QueueStore>, QueueError>;
}

/// The messages of one queue. Every change is durable when its call returns.
#[async_trait::async_trait]
pub trait QueueStore: Send + Sync {
    /// Add a message, visible after `delay`; its id.
    async fn send(&self, body: Vec<u8>, delay: Duration) -> Result<String, QueueError>;

    /// Add a message under an existing id (taken from another queue), visible now.
    async fn insert(&self, id: &str, body: Vec<u8>) -> Result<(), QueueError>;

    /// Lease up to `max` visible messages, oldest first, for `visibility`, stopping once their
    /// bodies exceed `max_bytes` (the first is leased whatever its size). Messages already
    /// delivered `max_attempts` times are returned as exhausted instead.
    async fn receive(
        &self,
        max: u32,
        visibility: Duration,
        max_bytes: u64,
        max_attempts: u32,
    ) -> Result<Received, QueueError>;

    /// [`QueueStore::receive`] for a consumer that runs the messages at once, without a byte
    /// budget: it may return before the leases are on disk. They get there with the next flush,
    /// and at the latest with the [`QueueStore::complete`] or [`QueueStore::retry`] of the lease
    /// (a backend's flush covers every write before it), so a completion is never durable
    /// without its lease. A crash before that gives a message back with this delivery not
    /// counted among its attempts; no message is lost. By default, [`QueueStore::receive`].
    async fn receive_to_run(&self, max: u32, visibility: Duration, max_attempts: u32) -> Result<Received, QueueError> {
        self.receive(max, visibility, u64::MAX, max_attempts).await
    }

    /// Remove the message of a current lease (an ack).
    async fn complete(&self, lease: &str) -> Result<(), QueueError>;

    /// Give the message of a current lease back, visible after `delay` (a nak with a delay);
    /// when it had `max_attempts` deliveries it is left as it is and returned as exhausted.
    async fn retry(&self, lease: &str, delay: Duration, max_attempts: u32) -> Result<Option<Exhausted>, QueueError>;

    /// Remove a message whatever its state (after it was copied to the dead-letter queue).
    async fn remove(&self, id: &str) -> Result<(), QueueError>;

    /// Messages ready now and waiting.
    async fn stats(&self) -> Result<QueueStats, QueueError>;

    /// The first `max` messages, oldest first, whatever their state; nothing changes.
    async fn list(&self, max: usize) -> Result<Vec<Listed>, QueueError>;

    /// When the next message becomes visible (now or later), if any: a hint for consumers
    /// deciding how long to sleep, so answered without waiting (a networked backend answers
    /// from what it last saw).
    fn next_visible_ms(&self) -> Option<u64>;

    /// Resolves when another process may have made a message visible (a networked backend's
    /// other nodes), so that a consumer sleeping on [`QueueStore::next_visible_ms`] looks
    /// again; never, by default.
    async fn changed(&self) {
        std::future::pending::<()>().await
    }
}

/// Every queue a host has opened.
pub struct Queues {
    backend: Arc<dyn QueueBackend>,
    open: Mutex<HashMap<(String, String), Arc<Queue>>>,
}

impl Queues {
    /// The queues of `backend`.
    pub fn new(backend: Arc<dyn QueueBackend>) -> Queues {
        Queues { backend, open: Mutex::default() }
    }

    /// Queue `name` of `app`, with `settings` (created on first use).
    pub fn open(&self, app: &str, name: &str, settings: impl Into<QueueSettings>) -> Result<Arc<Queue>, QueueError> {
        let settings = settings.into();
        validate_name(name)?;
        let mut open = self.open.lock().unwrap();
        let key = (app.to_string(), name.to_string());
        if let Some(queue) = open.get(&key) {
            queue.max_attempts.store(settings.max_attempts, Ordering::Relaxed);
            return Ok(queue.clone());
        }
        let queue = Arc::new(Queue {
            name: name.to_string(),
            app: app.to_string(),
            store: self.backend.open(app, name)?,
            max_attempts: AtomicU32::new(settings.max_attempts),
            sent: Notify::new(),
        });
        open.insert(key, queue.clone());
        Ok(queue)
    }

    /// The dead-letter queue of `queue` (which never dead-letters).
    fn dead_letters(&self, queue: &Queue) -> Result<Arc<Queue>, QueueError> {
        self.open(&queue.app, &dead_letter_queue(&queue.name), QueueSettings { max_attempts: u32::MAX })
    }
}

/// A queue name: a resource name, optionally followed by `.dead`.
fn validate_name(name: &str) -> Result<(), QueueError> {
    let base = dead_letters_of(name).unwrap_or(name);
    super::check_name(base).map_err(|e| QueueError::Invalid(format!("queue {e}")))
}

/// The arguments of a receive must be in range.
fn check_receive(max: u32, visibility: Duration) -> Result<(), QueueError> {
    if !(1..=MAX_RECEIVE).contains(&max) {
        return Err(QueueError::Invalid(format!("max: {max}, expected 1 to {MAX_RECEIVE}")));
    }
    if visibility.is_zero() || visibility > MAX_VISIBILITY {
        return Err(QueueError::Invalid(format!("visibility: {visibility:?}, expected 1ms to 12h")));
    }
    Ok(())
}

/// One queue.
pub struct Queue {
    name: String,
    app: String,
    store: Arc<dyn QueueStore>,
    max_attempts: AtomicU32,
    /// Woken when a message is sent or given back.
    pub(crate) sent: Notify,
}

/// The queue a lease is for: the part before its first `/` (the rest is the backend's).
pub fn lease_queue(lease: &str) -> Result<&str, QueueError> {
    match lease.split_once('/') {
        Some((queue, _)) => Ok(queue),
        None => Err(bad_lease(lease)),
    }
}

/// The error for a lease string that no `receive` returned.
fn bad_lease(lease: &str) -> QueueError {
    QueueError::Invalid(format!("lease `{lease}`: expected one returned by `receive` (QUEUE/ID/ATTEMPT/NONCE)"))
}

impl Queue {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Add a message, visible after `delay`; its id once it is on disk.
    pub async fn send(&self, body: Vec<u8>, delay: Duration) -> Result<String, QueueError> {
        if body.len() > MAX_BODY {
            return Err(QueueError::Invalid(format!("body: {} bytes, at most {MAX_BODY}", body.len())));
        }
        if delay > MAX_VISIBILITY {
            return Err(QueueError::Invalid(format!("delay: {delay:?}, at most {MAX_VISIBILITY:?}")));
        }
        let id = self.store.send(body, delay).await?;
        self.sent.notify_waiters();
        Ok(id)
    }

    /// Lease up to `max` visible messages, oldest first, for `visibility`. Messages past their
    /// last attempt move to the dead-letter queue instead.
    pub async fn receive(&self, queues: &Queues, max: u32, visibility: Duration) -> Result<Vec<Message>, QueueError> {
        self.receive_within(queues, max, visibility, u64::MAX).await
    }

    /// [`Queue::receive`], leasing no more messages once their bodies hold `max_bytes` (the first
    /// is leased whatever its size).
    pub async fn receive_within(
        &self,
        queues: &Queues,
        max: u32,
        visibility: Duration,
        max_bytes: u64,
    ) -> Result<Vec<Message>, QueueError> {
        check_receive(max, visibility)?;
        let max_attempts = self.max_attempts.load(Ordering::Relaxed);
        let received = self.store.receive(max, visibility, max_bytes, max_attempts).await?;
        self.hand_out(queues, received).await
    }

    /// [`Queue::receive`] for a consumer that calls a function with each message at once: the
    /// leases may still be on their way to the disk ([`QueueStore::receive_to_run`]), which
    /// saves the consumer a wait for a flush per receive.
    pub(crate) async fn receive_to_run(
        &self,
        queues: &Queues,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        check_receive(max, visibility)?;
        let max_attempts = self.max_attempts.load(Ordering::Relaxed);
        let received = self.store.receive_to_run(max, visibility, max_attempts).await?;
        self.hand_out(queues, received).await
    }

    /// The messages leased by a receive, once those past their last attempt were dead-lettered.
    async fn hand_out(&self, queues: &Queues, received: Received) -> Result<Vec<Message>, QueueError> {
        if !received.exhausted.is_empty() {
            self.dead_letter(queues, received.exhausted).await?;
        }
        Ok(received.leased)
    }

    /// Remove the message of a current lease.
    pub async fn complete(&self, lease: &str) -> Result<(), QueueError> {
        self.check_lease(lease)?;
        self.store.complete(lease).await
    }

    /// Give a leased message back, visible again after `delay` (or dead-lettered when that was
    /// its last attempt).
    pub async fn retry(&self, queues: &Queues, lease: &str, delay: Duration) -> Result<(), QueueError> {
        if delay > MAX_VISIBILITY {
            return Err(QueueError::Invalid(format!("delay: {delay:?}, at most {MAX_VISIBILITY:?}")));
        }
        self.check_lease(lease)?;
        match self.store.retry(lease, delay, self.max_attempts.load(Ordering::Relaxed)).await? {
            Some(exhausted) => self.dead_letter(queues, vec![exhausted]).await,
            None => {
                self.sent.notify_waiters();
                Ok(())
            }
        }
    }

    /// Messages ready now and waiting.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.store.stats().await
    }

    /// The first `max` messages, oldest first, leased or not; nothing changes.
    pub async fn list(&self, max: usize) -> Result<Vec<Listed>, QueueError> {
        self.store.list(max).await
    }

    /// Send dead letter `id` of this dead-letter queue back to its queue, under the same id,
    /// visible now with its attempts counted from 0; then remove it here. Copied first, so a
    /// crash between the two leaves it in both queues, never in neither.
    pub async fn requeue(&self, queues: &Queues, id: &str) -> Result<(), QueueError> {
        let Some(base) = dead_letters_of(&self.name) else {
            return Err(QueueError::Invalid(format!(
                "`{}` is not a dead-letter queue (`NAME{DEAD_LETTER_SUFFIX}`)",
                self.name
            )));
        };
        let message = self.store.list(usize::MAX).await?.into_iter().find(|m| m.id == id);
        let Some(message) = message else { return Err(QueueError::NoMessage(self.name.clone(), id.to_string())) };
        let queue = queues.open(&self.app, base, QueueSettings { max_attempts: u32::MAX })?;
        queue.store.insert(id, message.body).await?;
        queue.sent.notify_waiters();
        self.store.remove(id).await
    }

    /// Remove message `id`, leased or not (absent is fine).
    pub async fn remove(&self, id: &str) -> Result<(), QueueError> {
        self.store.remove(id).await
    }

    /// When the next message becomes visible (now or later), if any.
    pub fn next_visible_ms(&self) -> Option<u64> {
        self.store.next_visible_ms()
    }

    /// Resolves when another node may have made a message visible ([`QueueStore::changed`]).
    pub async fn changed(&self) {
        self.store.changed().await
    }

    /// A lease must be well formed and for this queue.
    fn check_lease(&self, lease: &str) -> Result<(), QueueError> {
        let queue = lease_queue(lease)?;
        if queue != self.name {
            return Err(QueueError::Invalid(format!("lease `{lease}` is for queue `{queue}`, not `{}`", self.name)));
        }
        Ok(())
    }

    /// Move messages to the dead-letter queue: written there first, then removed here, so a
    /// failure in between duplicates a message rather than losing it.
    async fn dead_letter(&self, queues: &Queues, messages: Vec<Exhausted>) -> Result<(), QueueError> {
        let dead = queues.dead_letters(self)?;
        for (id, body) in messages {
            tracing::warn!(queue = %self.name, app = %self.app, message = %id, "message moved to the dead-letter queue after its last attempt");
            dead.store.insert(&id, body).await?;
            self.store.remove(&id).await?;
        }
        dead.sent.notify_waiters();
        Ok(())
    }
}
