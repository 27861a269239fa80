//! [`OpenCache`]: what a NATS backend opened (a store, a bucket, an event log), kept by key.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

/// Values opened once per key and kept, since opening one costs round trips. Two tasks may open
/// the same key at once: both opens are fine (streams are created idempotently), the first
/// value kept is the one everybody gets.
pub struct OpenCache<K, V>(Mutex<HashMap<K, V>>);

impl<K, V> Default for OpenCache<K, V> {
    fn default() -> Self {
        OpenCache(Mutex::default())
    }
}

impl<K: Eq + Hash, V: Clone> OpenCache<K, V> {
    /// The value opened under `key`, if any.
    pub fn get(&self, key: &K) -> Option<V> {
        self.0.lock().expect("open cache lock").get(key).cloned()
    }

    /// The value under `key`, opened by `open` the first time.
    pub async fn get_or_open<E, Fut>(&self, key: K, open: impl FnOnce() -> Fut) -> Result<V, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let opened = open().await?;
        Ok(self.0.lock().expect("open cache lock").entry(key).or_insert(opened).clone())
    }
}
