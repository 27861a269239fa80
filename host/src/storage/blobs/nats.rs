//! The networked blob backend: one JetStream object store per (app, bucket), shared by every node
//! connected to the cluster. An object is written as a stream of chunks (one message each) and
//! then its metadata message, so readers see the old object or the new one (a reader still
//! streaming an object that is replaced or removed meanwhile gets an error); it is read back as a
//! stream, from the stream leader (the object store's stream is created with `allow_direct`
//! off, so that a write acknowledged on one node is seen by a read on any other). A removed
//! object leaves no metadata behind, so the bucket's keys are the metadata subjects themselves,
//! read from the stream's info in one request rather than by reading every object's metadata.
//!
//! A key cannot be both an object and a folder (as on the local backend): a write checks the
//! bucket's keys before writing, and when it created a new object, checks again after. Of two
//! nodes racing to write `f` and `f/g`, the later check of the two sees both objects, so at most
//! one write succeeds; the other removes its new object and fails with the conflict (both may
//! fail).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_nats::jetstream::object_store::{GetErrorKind, InfoErrorKind, ObjectInfo, ObjectMetadata, ObjectStore};
use async_nats::jetstream::stream::{self, DiscardPolicy, LastRawMessageErrorKind};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::mpsc;

use super::{BlobBackend, BlobError, Bucket, ListPage, MAX_PAGE, Object, Reader, Stat, from_bytes, validate_key};
use crate::storage::nats::{Nats, NatsError, OpenCache};

/// Bytes per chunk (message) of an object.
const CHUNK: usize = 128 << 10;

/// Buckets as JetStream object stores.
pub struct NatsBlobs {
    nats: Nats,
    /// Buckets opened so far, by (app, bucket).
    open: OpenCache<(String, String), Arc<NatsBucket>>,
}

impl NatsBlobs {
    /// Buckets on the cluster of `nats`; nothing is created before a bucket is opened.
    pub fn new(nats: Nats) -> NatsBlobs {
        NatsBlobs { nats, open: OpenCache::default() }
    }
}

#[async_trait::async_trait]
impl BlobBackend for NatsBlobs {
    async fn open(&self, app: &str, bucket: &str) -> Result<Arc<dyn Bucket>, BlobError> {
        let id = (app.to_string(), bucket.to_string());
        let opened = self.open.get_or_open(id, || async {
            let opened = NatsBucket::open(&self.nats, app, bucket).await;
            opened.map(Arc::new).map_err(|e| BlobError::Open { bucket: bucket.into(), message: e.to_string() })
        });
        Ok(opened.await?)
    }
}

/// One open bucket.
struct NatsBucket {
    nats: Nats,
    store: ObjectStore,
    /// The object store's stream.
    stream: stream::Stream,
    /// The object store's name.
    name: String,
}

fn io(key: &str) -> impl Fn(NatsError) -> BlobError + '_ {
    move |e| BlobError::Io(format!("key {key:?}: {e}"))
}

impl NatsBucket {
    /// Open the object store of `bucket` of `app`, created on first use as the object store API
    /// lays it out, but with reads from the stream leader.
    async fn open(nats: &Nats, app: &str, bucket: &str) -> Result<NatsBucket, NatsError> {
        let name = nats.name("OBJ", &[app, bucket]);
        let config = stream::Config {
            name: format!("OBJ_{name}"),
            subjects: vec![format!("$O.{name}.C.>"), format!("$O.{name}.M.>")],
            max_bytes: -1,
            max_message_size: -1,
            num_replicas: nats.replicas,
            discard: DiscardPolicy::New,
            allow_rollup: true,
            allow_direct: false,
            ..Default::default()
        };
        let stream = nats.stream(config.clone()).await?;
        let store = nats.retry(|| nats.js.get_object_store(&name)).await?;
        Ok(NatsBucket { nats: nats.clone(), store, stream, name })
    }

    /// The object's metadata, `None` when there is none (or it was deleted).
    async fn info(&self, key: &str) -> Result<Option<ObjectInfo>, BlobError> {
        validate_key(key)?;
        let info = self
            .nats
            .retry(|| async {
                match self.store.info(key).await {
                    Ok(info) => Ok(Some(info)),
                    Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(io(key))?;
        Ok(info.filter(|i| !i.deleted))
    }

    /// Every key, in order: the subjects holding object metadata, which name their object (an
    /// object removed by [`NatsBucket::remove`] leaves none).
    async fn keys(&self) -> Result<Vec<String>, NatsError> {
        // Not the object store's `list`: its end is the consumer's pending count reaching zero,
        // which a concurrent change can make it miss, and then it waits forever.
        let prefix = format!("$O.{}.M.", self.name);
        let subjects: Vec<String> = self
            .nats
            .retry(|| async {
                let subjects = self.stream.info_with_subjects(format!("{prefix}>")).await.map_err(|e| e.to_string())?;
                subjects.map_ok(|(subject, _)| subject).try_collect::<Vec<String>>().await.map_err(|e| e.to_string())
            })
            .await?;
        let name = |subject: &str| {
            let encoded = subject.strip_prefix(&prefix)?;
            String::from_utf8(URL_SAFE.decode(encoded).ok()?).ok()
        };
        let mut keys: Vec<String> = subjects.iter().filter_map(|s| name(s)).collect();
        keys.sort_unstable();
        Ok(keys)
    }

    /// Why `key` cannot be written, when another key is in its way: an object where one of its
    /// folders should be, or objects under `key/`.
    async fn conflict(&self, key: &str) -> Result<Option<BlobError>, BlobError> {
        let keys = self.keys().await.map_err(io(key))?;
        let is_object = |k: &str| keys.binary_search_by(|probe| probe.as_str().cmp(k)).is_ok();
        if let Some((end, _)) = key.match_indices('/').find(|(end, _)| is_object(&key[..*end])) {
            return Ok(Some(BlobError::ObjectInTheWay { key: key.into(), object: key[..end].into() }));
        }
        let folder = format!("{key}/");
        // Keys are sorted: the first one after the folder's name is its smallest object, if any.
        let first = keys.partition_point(|k| k.as_str() < folder.as_str());
        Ok(keys
            .get(first)
            .filter(|k| k.starts_with(&folder))
            .map(|object| BlobError::FolderInTheWay { key: key.into(), object: object.clone() }))
    }

    /// Remove the object under `key` (absent is fine): its metadata messages up to the last one
    /// (a write racing with it comes after and stays), then its chunks. Unlike the object
    /// store's `delete`, this leaves no marker behind, so that listings need read no metadata.
    async fn remove(&self, key: &str) -> Result<(), BlobError> {
        let subject = format!("$O.{}.M.{}", self.name, URL_SAFE.encode(key));
        let last = self
            .nats
            .retry(|| async {
                match self.stream.get_last_raw_message_by_subject(&subject).await {
                    Ok(message) => Ok(Some(message)),
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(io(key))?;
        let Some(last) = last else { return Ok(()) };
        let purge = |subject: String, before: Option<u64>| async move {
            self.nats
                .retry(|| async {
                    match before {
                        Some(sequence) => self.stream.purge().filter(&subject).sequence(sequence).await,
                        None => self.stream.purge().filter(&subject).await,
                    }
                })
                .await
                .map(drop)
                .map_err(io(key))
        };
        purge(subject.clone(), Some(last.sequence + 1)).await?;
        if let Ok(info) = serde_json::from_slice::<ObjectInfo>(&last.payload) {
            purge(format!("$O.{}.C.{}", self.name, info.nuid), None).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Bucket for NatsBucket {
    async fn read(&self, key: &str, offset: u64, length: u64) -> Result<Object, BlobError> {
        validate_key(key)?;
        let object = self
            .nats
            .retry(|| async {
                match self.store.get(key).await {
                    Ok(object) => Ok(Some(object)),
                    Err(e) if e.kind() == GetErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(io(key))?
            .ok_or_else(|| BlobError::NoSuchKey(key.into()))?;
        let total = object.info().size as u64;
        let size = length.min(total.saturating_sub(offset));
        if size == 0 {
            return Ok(Object { size, reader: from_bytes(Vec::new()) });
        }
        let stream = Streamed { store: self.store.clone(), key: key.into(), offset, size };
        Ok(Object { size, reader: Box::pin(ObjectReader::Idle(Some(Box::new((object, stream))))) })
    }

    async fn write(&self, key: &str, mut data: Reader) -> Result<(), BlobError> {
        validate_key(key)?;
        let existed = self.info(key).await?.is_some();
        if let Some(conflict) = self.conflict(key).await? {
            return Err(conflict);
        }
        // Not retried: the stream is read as it is written. A failed stream leaves the old
        // object in place (its metadata is written last).
        let meta = ObjectMetadata { name: key.into(), chunk_size: Some(CHUNK), ..Default::default() };
        self.store.put(meta, &mut data).await.map_err(|e| BlobError::Io(format!("key {key:?}: {e}")))?;
        if !existed && let Some(conflict) = self.conflict(key).await? {
            // Another node wrote a key in the way meanwhile: of the two, this one gives way.
            self.remove(key).await?;
            return Err(conflict);
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        self.remove(key).await
    }

    async fn stat(&self, key: &str) -> Result<Stat, BlobError> {
        let info = self.info(key).await?.ok_or_else(|| BlobError::NoSuchKey(key.into()))?;
        let modified_ms = info.modified.map_or(0, |t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0));
        Ok(Stat { size: info.size as u64, modified_ms })
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        Ok(self.info(key).await?.is_some())
    }

    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, BlobError> {
        let keys = self.keys().await.map_err(|e| BlobError::Io(format!("listing {prefix:?}: {e}")))?;
        let (keys, cursor) = crate::storage::page_of(keys, prefix, cursor, (limit as usize).clamp(1, MAX_PAGE));
        Ok(ListPage { keys, cursor })
    }
}

/// How long a read may wait for the next chunk before checking that its object is still there.
const STALL: Duration = Duration::from_secs(1);

/// What to stream of an object.
struct Streamed {
    store: ObjectStore,
    key: String,
    /// Bytes to drop first: object stores have no range reads.
    offset: u64,
    /// Bytes to hand out after them.
    size: u64,
}

impl Streamed {
    /// Send the bytes of `object` as chunks until the reader goes away. When the object is
    /// replaced or removed, the chunks still to come are purged and would never arrive: a read
    /// that waits longer than [`STALL`] checks that the object is the same, and fails if not.
    async fn send(
        self,
        object: async_nats::jetstream::object_store::Object,
        chunks: mpsc::Sender<std::io::Result<Bytes>>,
    ) {
        let nuid = object.info().nuid.clone();
        let (mut skip, mut object) = (self.offset, object.take(self.offset + self.size));
        loop {
            let mut chunk = BytesMut::with_capacity(CHUNK);
            // Cancel-safe: a read that is still pending has taken no bytes.
            let read = match tokio::time::timeout(STALL, object.read_buf(&mut chunk)).await {
                Ok(Ok(0)) => return,
                Ok(read) => read.map(|_| chunk.freeze()),
                Err(_) => match self.store.info(&self.key).await {
                    Ok(info) if !info.deleted && info.nuid == nuid => continue,
                    _ => Err(std::io::Error::other(format!(
                        "object {:?} was replaced or removed while it was read",
                        self.key
                    ))),
                },
            };
            let read = match read {
                Ok(mut chunk) if skip > 0 => {
                    let dropped = chunk.len().min(usize::try_from(skip).unwrap_or(usize::MAX));
                    skip -= dropped as u64;
                    chunk.advance(dropped);
                    if chunk.is_empty() {
                        continue;
                    }
                    Ok(chunk)
                }
                other => other,
            };
            let failed = read.is_err();
            if chunks.send(read).await.is_err() || failed {
                return;
            }
        }
    }
}

/// An object streamed by a task, started on the first poll (nothing is read before).
enum ObjectReader {
    /// Not polled yet.
    Idle(Option<Box<(async_nats::jetstream::object_store::Object, Streamed)>>),
    /// Chunks arrive from the task; `chunk` is what is not handed out yet.
    Reading { chunks: mpsc::Receiver<std::io::Result<Bytes>>, chunk: Bytes },
}

impl AsyncRead for ObjectReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            match &mut *self {
                ObjectReader::Idle(object) => {
                    let (object, streamed) = *object.take().expect("an idle reader holds its object");
                    let (sender, chunks) = mpsc::channel(2);
                    tokio::spawn(streamed.send(object, sender));
                    *self = ObjectReader::Reading { chunks, chunk: Bytes::new() };
                }
                ObjectReader::Reading { chunks, chunk } => {
                    if !chunk.is_empty() {
                        let n = buf.remaining().min(chunk.len());
                        buf.put_slice(&chunk.split_to(n));
                        return Poll::Ready(Ok(()));
                    }
                    match ready!(chunks.poll_recv(cx)) {
                        Some(Ok(next)) => *chunk = next,
                        Some(Err(e)) => return Poll::Ready(Err(e)),
                        None => return Poll::Ready(Ok(())),
                    }
                }
            }
        }
    }
}
