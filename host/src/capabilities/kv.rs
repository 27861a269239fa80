//! Key-value stores: `wasi:keyvalue` (store, atomics, batch) and `host:api/kv-ext`, over
//! [`crate::storage::kv`]. A value (or `get-many` answer) bigger than the guest's `memory` limit
//! is not copied for it: the call ends with `CallError::MemoryLimit`.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::host::api::kv_ext;
use super::wasi::keyvalue::store::{Error, KeyResponse};
use super::wasi::keyvalue::{atomics, batch, store};
use super::{CallParts, Capability, Limiter, Parts, Setup};
use crate::manifest::Grants;
use crate::storage::kv::{Entry, KeyPage, KvBackend, KvError, KvStore, PAGE, Swap};

/// The key-value stores a function is granted.
pub struct Kv {
    app: String,
    grants: Arc<Grants>,
    backend: Arc<dyn KvBackend>,
}

impl Capability for Kv {
    fn build(setup: &Setup<'_>) -> Option<Kv> {
        (!setup.grants.kv.is_empty()).then(|| Kv {
            app: setup.app.to_string(),
            grants: setup.grants.clone(),
            backend: setup.services.kv.clone(),
        })
    }

    fn add_to_linker<T: CallParts>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        store::add_to_linker::<T, Kv>(linker, |state| state.parts().into())?;
        atomics::add_to_linker::<T, Kv>(linker, |state| state.parts().into())?;
        batch::add_to_linker::<T, Kv>(linker, |state| state.parts().into())?;
        kv_ext::add_to_linker::<T, Kv>(linker, |state| state.parts().into())
    }
}

impl HasData for Kv {
    type Data<'a> = View<'a>;
}

/// What the `wasi:keyvalue` host calls of one call work on.
pub struct View<'a> {
    kv: Option<&'a Kv>,
    table: &'a mut ResourceTable,
    memory: &'a mut Limiter,
}

impl<'a> From<Parts<'a>> for View<'a> {
    fn from(Parts { contexts, table, memory, .. }: Parts<'a>) -> View<'a> {
        View { kv: contexts.get(), table, memory }
    }
}

/// An open store (the `bucket` resource of `wasi:keyvalue/store`).
pub struct KvBucket {
    store: Arc<dyn KvStore>,
}

/// A compare-and-swap handle: the key and the entry seen when it was made.
pub struct KvCas {
    store: Arc<dyn KvStore>,
    key: String,
    seen: Option<Entry>,
}

type KvResult<T> = wasmtime::Result<Result<T, Error>>;

fn other(e: KvError) -> Error {
    Error::Other(e.to_string())
}

fn keys(page: KeyPage) -> KeyResponse {
    KeyResponse { keys: page.keys, cursor: page.cursor }
}

impl View<'_> {
    fn store(&self, bucket: &Resource<KvBucket>) -> wasmtime::Result<Arc<dyn KvStore>> {
        Ok(self.table.get(bucket)?.store.clone())
    }

    /// A copy of the value of `key` for the guest, refused (the call ends with
    /// `CallError::MemoryLimit`) when it could not fit in the guest's `memory` limit.
    fn hand_over(&mut self, key: &str, value: Option<&Bytes>) -> wasmtime::Result<Option<Vec<u8>>> {
        match value {
            Some(v) if v.len() as u64 > self.memory.value_budget() => {
                Err(self.memory.too_big(&format!("the value of `{key}`"), v.len() as u64))
            }
            value => Ok(value.map(|v| v.to_vec())),
        }
    }
}

impl store::Host for View<'_> {
    async fn open(&mut self, identifier: String) -> KvResult<Resource<KvBucket>> {
        let Some(kv) = self.kv.filter(|kv| kv.grants.kv(&identifier)) else {
            return Ok(Err(Error::AccessDenied));
        };
        match kv.backend.open(&kv.app, &identifier).await {
            Ok(store) => Ok(Ok(self.table.push(KvBucket { store })?)),
            Err(e) => Ok(Err(other(e))),
        }
    }
}

impl store::HostBucket for View<'_> {
    async fn get(&mut self, bucket: Resource<KvBucket>, key: String) -> KvResult<Option<Vec<u8>>> {
        match self.store(&bucket)?.get(&key).await {
            Ok(entry) => self.hand_over(&key, entry.as_ref().map(|e| &e.value)).map(Ok),
            Err(e) => Ok(Err(other(e))),
        }
    }

    async fn set(&mut self, bucket: Resource<KvBucket>, key: String, value: Vec<u8>) -> KvResult<()> {
        Ok(self.store(&bucket)?.put(&key, value.into()).await.map_err(other))
    }

    async fn delete(&mut self, bucket: Resource<KvBucket>, key: String) -> KvResult<()> {
        Ok(self.store(&bucket)?.delete(&key).await.map_err(other))
    }

    async fn exists(&mut self, bucket: Resource<KvBucket>, key: String) -> KvResult<bool> {
        Ok(self.store(&bucket)?.exists(&key).await.map_err(other))
    }

    async fn list_keys(&mut self, bucket: Resource<KvBucket>, cursor: Option<String>) -> KvResult<KeyResponse> {
        Ok(self.store(&bucket)?.list("", cursor.as_deref(), PAGE).await.map(keys).map_err(other))
    }

    async fn drop(&mut self, bucket: Resource<KvBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl kv_ext::Host for View<'_> {
    async fn list_prefix(
        &mut self,
        bucket: Resource<KvBucket>,
        prefix: String,
        cursor: Option<String>,
    ) -> KvResult<KeyResponse> {
        Ok(self.store(&bucket)?.list(&prefix, cursor.as_deref(), PAGE).await.map(keys).map_err(other))
    }
}

impl atomics::Host for View<'_> {
    async fn increment(&mut self, bucket: Resource<KvBucket>, key: String, delta: i64) -> KvResult<i64> {
        Ok(self.store(&bucket)?.increment(&key, delta).await.map_err(other))
    }

    async fn swap(&mut self, cas: Resource<KvCas>, value: Vec<u8>) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let cas = self.table.delete(cas)?;
        match cas.store.put_if(&cas.key, cas.seen.as_ref().map(|e| &e.revision), value.into()).await {
            Ok(Swap::Done) => Ok(Ok(())),
            Ok(Swap::Raced(current)) => {
                let fresh = self.table.push(KvCas { seen: current, ..cas })?;
                Ok(Err(atomics::CasError::CasFailed(fresh)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(other(e)))),
        }
    }
}

impl atomics::HostCas for View<'_> {
    async fn new(&mut self, bucket: Resource<KvBucket>, key: String) -> KvResult<Resource<KvCas>> {
        let store = self.store(&bucket)?;
        let seen = match store.get(&key).await {
            Ok(seen) => seen,
            Err(e) => return Ok(Err(other(e))),
        };
        Ok(Ok(self.table.push(KvCas { store, key, seen })?))
    }

    async fn current(&mut self, cas: Resource<KvCas>) -> KvResult<Option<Vec<u8>>> {
        let cas = self.table.get(&cas)?;
        let (key, seen) = (cas.key.clone(), cas.seen.as_ref().map(|e| e.value.clone()));
        self.hand_over(&key, seen.as_ref()).map(Ok)
    }

    async fn drop(&mut self, cas: Resource<KvCas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for View<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<KvBucket>,
        keys: Vec<String>,
    ) -> KvResult<Vec<(String, Option<Vec<u8>>)>> {
        // The answer is built in host memory before it is copied into the guest: the store
        // refuses one that could not fit in the guest's memory before building more of it.
        let budget = self.memory.value_budget();
        match self.store(&bucket)?.get_many(keys, budget).await {
            Ok(found) => Ok(Ok(found.into_iter().map(|(k, e)| (k, e.map(|e| e.value.to_vec()))).collect())),
            Err(KvError::TooLarge { bytes }) => Err(self.memory.too_big("a get-many answer", bytes)),
            Err(e) => Ok(Err(other(e))),
        }
    }

    async fn set_many(&mut self, bucket: Resource<KvBucket>, key_values: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        let pairs = key_values.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect();
        Ok(self.store(&bucket)?.put_many(pairs).await.map_err(other))
    }

    async fn delete_many(&mut self, bucket: Resource<KvBucket>, keys: Vec<String>) -> KvResult<()> {
        Ok(self.store(&bucket)?.delete_many(keys).await.map_err(other))
    }
}
