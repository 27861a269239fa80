//! The embedded queue backend: one sled tree per (app, queue).
//!
//! `q{time}{id}` holds a message (its state and body) keyed by the time it becomes visible, so
//! `receive` reads the visible messages oldest first without scanning the rest. One key per
//! message keeps the hot path short: a send is one insert, a lease moves the message to its new
//! time (a remove and an insert), a completion is one remove. A lease string carries the time
//! its message is stored under, so a completion finds it without an index. Every change is on
//! disk before the call that made it returns, but for the leases of `receive_to_run`, which
//! reach it with the next group commit. Data dirs from before this layout (`m{id}` messages
//! indexed by `v{time}{id}`) are converted when a queue is opened.
//!
//! Leases belong to the process that handed them out: when a queue is first opened, messages
//! leased by a host that stopped become visible at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    Exhausted, Listed, Message, QueueBackend, QueueError, QueueStats, QueueStore, Received, bad_lease, storage,
};
use crate::clock::now_ms;
use crate::store::Store;

/// A message as stored: `visible_ms` (8 bytes), `attempt` (4), a lease flag (1: 0 none, 1 leased
/// without a nonce, as stored before nonces, 2 leased with the 16-byte nonce that follows), then
/// the body.
#[derive(Clone)]
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

/// The parts of a lease string `QUEUE/ID/ATTEMPT/NONCE`: the queue, message id, attempt and nonce
/// (its upper 64 bits are the time the leased message is stored under, see [`lease_nonce`]).
fn parse_lease(lease: &str) -> Result<(&str, u64, u32, u128), QueueError> {
    let mut parts = lease.split('/');
    let (Some(queue), Some(id), Some(attempt), Some(nonce), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_lease(lease));
    };
    let id = u64::from_str_radix(id, 16).map_err(|_| bad_lease(lease))?;
    let nonce = u128::from_str_radix(nonce, 16).map_err(|_| bad_lease(lease))?;
    Ok((queue, id, attempt.parse().map_err(|_| bad_lease(lease))?, nonce))
}

/// The nonce of a lease on a message stored under `visible_ms`: that time, then 64 random bits
/// from the operating system (the secret part).
fn lease_nonce(visible_ms: u64) -> Result<u128, QueueError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| storage(format!("no randomness for a lease: {e}")))?;
    Ok(u128::from(visible_ms) << 64 | u128::from(u64::from_be_bytes(bytes)))
}

/// The key of message `id` visible at `visible_ms`.
fn key(visible_ms: u64, id: u64) -> [u8; 17] {
    let mut key = [b'q'; 17];
    key[1..9].copy_from_slice(&visible_ms.to_be_bytes());
    key[9..].copy_from_slice(&id.to_be_bytes());
    key
}

/// A key's time and message id.
fn split_key(key: &[u8]) -> (u64, u64) {
    let part =
        |range: std::ops::Range<usize>| key.get(range).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
    (part(1..9), part(9..17))
}

/// Queues in the embedded store.
pub struct SledQueues {
    store: Arc<Store>,
}

impl SledQueues {
    /// The queues of `store`.
    pub fn new(store: Arc<Store>) -> SledQueues {
        SledQueues { store }
    }
}

impl QueueBackend for SledQueues {
    fn open(&self, app: &str, name: &str) -> Result<Arc<dyn QueueStore>, QueueError> {
        let tree = self.store.tree(&format!("queue/{app}/{name}")).map_err(storage)?;
        let queue = SledQueue {
            name: name.to_string(),
            app: app.to_string(),
            tree,
            store: self.store.clone(),
            lock: Mutex::new(()),
            exhausted: Mutex::default(),
        };
        queue.convert_old_layout()?;
        queue.release_stopped_leases()?;
        Ok(Arc::new(queue))
    }
}

/// One queue's tree.
struct SledQueue {
    name: String,
    app: String,
    tree: sled::Tree,
    store: Arc<Store>,
    /// Serialises changes, so that one message is never leased twice at once.
    lock: Mutex<()>,
    /// The keys of the exhausted messages `receive` returned, for their [`QueueStore::remove`].
    exhausted: Mutex<std::collections::HashMap<u64, [u8; 17]>>,
}

/// A message id as the tree keys it.
fn parse_id(id: &str) -> Result<u64, QueueError> {
    u64::from_str_radix(id, 16).map_err(|_| QueueError::Invalid(format!("message id `{id}`: expected 16 hex digits")))
}

#[async_trait::async_trait]
impl QueueStore for SledQueue {
    async fn send(&self, body: Vec<u8>, delay: Duration) -> Result<String, QueueError> {
        let id = self.store.next_id().map_err(storage)?;
        self.put(id, now_ms() + delay.as_millis() as u64, body)?;
        self.store.durable().await.map_err(QueueError::Storage)?;
        Ok(format!("{id:016x}"))
    }

    async fn insert(&self, id: &str, body: Vec<u8>) -> Result<(), QueueError> {
        self.put(parse_id(id)?, now_ms(), body)?;
        self.store.durable().await.map_err(QueueError::Storage)
    }

    async fn receive(
        &self,
        max: u32,
        visibility: Duration,
        max_bytes: u64,
        max_attempts: u32,
    ) -> Result<Received, QueueError> {
        let received = self.lease(max, visibility, max_bytes, max_attempts)?;
        if !received.leased.is_empty() {
            self.store.durable().await.map_err(QueueError::Storage)?;
        }
        Ok(received)
    }

    async fn receive_to_run(&self, max: u32, visibility: Duration, max_attempts: u32) -> Result<Received, QueueError> {
        let received = self.lease(max, visibility, u64::MAX, max_attempts)?;
        if !received.leased.is_empty() {
            // Sled flushes its log in order: the completion's flush covers the lease too.
            self.store.commit_soon();
        }
        Ok(received)
    }

    async fn complete(&self, lease: &str) -> Result<(), QueueError> {
        {
            let _lock = self.lock.lock().unwrap();
            let (key, _) = self.leased(lease)?;
            self.tree.remove(key).map_err(storage)?;
        }
        self.store.durable().await.map_err(QueueError::Storage)
    }

    async fn retry(&self, lease: &str, delay: Duration, max_attempts: u32) -> Result<Option<Exhausted>, QueueError> {
        {
            let _lock = self.lock.lock().unwrap();
            let (old, mut stored) = self.leased(lease)?;
            let (_, id) = split_key(&old);
            if stored.attempt >= max_attempts {
                self.exhausted.lock().unwrap().insert(id, old);
                return Ok(Some((format!("{id:016x}"), stored.body)));
            }
            stored.leased = false;
            stored.nonce = None;
            stored.visible_ms = now_ms() + delay.as_millis() as u64;
            self.move_to(id, &old, &stored)?;
        }
        self.store.durable().await.map_err(QueueError::Storage)?;
        Ok(None)
    }

    async fn remove(&self, id: &str) -> Result<(), QueueError> {
        let id = parse_id(id)?;
        {
            let _lock = self.lock.lock().unwrap();
            let known = self.exhausted.lock().unwrap().remove(&id);
            // Only dead-lettering removes by id, after `receive` or `retry` named the message:
            // its key is known, and the scan is for a message moved since.
            let found = known.filter(|k| self.tree.contains_key(k).unwrap_or(false)).or_else(|| {
                self.tree
                    .scan_prefix(b"q")
                    .keys()
                    .filter_map(Result::ok)
                    .find(|k| split_key(k).1 == id)
                    .and_then(|k| k.as_ref().try_into().ok())
            });
            if let Some(key) = found {
                self.tree.remove(key).map_err(storage)?;
            }
        }
        self.store.durable().await.map_err(QueueError::Storage)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let now = now_ms();
        let mut stats = QueueStats { ready: 0, waiting: 0, leased: 0 };
        for entry in self.tree.scan_prefix(b"q") {
            let (key, bytes) = entry.map_err(storage)?;
            let (visible_ms, _) = split_key(&key);
            if visible_ms <= now {
                stats.ready += 1;
            } else {
                stats.waiting += 1;
                // A leased message is keyed by its lease's end: leased while that is ahead.
                stats.leased += u64::from(Stored::decode(&bytes).is_some_and(|s| s.leased));
            }
        }
        Ok(stats)
    }

    async fn list(&self, max: usize) -> Result<Vec<Listed>, QueueError> {
        let mut listed = Vec::new();
        for entry in self.tree.scan_prefix(b"q").take(max) {
            let (key, bytes) = entry.map_err(storage)?;
            let Some(stored) = Stored::decode(&bytes) else { continue };
            listed.push(Listed { id: format!("{:016x}", split_key(&key).1), body: stored.body });
        }
        Ok(listed)
    }

    fn next_visible_ms(&self) -> Option<u64> {
        let (key, _) = self.tree.scan_prefix(b"q").next()?.ok()?;
        Some(split_key(&key).0)
    }
}

impl SledQueue {
    /// Store a new message visible at `visible_ms`.
    fn put(&self, id: u64, visible_ms: u64, body: Vec<u8>) -> Result<(), QueueError> {
        let stored = Stored { visible_ms, attempt: 0, leased: false, nonce: None, body };
        self.tree.insert(key(visible_ms, id), stored.encode()).map_err(storage)?;
        Ok(())
    }

    /// Lease up to `max` visible messages (see [`QueueStore::receive`]), not yet durable.
    fn lease(&self, max: u32, visibility: Duration, max_bytes: u64, max_attempts: u32) -> Result<Received, QueueError> {
        let mut received = Received::default();
        let mut bytes = 0u64;
        let _lock = self.lock.lock().unwrap();
        let now = now_ms();
        for entry in self.tree.range(key(0, 0)..=key(now, u64::MAX)) {
            if received.leased.len() == max as usize {
                break;
            }
            let (old, value) = entry.map_err(storage)?;
            let (_, id) = split_key(&old);
            let Some(mut stored) = Stored::decode(&value) else { continue };
            if stored.attempt >= max_attempts {
                if let Ok(old) = old.as_ref().try_into() {
                    self.exhausted.lock().unwrap().insert(id, old);
                }
                received.exhausted.push((format!("{id:016x}"), stored.body));
                continue;
            }
            bytes = bytes.saturating_add(stored.body.len() as u64);
            if bytes > max_bytes && !received.leased.is_empty() {
                break;
            }
            stored.attempt += 1;
            stored.leased = true;
            stored.visible_ms = now + visibility.as_millis() as u64;
            let nonce = lease_nonce(stored.visible_ms)?;
            stored.nonce = Some(nonce);
            self.move_to(id, &old, &stored)?;
            let lease = format!("{}/{id:016x}/{}/{nonce:032x}", self.name, stored.attempt);
            let message = Message { id: format!("{id:016x}"), body: stored.body, attempt: stored.attempt, lease };
            received.leased.push(message);
        }
        Ok(received)
    }

    /// The key and state of the message a current lease is for: its attempt and nonce must be
    /// the stored ones.
    fn leased(&self, lease: &str) -> Result<([u8; 17], Stored), QueueError> {
        let (_, id, attempt, nonce) = parse_lease(lease)?;
        let key = key((nonce >> 64) as u64, id);
        match self.tree.get(key).map_err(storage)?.and_then(|b| Stored::decode(&b)) {
            Some(stored) if stored.leased && stored.attempt == attempt && stored.nonce == Some(nonce) => {
                Ok((key, stored))
            }
            _ => Err(QueueError::LeaseExpired(lease.to_string())),
        }
    }

    /// Store a message's new state under its new time (new key first: a crash in between
    /// leaves the message twice, never lost; one copy is dropped when the queue is opened).
    fn move_to(&self, id: u64, old: &[u8], stored: &Stored) -> Result<(), QueueError> {
        let new = key(stored.visible_ms, id);
        self.tree.insert(new, stored.encode()).map_err(storage)?;
        if old[..] != new[..] {
            self.tree.remove(old).map_err(storage)?;
        }
        Ok(())
    }

    /// Convert messages stored before one key per message (`m{id}` with a `v{time}{id}` index)
    /// to `q{time}{id}`, and drop older copies of a message that a crash in the middle of a
    /// move left behind.
    fn convert_old_layout(&self) -> Result<(), QueueError> {
        let _lock = self.lock.lock().unwrap();
        let mut converted = 0;
        for entry in self.tree.scan_prefix(b"m") {
            let (old, value) = entry.map_err(storage)?;
            let id = old.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
            if let (Some(id), Some(stored)) = (id, Stored::decode(&value)) {
                self.tree.insert(key(stored.visible_ms, id), stored.encode()).map_err(storage)?;
                converted += 1;
            }
            self.tree.remove(old).map_err(storage)?;
        }
        for old in self.tree.scan_prefix(b"v").keys() {
            self.tree.remove(old.map_err(storage)?).map_err(storage)?;
        }
        if converted > 0 {
            tracing::info!(queue = %self.name, app = %self.app, converted, "queue converted to one key per message");
        }
        let mut seen = std::collections::HashSet::new();
        // Either copy is a state the message had; the later one in time is kept.
        for entry in self.tree.scan_prefix(b"q").keys().rev() {
            let key = entry.map_err(storage)?;
            if !seen.insert(split_key(&key).1) {
                self.tree.remove(key).map_err(storage)?;
            }
        }
        Ok(())
    }

    /// Make messages leased by a host that stopped visible now.
    fn release_stopped_leases(&self) -> Result<(), QueueError> {
        let now = now_ms();
        let mut released = 0;
        for entry in self.tree.range(key(now + 1, 0)..=key(u64::MAX, u64::MAX)) {
            let (old, value) = entry.map_err(storage)?;
            if let Some(mut stored) = Stored::decode(&value)
                && stored.leased
            {
                stored.visible_ms = now;
                stored.leased = false;
                stored.nonce = None;
                self.move_to(split_key(&old).1, &old, &stored)?;
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

#[cfg(test)]
mod tests;
