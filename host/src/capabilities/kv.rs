//! Key-value stores: `wasi:keyvalue` (store, atomics, batch) and `host:api/kv-ext`, over sled.
//!
//! Each granted store is one sled tree named by app and store. A write returns only once it is on
//! disk; concurrent writes share one flush (group commit). Counters written by `increment` are
//! 8-byte little-endian signed integers. A value (or `get-many` answer) bigger than the guest's
//! `memory` limit is not copied for it: the call ends with [`crate::CallError::MemoryLimit`].

use std::ops::Bound;

use wasmtime::component::Resource;

use super::host::api::kv_ext;
use super::wasi::keyvalue::store::{Error, KeyResponse};
use super::wasi::keyvalue::{atomics, batch, store};
use crate::call::CallState;

/// Keys per page of `list-keys` / `list-prefix`.
const PAGE: usize = 1000;

/// An open store (the `bucket` resource of `wasi:keyvalue/store`).
pub struct KvBucket {
    tree: sled::Tree,
}

/// A compare-and-swap handle: the key and the value seen when it was made.
pub struct KvCas {
    tree: sled::Tree,
    key: String,
    seen: Option<sled::IVec>,
}

type KvResult<T> = wasmtime::Result<Result<T, Error>>;

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

impl CallState {
    fn tree(&self, bucket: &Resource<KvBucket>) -> wasmtime::Result<sled::Tree> {
        Ok(self.table.get(bucket)?.tree.clone())
    }

    /// Wait until this call's writes are on disk (the future holds no borrow of the call state).
    fn durable(&self) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        let caps = self.caps.clone();
        async move { caps.store.durable().await.map_err(Error::Other) }
    }
}

impl store::Host for CallState {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<KvBucket>> {
        if !self.caps.grants.kv(&identifier) {
            return Ok(Err(Error::AccessDenied));
        }
        let tree = match self.caps.store.kv_tree(&self.caps.app, &identifier) {
            Ok(tree) => tree,
            Err(e) => return Ok(Err(other(e))),
        };
        Ok(Ok(self.table.push(KvBucket { tree })?))
    }
}

impl store::HostBucket for CallState {
    async fn get(&mut self, bucket: Resource<KvBucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        match self.tree(&bucket)?.get(&key) {
            Ok(value) => self.hand_over(&key, value.as_ref()).map(Ok),
            Err(e) => Ok(Err(other(e))),
        }
    }

    async fn set(&mut self, bucket: Resource<KvBucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        if let Err(e) = self.tree(&bucket)?.insert(key, value) {
            return Ok(Err(other(e)));
        }
        Ok(self.durable().await)
    }

    async fn delete(&mut self, bucket: Resource<KvBucket>, key: String) -> KvResult<()> {
        if let Err(e) = self.tree(&bucket)?.remove(key) {
            return Ok(Err(other(e)));
        }
        Ok(self.durable().await)
    }

    async fn exists(&mut self, bucket: Resource<KvBucket>, key: String) -> KvResult<bool> {
        Ok(self.tree(&bucket)?.contains_key(key).map_err(other))
    }

    async fn list_keys(&mut self, bucket: Resource<KvBucket>, cursor: Option<String>) -> KvResult<KeyResponse> {
        Ok(page(&self.tree(&bucket)?, "", cursor))
    }

    async fn drop(&mut self, bucket: Resource<KvBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl kv_ext::Host for CallState {
    async fn list_prefix(
        &mut self,
        bucket: Resource<KvBucket>,
        prefix: String,
        cursor: Option<String>,
    ) -> KvResult<KeyResponse> {
        Ok(page(&self.tree(&bucket)?, &prefix, cursor))
    }
}

/// One page of keys starting with `prefix`, after `cursor` when given.
pub(crate) fn page(tree: &sled::Tree, prefix: &str, cursor: Option<String>) -> Result<KeyResponse, Error> {
    let start = match &cursor {
        Some(c) if c.as_str() >= prefix => Bound::Excluded(c.as_bytes()),
        _ => Bound::Included(prefix.as_bytes()),
    };
    let mut keys = Vec::new();
    for key in tree.range::<&[u8], _>((start, Bound::Unbounded)).keys() {
        let key = key.map_err(other)?;
        if !key.starts_with(prefix.as_bytes()) {
            break;
        }
        if keys.len() == PAGE {
            return Ok(KeyResponse { cursor: keys.last().cloned(), keys });
        }
        keys.push(String::from_utf8_lossy(&key).into_owned());
    }
    Ok(KeyResponse { keys, cursor: None })
}

fn counter(key: &str, value: Option<&sled::IVec>) -> Result<i64, Error> {
    match value {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_ref()).map(i64::from_le_bytes).map_err(|_| {
            Error::Other(format!(
                "value of `{key}` is not a counter (8-byte little-endian integer), it has {} bytes",
                v.len()
            ))
        }),
    }
}

impl atomics::Host for CallState {
    async fn increment(&mut self, bucket: Resource<KvBucket>, key: String, delta: i64) -> KvResult<i64> {
        let tree = self.tree(&bucket)?;
        let updated = loop {
            let old = match tree.get(&key) {
                Ok(old) => old,
                Err(e) => return Ok(Err(other(e))),
            };
            let new = match counter(&key, old.as_ref()).and_then(|n| {
                n.checked_add(delta).ok_or_else(|| Error::Other(format!("counter `{key}` would overflow")))
            }) {
                Ok(new) => new,
                Err(e) => return Ok(Err(e)),
            };
            match tree.compare_and_swap(&key, old, Some(&new.to_le_bytes())) {
                Ok(Ok(())) => break new,
                Ok(Err(_raced)) => continue,
                Err(e) => return Ok(Err(other(e))),
            }
        };
        Ok(self.durable().await.map(|()| updated))
    }

    async fn swap(&mut self, cas: Resource<KvCas>, value: Vec<u8>) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(cas)?;
        match cas.tree.compare_and_swap(&cas.key, cas.seen.as_ref(), Some(value)) {
            Ok(Ok(())) => Ok(self.durable().await.map_err(atomics::CasError::StoreError)),
            Ok(Err(raced)) => {
                let fresh = self.table.push(KvCas { seen: raced.current, ..cas })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(other(e)))),
        }
    }
}

impl atomics::HostCas for CallState {
    async fn new(&mut self, bucket: Resource<KvBucket>, key: String) -> KvResult<Resource<KvCas>> {
        let tree = self.tree(&bucket)?;
        let seen = match tree.get(&key) {
            Ok(seen) => seen,
            Err(e) => return Ok(Err(other(e))),
        };
        Ok(Ok(self.table.push(KvCas { tree, key, seen })?))
    }

    async fn current(&mut self, cas: Resource<KvCas>) -> KvResult<Option<Vec<u8>>> {
        let cas = self.table.get(&cas)?;
        let (key, seen) = (cas.key.clone(), cas.seen.clone());
        self.hand_over(&key, seen.as_ref()).map(Ok)
    }

    async fn drop(&mut self, cas: Resource<KvCas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for CallState {
    async fn get_many(
        &mut self,
        bucket: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
        let tree = self.tree(&bucket)?;
        // The answer is built in host memory before it is copied into the guest: refuse one that
        // could not fit in the guest's memory before building more of it.
        let cap = self.value_budget();
        let mut total = 0u64;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            let value = match tree.get(&key) {
                Ok(value) => value,
                Err(e) => return Ok(Err(other(e))),
            };
            total += (key.len() + value.as_ref().map_or(0, |v| v.len())) as u64;
            if total > cap {
                return Err(self.too_big("a get-many answer", total));
            }
            found.push((key, value.map(|v| v.to_vec())));
        }
        Ok(Ok(found))
    }

    async fn set_many(&mut self, bucket: Resource<KvBucket>, key_values: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        let mut writes = sled::Batch::default();
        for (key, value) in key_values {
            writes.insert(key.as_bytes(), value);
        }
        self.apply(&bucket, writes).await
    }

    async fn delete_many(&mut self, bucket: Resource<KvBucket>, keys: Vec<String>) -> KvResult<()> {
        let mut writes = sled::Batch::default();
        for key in keys {
            writes.remove(key.as_bytes());
        }
        self.apply(&bucket, writes).await
    }
}

impl CallState {
    /// A copy of the value of `key` for the guest, refused (the call ends with
    /// [`crate::CallError::MemoryLimit`]) when it could not fit in the guest's `memory` limit.
    fn hand_over(&mut self, key: &str, value: Option<&sled::IVec>) -> wasmtime::Result<Option<Vec<u8>>> {
        match value {
            Some(v) if v.len() as u64 > self.value_budget() => {
                Err(self.too_big(&format!("the value of `{key}`"), v.len() as u64))
            }
            value => Ok(value.map(|v| v.to_vec())),
        }
    }

    async fn apply(&mut self, bucket: &Resource<KvBucket>, writes: sled::Batch) -> KvResult<()> {
        if let Err(e) = self.tree(bucket)?.apply_batch(writes) {
            return Ok(Err(other(e)));
        }
        Ok(self.durable().await)
    }
}
