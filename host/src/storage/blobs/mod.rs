//! Blobs: objects of bytes under `/`-separated keys in named buckets, one namespace per app.
//!
//! [`BlobBackend`] opens a [`Bucket`]; the embedded implementation is [`local::LocalBlobs`], one
//! folder per bucket, the networked one [`nats::NatsBlobs`], one JetStream object store per
//! bucket. Objects are read and written as streams, never needing a whole object in
//! one buffer, so a networked object store can sit behind the same traits.

use std::pin::Pin;
use std::sync::Arc;

use tokio::io::AsyncRead;

mod keys;
pub mod local;
pub mod nats;
#[cfg(test)]
pub(crate) mod tests;

pub use keys::{MAX_KEY_LEN, MAX_KEY_SEGMENTS, MAX_SEGMENT_LEN, validate_key};

/// Most keys returned by one `list` page.
pub const MAX_PAGE: usize = 1000;

/// A stream of an object's bytes.
pub type Reader = Pin<Box<dyn AsyncRead + Send>>;

/// Why a blob operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// The key breaks the key rules; the text says which.
    #[error("{0}")]
    InvalidKey(String),
    /// There is no object under this key.
    #[error("no object under key {0:?}")]
    NoSuchKey(String),
    /// The key needs `object` to be a folder, but an object is stored under it.
    #[error("key {key:?} conflicts with the object {object:?}: a key cannot be both an object and a folder of keys")]
    ObjectInTheWay {
        /// The key written.
        key: String,
        /// The object that would have to be a folder.
        object: String,
    },
    /// The key is a folder holding objects, such as `object`.
    #[error("key {key:?} conflicts with the object {object:?}: {key:?} is its folder, and a key cannot be both")]
    FolderInTheWay {
        /// The key written.
        key: String,
        /// An object in the folder.
        object: String,
    },
    /// The bucket could not be opened.
    #[error("cannot open bucket `{bucket}`: {message}")]
    Open {
        /// The bucket's name.
        bucket: String,
        /// What went wrong.
        message: String,
    },
    /// The storage failed; the text says what happened.
    #[error("{0}")]
    Io(String),
}

/// An object's size and when it was last written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Size in bytes.
    pub size: u64,
    /// Last write, in milliseconds since the Unix epoch.
    pub modified_ms: u64,
}

/// One page of keys, in order; `cursor` (the last key) asks for the next page when there is one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Keys of this page.
    pub keys: Vec<String>,
    /// Pass it back to get the next page; `None` on the last page.
    pub cursor: Option<String>,
}

/// Part of an object, ready to be read: nothing is read before the stream is polled, so a caller
/// can refuse an object by its `size`.
pub struct Object {
    /// The bytes the stream will yield.
    pub size: u64,
    /// The bytes.
    pub reader: Reader,
}

/// Opens buckets.
#[async_trait::async_trait]
pub trait BlobBackend: Send + Sync {
    /// Bucket `bucket` of `app`, created on first use.
    async fn open(&self, app: &str, bucket: &str) -> Result<Arc<dyn Bucket>, BlobError>;
}

/// One bucket. Keys follow [`validate_key`]; a write or delete returns once it is durable.
#[async_trait::async_trait]
pub trait Bucket: Send + Sync {
    /// Up to `length` bytes of the object under `key` from `offset` (`u64::MAX`: to its end).
    async fn read(&self, key: &str, offset: u64, length: u64) -> Result<Object, BlobError>;

    /// Create or replace the object under `key` with the bytes of `data`; readers see the old
    /// object or the new one, never part of it.
    async fn write(&self, key: &str, data: Reader) -> Result<(), BlobError>;

    /// Remove the object under `key` (absent is fine).
    async fn delete(&self, key: &str) -> Result<(), BlobError>;

    /// Size and time of the object under `key`.
    async fn stat(&self, key: &str) -> Result<Stat, BlobError>;

    /// Whether there is an object under `key`.
    async fn exists(&self, key: &str) -> Result<bool, BlobError>;

    /// Keys starting with `prefix`, in order, after `cursor`; at most `limit` (1 to [`MAX_PAGE`]).
    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, BlobError>;
}

/// Read a whole object stream into memory (for callers that checked its size).
pub async fn read_to_vec(key: &str, object: Object) -> Result<Vec<u8>, BlobError> {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::with_capacity(usize::try_from(object.size).unwrap_or(0));
    // `take` also bounds an object that grew since its size was read.
    let mut reader = object.reader.take(object.size);
    reader.read_to_end(&mut data).await.map_err(|e| BlobError::Io(format!("key {key:?}: {e}")))?;
    Ok(data)
}

/// A stream of bytes already in memory.
pub fn from_bytes(data: impl AsRef<[u8]> + Send + Unpin + 'static) -> Reader {
    Box::pin(std::io::Cursor::new(data))
}
