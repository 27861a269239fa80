//! `host:api/buckets`: the guest's view of [`crate::storage::blobs`], limited to granted buckets.
//! Reads check the object's size first: one that could not fit in the guest's `memory` limit is
//! not read, and the call ends with `CallError::MemoryLimit`.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::host::api::buckets::{self, Error, Host, HostBucket, ListPage, ObjectStat};
use super::{CallParts, Capability, Limiter, Parts, Setup};
use crate::manifest::Grants;
use crate::storage::blobs::{self, BlobBackend, BlobError, Bucket};

/// The buckets a function is granted.
pub struct Buckets {
    app: String,
    grants: Arc<Grants>,
    backend: Arc<dyn BlobBackend>,
}

impl Capability for Buckets {
    fn build(setup: &Setup<'_>) -> Option<Buckets> {
        (!setup.grants.buckets.is_empty()).then(|| Buckets {
            app: setup.app.to_string(),
            grants: setup.grants.clone(),
            backend: setup.services.blobs.clone(),
        })
    }

    fn add_to_linker<T: CallParts>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        buckets::add_to_linker::<T, Buckets>(linker, |state| state.parts().into())
    }
}

impl HasData for Buckets {
    type Data<'a> = View<'a>;
}

/// What the `host:api/buckets` host calls of one call work on.
pub struct View<'a> {
    buckets: Option<&'a Buckets>,
    table: &'a mut ResourceTable,
    memory: &'a mut Limiter,
}

impl<'a> From<Parts<'a>> for View<'a> {
    fn from(Parts { contexts, table, memory, .. }: Parts<'a>) -> View<'a> {
        View { buckets: contexts.get(), table, memory }
    }
}

/// An open bucket (the `bucket` resource).
pub struct OpenBucket(Arc<dyn Bucket>);

type BucketResult<T> = wasmtime::Result<Result<T, Error>>;

impl From<BlobError> for Error {
    /// The guest's view: a conflict between keys breaks the key rules (`invalid-key`).
    fn from(e: BlobError) -> Error {
        match e {
            BlobError::NoSuchKey(_) => Error::NoSuchKey,
            BlobError::InvalidKey(reason) => Error::InvalidKey(reason),
            e @ (BlobError::ObjectInTheWay { .. } | BlobError::FolderInTheWay { .. }) => {
                Error::InvalidKey(e.to_string())
            }
            e @ BlobError::Open { .. } => Error::Other(e.to_string()),
            BlobError::Io(message) => Error::Other(message),
        }
    }
}

impl View<'_> {
    fn bucket(&self, bucket: &Resource<OpenBucket>) -> wasmtime::Result<Arc<dyn Bucket>> {
        Ok(self.table.get(bucket)?.0.clone())
    }

    /// Read for the guest, refusing before reading anything more than fits in its `memory`
    /// limit: the call then ends with `CallError::MemoryLimit`.
    async fn read_at_most(
        &mut self,
        bucket: &Resource<OpenBucket>,
        key: String,
        offset: u64,
        length: u64,
    ) -> BucketResult<Vec<u8>> {
        let object = match self.bucket(bucket)?.read(&key, offset, length).await {
            Ok(object) => object,
            Err(e) => return Ok(Err(e.into())),
        };
        if object.size > self.memory.value_budget() {
            return Err(self.memory.too_big(&format!("reading bucket object `{key}`"), object.size));
        }
        Ok(blobs::read_to_vec(&key, object).await.map_err(Error::from))
    }
}

impl Host for View<'_> {
    async fn open(&mut self, name: String) -> BucketResult<Resource<OpenBucket>> {
        let Some(buckets) = self.buckets.filter(|b| b.grants.bucket(&name)) else {
            return Ok(Err(Error::AccessDenied));
        };
        match buckets.backend.open(&buckets.app, &name).await {
            Ok(bucket) => Ok(Ok(self.table.push(OpenBucket(bucket))?)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl HostBucket for View<'_> {
    async fn read(&mut self, bucket: Resource<OpenBucket>, key: String) -> BucketResult<Vec<u8>> {
        self.read_at_most(&bucket, key, 0, u64::MAX).await
    }

    async fn read_range(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        offset: u64,
        length: u64,
    ) -> BucketResult<Vec<u8>> {
        self.read_at_most(&bucket, key, offset, length).await
    }

    async fn write(&mut self, bucket: Resource<OpenBucket>, key: String, data: Vec<u8>) -> BucketResult<()> {
        Ok(self.bucket(&bucket)?.write(&key, blobs::from_bytes(data)).await.map_err(Error::from))
    }

    async fn delete(&mut self, bucket: Resource<OpenBucket>, key: String) -> BucketResult<()> {
        Ok(self.bucket(&bucket)?.delete(&key).await.map_err(Error::from))
    }

    async fn exists(&mut self, bucket: Resource<OpenBucket>, key: String) -> BucketResult<bool> {
        Ok(self.bucket(&bucket)?.exists(&key).await.map_err(Error::from))
    }

    async fn stat(&mut self, bucket: Resource<OpenBucket>, key: String) -> BucketResult<ObjectStat> {
        let stat = self.bucket(&bucket)?.stat(&key).await;
        Ok(stat.map(|s| ObjectStat { size: s.size, modified_ms: s.modified_ms }).map_err(Error::from))
    }

    async fn list(
        &mut self,
        bucket: Resource<OpenBucket>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> BucketResult<ListPage> {
        let page = self.bucket(&bucket)?.list(&prefix, cursor.as_deref(), limit).await;
        Ok(page.map(|p| ListPage { keys: p.keys, cursor: p.cursor }).map_err(Error::from))
    }

    async fn drop(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}
