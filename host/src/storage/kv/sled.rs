//! The embedded key-value backend: one sled tree per (app, store), `kv/APP/STORE`, in the host's
//! [`Store`]. A write returns once it is on disk; concurrent writes share one flush (group
//! commit). A revision is the value itself: sled compares values in its compare-and-swap.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::{Entry, KeyPage, KvBackend, KvError, KvStore, PAGE, Revision, Swap};
use crate::store::Store;

/// Key-value stores as trees of the embedded [`Store`].
pub struct SledKv {
    store: Arc<Store>,
}

impl SledKv {
    /// Stores kept in `store`.
    pub fn new(store: Arc<Store>) -> SledKv {
        SledKv { store }
    }
}

#[async_trait::async_trait]
impl KvBackend for SledKv {
    async fn open(&self, app: &str, store: &str) -> Result<Arc<dyn KvStore>, KvError> {
        let tree = self.store.kv_tree(app, store).map_err(storage)?;
        Ok(Arc::new(SledStore { tree, store: self.store.clone() }))
    }
}

/// One open store: its tree, and the store that makes writes durable.
struct SledStore {
    tree: sled::Tree,
    store: Arc<Store>,
}

fn storage(e: impl std::fmt::Display) -> KvError {
    KvError::Storage(e.to_string())
}

fn entry(value: sled::IVec) -> Entry {
    let value = Bytes::from_owner(value);
    Entry { revision: Revision(value.clone()), value }
}

impl SledStore {
    /// Wait until the writes made so far are on disk.
    async fn durable(&self) -> Result<(), KvError> {
        self.store.durable().await.map_err(KvError::Storage)
    }

    async fn apply(&self, batch: sled::Batch) -> Result<(), KvError> {
        self.tree.apply_batch(batch).map_err(storage)?;
        self.durable().await
    }
}

#[async_trait::async_trait]
impl KvStore for SledStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, KvError> {
        Ok(self.tree.get(key).map_err(storage)?.map(entry))
    }

    async fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.tree.contains_key(key).map_err(storage)
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), KvError> {
        self.tree.insert(key, &value[..]).map_err(storage)?;
        self.durable().await
    }

    async fn put_if(&self, key: &str, expected: Option<&Revision>, value: Bytes) -> Result<Swap, KvError> {
        match self.tree.compare_and_swap(key, expected.map(|r| &r.0[..]), Some(&value[..])).map_err(storage)? {
            Ok(()) => self.durable().await.map(|()| Swap::Done),
            Err(raced) => Ok(Swap::Raced(raced.current.map(entry))),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.tree.remove(key).map_err(storage)?;
        self.durable().await
    }

    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: usize) -> Result<KeyPage, KvError> {
        let limit = limit.clamp(1, PAGE);
        let start = match cursor {
            Some(c) if c >= prefix => Bound::Excluded(c.as_bytes()),
            _ => Bound::Included(prefix.as_bytes()),
        };
        let mut keys = Vec::new();
        for key in self.tree.range::<&[u8], _>((start, Bound::Unbounded)).keys() {
            let key = key.map_err(storage)?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            if keys.len() == limit {
                return Ok(KeyPage { cursor: keys.last().cloned(), keys });
            }
            keys.push(String::from_utf8_lossy(&key).into_owned());
        }
        Ok(KeyPage { keys, cursor: None })
    }

    async fn get_many(&self, keys: Vec<String>, max_bytes: u64) -> Result<Vec<(String, Option<Entry>)>, KvError> {
        let mut total = 0u64;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self.tree.get(&key).map_err(storage)?;
            total += (key.len() + value.as_ref().map_or(0, |v| v.len())) as u64;
            if total > max_bytes {
                return Err(KvError::TooLarge { bytes: total });
            }
            found.push((key, value.map(entry)));
        }
        Ok(found)
    }

    async fn put_many(&self, pairs: Vec<(String, Bytes)>) -> Result<(), KvError> {
        let mut batch = sled::Batch::default();
        for (key, value) in pairs {
            batch.insert(key.as_bytes(), &value[..]);
        }
        self.apply(batch).await
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), KvError> {
        let mut batch = sled::Batch::default();
        for key in keys {
            batch.remove(key.as_bytes());
        }
        self.apply(batch).await
    }
}
