//! Key-value stores: one store per (app, store name), keys are strings, values are bytes.
//!
//! [`KvBackend`] opens a [`KvStore`]; the embedded implementation is [`sled::SledKv`], the
//! networked one [`nats::NatsKv`]. The traits are shaped for a networked store: a read returns a
//! [`Revision`] and writes can be conditional on it (compare-and-swap), keys are listed in pages
//! with a cursor, and every acknowledged write is durable. Counters written by [`KvStore::increment`] are 8-byte little-endian signed integers.

use std::sync::Arc;

use bytes::Bytes;

pub mod nats;
pub mod sled;
#[cfg(test)]
pub(crate) mod tests;

/// Keys per page of a listing, at most.
pub const PAGE: usize = 1000;

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// `increment` found a value that is not a counter.
    #[error("value of `{key}` is not a counter (8-byte little-endian integer), it has {len} bytes")]
    NotACounter {
        /// The key incremented.
        key: String,
        /// The length of the value found.
        len: usize,
    },
    /// `increment` would leave the range of a signed 64-bit integer.
    #[error("counter `{key}` would overflow")]
    Overflow {
        /// The key incremented.
        key: String,
    },
    /// A `get_many` answer would be bigger than the bytes its caller allowed.
    #[error("the answer would need {bytes} bytes, more than allowed")]
    TooLarge {
        /// The size reached (keys and values) when the answer was refused.
        bytes: u64,
    },
    /// The store failed; the text says what happened.
    #[error("{0}")]
    Storage(String),
}

/// The version of a key as the store saw it: opaque, compared only by the backend that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision(pub(crate) Bytes);

/// A value and the revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Bytes,
    /// Its revision, for [`KvStore::put_if`].
    pub revision: Revision,
}

/// The outcome of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// The value was written.
    Done,
    /// Another write came first: the key's entry now (`None`: absent).
    Raced(Option<Entry>),
}

/// One page of keys, in order; `cursor` (the last key) asks for the next page when there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys of this page.
    pub keys: Vec<String>,
    /// Pass it back to get the next page; `None` on the last page.
    pub cursor: Option<String>,
}

/// Opens key-value stores.
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync {
    /// Store `store` of `app`, created on first use.
    async fn open(&self, app: &str, store: &str) -> Result<Arc<dyn KvStore>, KvError>;
}

/// One key-value store. A write returns once it is durable.
#[async_trait::async_trait]
pub trait KvStore: Send + Sync {
    /// The entry under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Entry>, KvError>;

    /// Whether `key` has a value.
    async fn exists(&self, key: &str) -> Result<bool, KvError>;

    /// Set `key` to `value`.
    async fn put(&self, key: &str, value: Bytes) -> Result<(), KvError>;

    /// Set `key` to `value` only if it is still at `expected` (`None`: only if absent).
    async fn put_if(&self, key: &str, expected: Option<&Revision>, value: Bytes) -> Result<Swap, KvError>;

    /// Remove `key` (absent is fine).
    async fn delete(&self, key: &str) -> Result<(), KvError>;

    /// Keys starting with `prefix`, in order, after `cursor` when given; at most `limit` of them
    /// (1 to [`PAGE`]).
    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: usize) -> Result<KeyPage, KvError>;

    /// The entries of `keys`, in their order. Refused with [`KvError::TooLarge`] as soon as keys
    /// and values together pass `max_bytes`.
    async fn get_many(&self, keys: Vec<String>, max_bytes: u64) -> Result<Vec<(String, Option<Entry>)>, KvError>;

    /// Set every pair, all or none.
    async fn put_many(&self, pairs: Vec<(String, Bytes)>) -> Result<(), KvError>;

    /// Remove every key (absent ones are fine), all or none.
    async fn delete_many(&self, keys: Vec<String>) -> Result<(), KvError>;

    /// Add `delta` to the counter under `key` (absent counts as 0) and return the new value: a
    /// compare-and-swap loop, which a backend with native counters may replace.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        loop {
            let old = self.get(key).await?;
            let new = counter(key, old.as_ref().map(|e| &e.value[..]))?
                .checked_add(delta)
                .ok_or_else(|| KvError::Overflow { key: key.into() })?;
            let value = Bytes::copy_from_slice(&new.to_le_bytes());
            if self.put_if(key, old.as_ref().map(|e| &e.revision), value).await? == Swap::Done {
                return Ok(new);
            }
        }
    }
}

/// The counter held by `value` (absent: 0).
pub fn counter(key: &str, value: Option<&[u8]>) -> Result<i64, KvError> {
    match value {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v)
            .map(i64::from_le_bytes)
            .map_err(|_| KvError::NotACounter { key: key.into(), len: v.len() }),
    }
}
