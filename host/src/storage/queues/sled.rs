//! The embedded queue backend: one sled tree per (app, queue).
//!
//! `m{id}` holds a message (its state and body) and `v{time}{id}` indexes it by the time it
//! becomes visible, so `receive` reads the visible messages oldest first without scanning the
//! rest. Writes go index first, message second: after a crash an index entry may point at nothing
//! or at an older state (it is dropped when met), but a message is never left without one. Every
//! change is on disk before the call that made it returns, but for the leases of
//! `receive_to_run`, which reach it with the next group commit.
//!
//! Leases belong to the process that handed them out: when a queue is first opened, messages
//! leased by a host that stopped become visible at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Exhausted, Message, QueueBackend, QueueError, QueueStats, QueueStore, Received, bad_lease, storage};
use crate::clock::now_ms;
use crate::store::Store;

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

/// The parts of a lease string `QUEUE/ID/ATTEMPT/NONCE`: the queue, message id, attempt and nonce.
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
        };
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
            let (id, stored) = self.leased(lease)?;
            self.tree.remove(visible_key(stored.visible_ms, id)).map_err(storage)?;
            self.tree.remove(message_key(id)).map_err(storage)?;
        }
        self.store.durable().await.map_err(QueueError::Storage)
    }

    async fn retry(&self, lease: &str, delay: Duration, max_attempts: u32) -> Result<Option<Exhausted>, QueueError> {
        {
            let _lock = self.lock.lock().unwrap();
            let (id, mut stored) = self.leased(lease)?;
            if stored.attempt >= max_attempts {
                return Ok(Some((format!("{id:016x}"), stored.body)));
            }
            let old = visible_key(stored.visible_ms, id);
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
            if let Some(stored) = self.tree.remove(message_key(id)).map_err(storage)?.and_then(|b| Stored::decode(&b)) {
                self.tree.remove(visible_key(stored.visible_ms, id)).map_err(storage)?;
            }
        }
        self.store.durable().await.map_err(QueueError::Storage)
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let now = now_ms();
        let mut stats = QueueStats { ready: 0, waiting: 0 };
        for key in self.tree.scan_prefix(b"v").keys() {
            let (visible_ms, _) = split_visible_key(&key.map_err(storage)?);
            if visible_ms <= now { stats.ready += 1 } else { stats.waiting += 1 }
        }
        Ok(stats)
    }

    fn next_visible_ms(&self) -> Option<u64> {
        let (key, _) = self.tree.scan_prefix(b"v").next()?.ok()?;
        Some(split_visible_key(&key).0)
    }
}

impl SledQueue {
    /// Store a new message visible at `visible_ms`, index first.
    fn put(&self, id: u64, visible_ms: u64, body: Vec<u8>) -> Result<(), QueueError> {
        let _lock = self.lock.lock().unwrap();
        self.tree.insert(visible_key(visible_ms, id), &[]).map_err(storage)?;
        let stored = Stored { visible_ms, attempt: 0, leased: false, nonce: None, body };
        self.tree.insert(message_key(id), stored.encode()).map_err(storage)?;
        Ok(())
    }

    /// Lease up to `max` visible messages (see [`QueueStore::receive`]), not yet durable.
    fn lease(&self, max: u32, visibility: Duration, max_bytes: u64, max_attempts: u32) -> Result<Received, QueueError> {
        let mut received = Received::default();
        let mut bytes = 0u64;
        let _lock = self.lock.lock().unwrap();
        let now = now_ms();
        for entry in self.tree.range(visible_key(0, 0)..=visible_key(now, u64::MAX)) {
            if received.leased.len() == max as usize {
                break;
            }
            let (key, _) = entry.map_err(storage)?;
            let (visible_ms, id) = split_visible_key(&key);
            let Some(mut stored) = self.current(id, visible_ms, &key)? else { continue };
            if stored.attempt >= max_attempts {
                received.exhausted.push((format!("{id:016x}"), stored.body));
                continue;
            }
            bytes = bytes.saturating_add(stored.body.len() as u64);
            if bytes > max_bytes && !received.leased.is_empty() {
                break;
            }
            let nonce = new_nonce()?;
            stored.attempt += 1;
            stored.leased = true;
            stored.nonce = Some(nonce);
            stored.visible_ms = now + visibility.as_millis() as u64;
            self.move_to(id, &key, &stored)?;
            let lease = format!("{}/{id:016x}/{}/{nonce:032x}", self.name, stored.attempt);
            let message = Message { id: format!("{id:016x}"), body: stored.body, attempt: stored.attempt, lease };
            received.leased.push(message);
        }
        Ok(received)
    }

    /// The message a current lease is for: its attempt and nonce must be the stored ones.
    fn leased(&self, lease: &str) -> Result<(u64, Stored), QueueError> {
        let (_, id, attempt, nonce) = parse_lease(lease)?;
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
