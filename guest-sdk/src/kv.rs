//! Key-value stores (`wasi:keyvalue`), with the host's prefix listing (`host:api/kv-ext`).

use std::fmt;

use crate::bindings::host::api::kv_ext;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// Why a key-value operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The host has no store by that name.
    NoSuchStore,
    /// The function's manifest does not grant this store.
    AccessDenied,
    /// Any other failure; the text says what happened.
    Other(String),
}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::NoSuchStore => Self::NoSuchStore,
            store::Error::AccessDenied => Self::AccessDenied,
            store::Error::Other(message) => Self::Other(message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchStore => f.write_str("no such key-value store"),
            Self::AccessDenied => f.write_str("access to the key-value store denied"),
            Self::Other(message) => write!(f, "key-value store error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The result of a key-value operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An open key-value store.
#[derive(Debug)]
pub struct Store {
    bucket: store::Bucket,
}

impl Store {
    /// Opens a store the function has been granted.
    pub fn open(name: &str) -> Result<Self> {
        Ok(Self { bucket: store::open(name)? })
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.bucket.get(key)?)
    }

    /// Creates or replaces the value under `key`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        Ok(self.bucket.set(key, value)?)
    }

    /// Deletes `key`; deleting a missing key is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        Ok(self.bucket.delete(key)?)
    }

    /// Whether a value is stored under `key`.
    pub fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.bucket.exists(key)?)
    }

    /// Every key in the store.
    pub fn keys(&self) -> Result<Vec<String>> {
        crate::collect_pages(|cursor| {
            let page = self.bucket.list_keys(cursor)?;
            Ok((page.keys, page.cursor))
        })
    }

    /// Every key that starts with `prefix`, in byte order.
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        crate::collect_pages(|cursor| {
            let page = kv_ext::list_prefix(&self.bucket, prefix, cursor)?;
            Ok((page.keys, page.cursor))
        })
    }

    /// Atomically adds `delta` to the number under `key` (starting from zero if it is missing) and
    /// returns the new value. The host stores the number as 8 little-endian bytes.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// Atomically replaces the value under `key` with `new` if it currently is `expected` (`None`:
    /// the key is missing). Returns whether the swap happened.
    pub fn compare_and_swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<bool> {
        let cas = atomics::Cas::new(&self.bucket, key)?;
        if cas.current()?.as_deref() != expected {
            return Ok(false);
        }
        match atomics::swap(cas, new) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(error)) => Err(error.into()),
        }
    }

    /// The values of several keys at once, each paired with its key (`None`: missing).
    pub fn get_many<K: Into<String>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>> {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        Ok(batch::get_many(&self.bucket, &keys)?)
    }

    /// Creates or replaces several values at once. Not atomic: on error, some may have been set.
    pub fn set_many<K: Into<String>, V: Into<Vec<u8>>>(&self, entries: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let entries: Vec<(String, Vec<u8>)> =
            entries.into_iter().map(|(key, value)| (key.into(), value.into())).collect();
        Ok(batch::set_many(&self.bucket, &entries)?)
    }

    /// Deletes several keys at once. Not atomic: on error, some may have been deleted.
    pub fn delete_many<K: Into<String>>(&self, keys: impl IntoIterator<Item = K>) -> Result<()> {
        let keys: Vec<String> = keys.into_iter().map(Into::into).collect();
        Ok(batch::delete_many(&self.bucket, &keys)?)
    }
}
