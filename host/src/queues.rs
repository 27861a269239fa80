//! Durable work queues with leases: the library behind `host:api/queues`, `[[trigger.queue]]`
//! and the operator API.
//!
//! One sled tree per (app, queue). `m{id}` holds a message (its state and body) and `v{time}{id}`
//! indexes it by the time it becomes visible, so `receive` reads the visible messages oldest
//! first without scanning the rest. Writes go index first, message second: after a crash an
//! index entry may point at nothing or at an older state (it is dropped when met), but a message
//! is never left without one. Every change is on disk before the call that made it returns.
//!
//! A lease is `QUEUE/ID/ATTEMPT/NONCE`: the nonce is 128 random bits stored with the message, so
//! a lease cannot be guessed from a message id, only received.
//!
//! Leases belong to the process that handed them out: when a queue is first opened, messages
//! leased by a host that stopped become visible at once. A message delivered `max-attempts`
//! times that becomes visible again moves to the dead-letter queue `NAME.dead`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::executions::now_ms;
use crate::manifest::{DEAD_LETTER_SUFFIX, QueueSpec};
use crate::store::Store;

/// Why a queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The lease is not the message's current one.
    #[error("lease `{0}` is not current: the message was completed, given back or received again")]
    LeaseExpired(String),
    /// An argument breaks the rules.
    #[error("{0}")]
    Invalid(String),
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

/// A leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unique in the host; ids sort in sending order.
    pub id: String,
    /// What was sent.
    pub body: Vec<u8>,
    /// Which delivery this is, from 1.
    pub attempt: u32,
    /// Pass to [`Queue::complete`] or [`Queue::retry`]: `QUEUE/ID/ATTEMPT/NONCE`.
    pub lease: String,
}

/// How many messages a queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Visible now.
    pub ready: u64,
    /// Leased, or waiting for their delay.
    pub waiting: u64,
}

/// A message as stored: `visible_ms` (8 bytes), `attempt` (4), a lease flag (1: 0 none, 1 leased
/// without a nonce, as stored before nonces, 2 leased with the 16-byte nonce that follows), then
/// the body.
struct Stored {
    visible_ms: u64,
    attempt: u32,
    leased: bool,
    /// The secret part of the current lease; none for a lease stored before nonces (no lease
    /// string matches it).
    nonce: Option<u128>,
    body: Vec<u8>,
}

impl Stored {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(29 + self.body.len());
        bytes.extend_from_slice(&self.visible_ms.to_be_bytes());
        bytes.extend_from_slice(&self.attempt.to_be_bytes());
        match (self.leased, self.nonce) {
            (false, _) => bytes.push(0),
            (true, None) => bytes.push(1),
            (true, Some(nonce)) => {
                bytes.push(2);
                bytes.extend_from_slice(&nonce.to_be_bytes());
            }
        }
        bytes.extend_from_slice(&self.body);
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Stored> {
        let (leased, nonce, body) = match *bytes.get(12)? {
            2 => (true, Some(u128::from_be_bytes(bytes.get(13..29)?.try_into().ok()?)), 29),
            flag => (flag == 1, None, 13),
        };
        Some(Stored {
            visible_ms: u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?),
            attempt: u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?),
            leased,
            nonce,
            body: bytes.get(body..)?.to_vec(),
        })
    }
}

/// 128 random bits from the operating system, for a lease nonce.
fn new_nonce() -> Result<u128, QueueError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| storage(format!("no randomness for a lease: {e}")))?;
    Ok(u128::from_be_bytes(bytes))
}

fn message_key(id: u64) -> [u8; 9] {
    let mut key = [b'm'; 9];
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

fn visible_key(visible_ms: u64, id: u64) -> [u8; 17] {
    let mut key = [b'v'; 17];
    key[1..9].copy_from_slice(&visible_ms.to_be_bytes());
    key[9..].copy_from_slice(&id.to_be_bytes());
    key
}

/// Every queue a host has opened.
#[derive(Default)]
pub struct Queues {
    open: Mutex<HashMap<(String, String), Arc<Queue>>>,
}

impl Queues {
    /// Queue `name` of `app`, with the settings of its manifest (created on first use).
    pub fn open(&self, store: &Arc<Store>, app: &str, name: &str, spec: &QueueSpec) -> Result<Arc<Queue>, QueueError> {
        validate_name(name)?;
        let mut open = self.open.lock().unwrap();
        let key = (app.to_string(), name.to_string());
        if let Some(queue) = open.get(&key) {
            queue.max_attempts.store(spec.max_attempts, Ordering::Relaxed);
            return Ok(queue.clone());
        }
        let tree = store.tree(&format!("queue/{app}/{name}")).map_err(storage)?;
        let queue = Arc::new(Queue {
            name: name.to_string(),
            app: app.to_string(),
            tree,
            store: store.clone(),
            lock: Mutex::new(()),
            max_attempts: AtomicU32::new(spec.max_attempts),
            sent: Notify::new(),
        });
        queue.release_stopped_leases()?;
        open.insert(key, queue.clone());
        Ok(queue)
    }

    /// The dead-letter queue of `queue`.
    fn dead_letters(&self, queue: &Queue) -> Result<Arc<Queue>, QueueError> {
        let name = format!("{}{DEAD_LETTER_SUFFIX}", queue.name);
        self.open(&queue.store, &queue.app, &name, &QueueSpec::of(&Default::default(), &name))
    }
}

/// A queue name: a resource name, optionally followed by `.dead`.
fn validate_name(name: &str) -> Result<(), QueueError> {
    let base = name.strip_suffix(DEAD_LETTER_SUFFIX).unwrap_or(name);
    base.parse::<crate::manifest::ResourceName>().map(drop).map_err(|e| QueueError::Invalid(format!("queue {e}")))
}

/// One queue.
pub struct Queue {
    name: String,
    app: String,
    tree: sled::Tree,
    store: Arc<Store>,
    /// Serialises changes, so that one message is never leased twice at once.
    lock: Mutex<()>,
    max_attempts: AtomicU32,
    /// Woken when a message is sent or given back.
    pub(crate) sent: Notify,
}

/// The parts of a lease string `QUEUE/ID/ATTEMPT/NONCE`: the queue, message id, attempt and nonce.
pub fn parse_lease(lease: &str) -> Result<(&str, u64, u32, u128), QueueError> {
    let bad =
        || QueueError::Invalid(format!("lease `{lease}`: expected one returned by `receive` (QUEUE/ID/ATTEMPT/NONCE)"));
    let mut parts = lease.split('/');
    let (Some(queue), Some(id), Some(attempt), Some(nonce), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let id = u64::from_str_radix(id, 16).map_err(|_| bad())?;
    let nonce = u128::from_str_radix(nonce, 16).map_err(|_| bad())?;
    Ok((queue, id, attempt.parse().map_err(|_| bad())?, nonce))
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
        let id = self.store.next_id().map_err(storage)?;
        let visible_ms = now_ms() + delay.as_millis() as u64;
        {
            let _lock = self.lock.lock().unwrap();
            self.tree.insert(visible_key(visible_ms, id), &[]).map_err(storage)?;
            let stored = Stored { visible_ms, attempt: 0, leased: false, nonce: None, body };
            self.tree.insert(message_key(id), stored.encode()).map_err(storage)?;
        }
        self.store.durable().await.map_err(QueueError::Storage)?;
        self.sent.notify_waiters();
        Ok(format!("{id:016x}"))
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
        if !(1..=MAX_RECEIVE).contains(&max) {
            return Err(QueueError::Invalid(format!("max: {max}, expected 1 to {MAX_RECEIVE}")));
        }
        if visibility.is_zero() || visibility > MAX_VISIBILITY {
            return Err(QueueError::Invalid(format!("visibility: {visibility:?}, expected 1ms to 12h")));
        }
        let mut leased = Vec::new();
        let mut dead = Vec::new();
        let mut bytes = 0u64;
        {
            let _lock = self.lock.lock().unwrap();
            let now = now_ms();
            let max_attempts = self.max_attempts.load(Ordering::Relaxed);
            for entry in self.tree.range(visible_key(0, 0)..=visible_key(now, u64::MAX)) {
                if leased.len() == max as usize {
                    break;
                }
                let (key, _) = entry.map_err(storage)?;
                let (visible_ms, id) = split_visible_key(&key);
                let Some(mut stored) = self.current(id, visible_ms, &key)? else { continue };
                if stored.attempt >= max_attempts {
                    dead.push((id, stored.body));
                    continue;
                }
                bytes = bytes.saturating_add(stored.body.len() as u64);
                if bytes > max_bytes && !leased.is_empty() {
                    break;
                }
                let nonce = new_nonce()?;
                stored.attempt += 1;
                stored.leased = true;
                stored.nonce = Some(nonce);
                stored.visible_ms = now + visibility.as_millis() as u64;
                self.move_to(id, &key, &stored)?;
                let lease = format!("{}/{id:016x}/{}/{nonce:032x}", self.name, stored.attempt);
                leased.push(Message { id: format!("{id:016x}"), body: stored.body, attempt: stored.attempt, lease });
            }
        }
        if !dead.is_empty() {
            self.dead_letter(queues, dead).await?;
        }
        if !leased.is_empty() {
            self.store.durable().await.map_err(QueueError::Storage)?;
        }
        Ok(leased)
    }

    /// Remove the message of a current lease.
    pub async fn complete(&self, lease: &str) -> Result<(), QueueError> {
        {
            let _lock = self.lock.lock().unwrap();
            let (id, stored) = self.leased(lease)?;
            self.tree.remove(visible_key(stored.visible_ms, id)).map_err(storage)?;
            self.tree.remove(message_key(id)).map_err(storage)?;
        }
        self.store.durable().await.map_err(QueueError::Storage)
    }

    /// Give a leased message back, visible again after `delay` (or dead-lettered when that was
    /// its last attempt).
    pub async fn retry(&self, queues: &Queues, lease: &str, delay: Duration) -> Result<(), QueueError> {
        if delay > MAX_VISIBILITY {
            return Err(QueueError::Invalid(format!("delay: {delay:?}, at most {MAX_VISIBILITY:?}")));
        }
        let dead = {
            let _lock = self.lock.lock().unwrap();
            let (id, mut stored) = self.leased(lease)?;
            if stored.attempt >= self.max_attempts.load(Ordering::Relaxed) {
                Some((id, stored.body))
            } else {
                let old = visible_key(stored.visible_ms, id);
                stored.leased = false;
                stored.nonce = None;
                stored.visible_ms = now_ms() + delay.as_millis() as u64;
                self.move_to(id, &old, &stored)?;
                None
            }
        };
        match dead {
            Some(dead) => self.dead_letter(queues, vec![dead]).await,
            None => {
                self.store.durable().await.map_err(QueueError::Storage)?;
                self.sent.notify_waiters();
                Ok(())
            }
        }
    }

    /// Messages ready now and waiting.
    pub fn stats(&self) -> Result<QueueStats, QueueError> {
        let now = now_ms();
        let mut stats = QueueStats { ready: 0, waiting: 0 };
        for key in self.tree.scan_prefix(b"v").keys() {
            let (visible_ms, _) = split_visible_key(&key.map_err(storage)?);
            if visible_ms <= now { stats.ready += 1 } else { stats.waiting += 1 }
        }
        Ok(stats)
    }

    /// When the next message becomes visible (now or later), if any.
    pub fn next_visible_ms(&self) -> Option<u64> {
        let (key, _) = self.tree.scan_prefix(b"v").next()?.ok()?;
        Some(split_visible_key(&key).0)
    }

    /// The message a current lease is for: its attempt and nonce must be the stored ones.
    fn leased(&self, lease: &str) -> Result<(u64, Stored), QueueError> {
        let (queue, id, attempt, nonce) = parse_lease(lease)?;
        if queue != self.name {
            return Err(QueueError::Invalid(format!("lease `{lease}` is for queue `{queue}`, not `{}`", self.name)));
        }
        match self.tree.get(message_key(id)).map_err(storage)?.and_then(|b| Stored::decode(&b)) {
            Some(stored) if stored.leased && stored.attempt == attempt && stored.nonce == Some(nonce) => {
                Ok((id, stored))
            }
            _ => Err(QueueError::LeaseExpired(lease.to_string())),
        }
    }

    /// The message an index entry points at, if the entry is current (stale ones are dropped).
    fn current(&self, id: u64, visible_ms: u64, key: &[u8]) -> Result<Option<Stored>, QueueError> {
        let stored = self.tree.get(message_key(id)).map_err(storage)?.and_then(|b| Stored::decode(&b));
        match stored {
            Some(stored) if stored.visible_ms == visible_ms => Ok(Some(stored)),
            _ => {
                self.tree.remove(key).map_err(storage)?;
                Ok(None)
            }
        }
    }

    /// Store a message's new state and move its index entry (new entry first).
    fn move_to(&self, id: u64, old_key: &[u8], stored: &Stored) -> Result<(), QueueError> {
        self.tree.insert(visible_key(stored.visible_ms, id), &[]).map_err(storage)?;
        self.tree.insert(message_key(id), stored.encode()).map_err(storage)?;
        if old_key[..] != visible_key(stored.visible_ms, id)[..] {
            self.tree.remove(old_key).map_err(storage)?;
        }
        Ok(())
    }

    /// Move messages to the dead-letter queue: written there first, then removed here, so a
    /// crash in between duplicates a message rather than losing it.
    async fn dead_letter(&self, queues: &Queues, messages: Vec<(u64, Vec<u8>)>) -> Result<(), QueueError> {
        let dead = queues.dead_letters(self)?;
        for (id, body) in messages {
            tracing::warn!(queue = %self.name, app = %self.app, message = %format!("{id:016x}"), "message moved to the dead-letter queue after its last attempt");
            {
                let _lock = dead.lock.lock().unwrap();
                let visible_ms = now_ms();
                dead.tree.insert(visible_key(visible_ms, id), &[]).map_err(storage)?;
                let stored = Stored { visible_ms, attempt: 0, leased: false, nonce: None, body };
                dead.tree.insert(message_key(id), stored.encode()).map_err(storage)?;
            }
            let _lock = self.lock.lock().unwrap();
            if let Some(stored) = self.tree.remove(message_key(id)).map_err(storage)?.and_then(|b| Stored::decode(&b)) {
                self.tree.remove(visible_key(stored.visible_ms, id)).map_err(storage)?;
            }
        }
        self.store.durable().await.map_err(QueueError::Storage)?;
        dead.sent.notify_waiters();
        Ok(())
    }

    /// Make messages leased by a host that stopped visible now.
    fn release_stopped_leases(&self) -> Result<(), QueueError> {
        let now = now_ms();
        let mut released = 0;
        for entry in self.tree.range(visible_key(now + 1, 0)..=visible_key(u64::MAX, u64::MAX)) {
            let (key, _) = entry.map_err(storage)?;
            let (visible_ms, id) = split_visible_key(&key);
            if let Some(mut stored) = self.current(id, visible_ms, &key)?
                && stored.leased
            {
                stored.visible_ms = now;
                self.move_to(id, &key, &stored)?;
                released += 1;
            }
        }
        if released > 0 {
            tracing::info!(queue = %self.name, app = %self.app, released, "leases of a stopped host released");
            self.store.flush_soon();
        }
        Ok(())
    }
}

fn split_visible_key(key: &[u8]) -> (u64, u64) {
    let visible_ms = u64::from_be_bytes(key[1..9].try_into().expect("index keys are 17 bytes"));
    (visible_ms, u64::from_be_bytes(key[9..17].try_into().expect("index keys are 17 bytes")))
}
