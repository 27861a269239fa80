//! The embedded blob backend: objects as files under one cap-std `Dir` per (app, bucket),
//! `ROOT/APP/BUCKET/KEY`, so no key can reach outside its bucket. Writes go to a staging folder
//! first (`ROOT/APP/.staging`; bucket names cannot start with `.`) and are renamed into place. The
//! file work runs on tokio's blocking pool (`files::blocking`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::mpsc;

use super::{BlobBackend, BlobError, Bucket, ListPage, MAX_PAGE, Object, Reader, Stat, validate_key};
use crate::files::blocking;

/// Folder beside the buckets where writes are staged.
const STAGING: &str = ".staging";
/// Bytes per chunk of a streamed read or write.
const CHUNK: usize = 1 << 20;

/// Buckets as folders under one root, by app.
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Buckets kept under `root` (`DATA/buckets`).
    pub fn new(root: PathBuf) -> LocalBlobs {
        LocalBlobs { root }
    }
}

#[async_trait::async_trait]
impl BlobBackend for LocalBlobs {
    async fn open(&self, app: &str, bucket: &str) -> Result<Arc<dyn Bucket>, BlobError> {
        let (dir, name) = (self.root.join(app), bucket.to_string());
        let opened = blocking(move || LocalBucket::open(&dir, &name)).await;
        let bucket_error = |e: std::io::Error| BlobError::Open { bucket: bucket.into(), message: e.to_string() };
        Ok(Arc::new(opened.map_err(bucket_error)?))
    }
}

/// Whether an I/O error means "there is no object under this key" (a folder is not an object).
fn missing(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{IsADirectory, NotADirectory, NotFound};
    matches!(e.kind(), NotFound | IsADirectory | NotADirectory)
}

/// Open (creating it, durably, if needed) the folder of bucket `name` under `buckets_dir`.
pub fn open_bucket_dir(buckets_dir: &Path, name: &str) -> std::io::Result<Dir> {
    let path = buckets_dir.join(name);
    crate::files::create_dir_all_synced(&path)?;
    Dir::open_ambient_dir(path, ambient_authority())
}

/// Remove the staged files that writes a crash interrupted, in every app's staging folder under
/// `root`; done when a host starts.
pub(crate) fn remove_orphans(root: &Path) -> std::io::Result<()> {
    crate::files::remove_orphans(root, Some(STAGING), |_| true)
}

/// The folder part of `key`, `.` for a top-level key.
fn parent(key: &str) -> &str {
    key.rsplit_once('/').map_or(".", |(parent, _)| parent)
}

/// Create folder `path` of `dir` and its missing parents, syncing the folder holding each new one.
fn create_dirs_synced(dir: &Dir, path: &str) -> std::io::Result<()> {
    let ends = path.match_indices('/').map(|(i, _)| i).chain([path.len()]);
    for folder in ends.map(|end| &path[..end]) {
        match dir.create_dir(folder) {
            Ok(()) => dir.open(parent(folder))?.sync_all()?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An open bucket; clones share the open folders.
#[derive(Clone)]
struct LocalBucket {
    dir: Arc<Dir>,
    staging: Arc<Dir>,
}

impl LocalBucket {
    /// Open (creating it if needed) bucket `name` under `buckets_dir`. Blocking.
    fn open(buckets_dir: &Path, name: &str) -> std::io::Result<LocalBucket> {
        Ok(LocalBucket {
            dir: Arc::new(open_bucket_dir(buckets_dir, name)?),
            staging: Arc::new(open_bucket_dir(buckets_dir, STAGING)?),
        })
    }

    /// Run `op` on the bucket's folder after validating `key`.
    fn with_key<T>(&self, key: &str, op: impl FnOnce(&Dir) -> std::io::Result<T>) -> Result<T, BlobError> {
        validate_key(key)?;
        let dir: &Dir = &self.dir;
        op(dir).map_err(|e| {
            if missing(&e) { BlobError::NoSuchKey(key.into()) } else { BlobError::Io(format!("key {key:?}: {e}")) }
        })
    }

    /// Run `op` on a clone of the bucket on the blocking pool.
    async fn on<T: Send + 'static>(
        &self,
        key: &str,
        op: impl FnOnce(&LocalBucket, &str) -> Result<T, BlobError> + Send + 'static,
    ) -> Result<T, BlobError> {
        let (bucket, key) = (self.clone(), key.to_string());
        blocking(move || op(&bucket, &key)).await
    }

    /// Create or replace an object with what `fill` writes: staged, synced, renamed into place,
    /// folder synced; new folders are synced too. Blocking.
    fn put_staged(
        &self,
        key: &str,
        fill: impl FnOnce(&mut cap_std::fs::File) -> std::io::Result<()>,
    ) -> Result<(), BlobError> {
        static STAGED: AtomicU64 = AtomicU64::new(0);
        let staged = format!("{}-{}", std::process::id(), STAGED.fetch_add(1, Ordering::Relaxed));
        let written = self
            .staging
            .create(&staged)
            .and_then(|mut file| {
                fill(&mut file)?;
                file.sync_data()
            })
            .and_then(|()| self.install(&staged, key));
        if written.is_err() {
            let _ = self.staging.remove_file(&staged);
        }
        written.map_err(|e| self.conflict(key).unwrap_or_else(|| BlobError::Io(format!("key {key:?}: {e}"))))
    }

    /// Rename the staged file to `key`, creating the key's folders, and sync the folder that
    /// holds it. A concurrent delete may remove a folder of the key that it emptied between
    /// creating it and the rename: then try again, a few times.
    fn install(&self, staged: &str, key: &str) -> std::io::Result<()> {
        const TRIES: usize = 8;
        let dir: &Dir = &self.dir;
        for tries in 1.. {
            let folders = key.rsplit_once('/').map_or(Ok(()), |(folder, _)| create_dirs_synced(dir, folder));
            match folders.and_then(|()| self.staging.rename(staged, dir, key)) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < TRIES => {}
                Err(e) => return Err(e),
                Ok(()) => break,
            }
        }
        // Make the rename itself durable. A folder already gone was emptied by a delete of this
        // very object, which came after the write.
        match dir.open(parent(key)) {
            Ok(folder) => folder.sync_all(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Why `key` cannot be written, when another key is in its way: an object where one of its
    /// folders should be, or objects under `key/`.
    fn conflict(&self, key: &str) -> Option<BlobError> {
        let is = |path: &str, file: bool| self.dir.metadata(path).is_ok_and(|m| m.is_file() == file);
        if let Some((end, _)) = key.match_indices('/').find(|(end, _)| is(&key[..*end], true)) {
            return Some(BlobError::ObjectInTheWay { key: key.into(), object: key[..end].into() });
        }
        if is(key, false) {
            let mut inside = Vec::new();
            let _ = self.dir.open_dir(key).and_then(|folder| walk(&folder, &format!("{key}/"), &mut inside));
            let object = inside.into_iter().min().unwrap_or_else(|| format!("{key}/"));
            return Some(BlobError::FolderInTheWay { key: key.into(), object });
        }
        None
    }

    /// Remove an object (absent is fine) and the folders it leaves empty. Blocking.
    fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.with_key(key, |dir| {
            match dir.remove_file(key) {
                Err(e) if missing(&e) => return Ok(()),
                other => other?,
            }
            // Remove the folders the key leaves empty, so that their names can be keys again.
            let mut parent = key;
            while let Some((up, _)) = parent.rsplit_once('/') {
                if dir.remove_dir(up).is_err() {
                    break;
                }
                parent = up;
            }
            Ok(())
        })
    }

    /// Keys starting with `prefix`, in order, after `cursor`; at most `limit`. Blocking.
    fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, BlobError> {
        let mut keys = Vec::new();
        walk(&self.dir, "", &mut keys).map_err(|e| BlobError::Io(format!("listing {prefix:?}: {e}")))?;
        keys.sort();
        let (keys, cursor) = crate::storage::page_of(keys, prefix, cursor, (limit as usize).clamp(1, MAX_PAGE));
        Ok(ListPage { keys, cursor })
    }
}

#[async_trait::async_trait]
impl Bucket for LocalBucket {
    async fn read(&self, key: &str, offset: u64, length: u64) -> Result<Object, BlobError> {
        self.on(key, move |bucket, key| {
            bucket.with_key(key, |dir| {
                let file = dir.open(key)?;
                let meta = file.metadata()?;
                if !meta.is_file() {
                    return Err(std::io::ErrorKind::NotFound.into());
                }
                let size = length.min(meta.len().saturating_sub(offset));
                let mut file = file.into_std();
                file.seek(SeekFrom::Start(offset))?;
                Ok(Object { size, reader: Box::pin(FileReader::Idle(Some((file, size)))) })
            })
        })
        .await
    }

    async fn write(&self, key: &str, mut data: Reader) -> Result<(), BlobError> {
        validate_key(key)?;
        // The blocking side writes chunks as the stream yields them; an error of the stream
        // reaches it too, so that a write cut short never replaces the object.
        let (chunks, mut next) = mpsc::channel::<std::io::Result<Vec<u8>>>(2);
        let written = self.on(key, move |bucket, key| {
            bucket.put_staged(key, |file| {
                while let Some(chunk) = next.blocking_recv() {
                    file.write_all(&chunk?)?;
                }
                Ok(())
            })
        });
        let feed = async move {
            loop {
                let mut chunk = Vec::new();
                let read = (&mut data).take(CHUNK as u64).read_to_end(&mut chunk).await;
                let end = matches!(read, Ok(n) if n < CHUNK);
                let failed = read.is_err();
                if chunks.send(read.map(|_| chunk)).await.is_err() || end || failed {
                    break;
                }
            }
        };
        let (written, ()) = tokio::join!(written, feed);
        written
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.on(key, |bucket, key| bucket.delete(key)).await
    }

    async fn stat(&self, key: &str) -> Result<Stat, BlobError> {
        self.on(key, |bucket, key| {
            bucket.with_key(key, |dir| {
                let meta = dir.metadata(key)?;
                if !meta.is_file() {
                    return Err(std::io::ErrorKind::NotFound.into());
                }
                let modified = meta.modified()?.into_std();
                let modified_ms = modified.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                Ok(Stat { size: meta.len(), modified_ms })
            })
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        self.on(key, |bucket, key| {
            bucket.with_key(key, |dir| match dir.metadata(key) {
                Ok(meta) => Ok(meta.is_file()),
                Err(e) if missing(&e) => Ok(false),
                Err(e) => Err(e),
            })
        })
        .await
    }

    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, BlobError> {
        let (bucket, prefix, cursor) = (self.clone(), prefix.to_string(), cursor.map(str::to_string));
        blocking(move || bucket.list(&prefix, cursor.as_deref(), limit)).await
    }
}

/// Collect every file under `dir` as a `/`-separated key prefixed by `prefix`. A folder's
/// listing is read whole before descending, so one descriptor is open per level (keys have at
/// most [`super::MAX_KEY_SEGMENTS`] levels).
fn walk(dir: &Dir, prefix: &str, keys: &mut Vec<String>) -> std::io::Result<()> {
    let mut folders = Vec::new();
    for entry in dir.entries()? {
        let entry = entry?;
        let key = format!("{prefix}{}", entry.file_name().to_string_lossy());
        if entry.file_type()?.is_dir() {
            folders.push(key);
        } else {
            keys.push(key);
        }
    }
    for folder in folders {
        walk(&dir.open_dir(&folder[prefix.len()..])?, &format!("{folder}/"), keys)?;
    }
    Ok(())
}

/// A file streamed from the blocking pool in chunks. Nothing is read before the first poll.
enum FileReader {
    /// Not polled yet: the file and how many bytes to read from it.
    Idle(Option<(std::fs::File, u64)>),
    /// Chunks arrive from a blocking task; `chunk[at..]` is not handed out yet.
    Reading { chunks: mpsc::Receiver<std::io::Result<Vec<u8>>>, chunk: Vec<u8>, at: usize },
}

/// Send the first `left` bytes of `file` as chunks until the reader goes away. Blocking.
fn send_chunks(mut file: std::fs::File, mut left: u64, chunks: mpsc::Sender<std::io::Result<Vec<u8>>>) {
    while left > 0 {
        let mut chunk = Vec::new();
        let read = (&mut file).take(left.min(CHUNK as u64)).read_to_end(&mut chunk);
        let stop = !matches!(read, Ok(n) if n > 0);
        left -= chunk.len() as u64;
        if chunks.blocking_send(read.map(|_| chunk)).is_err() || stop {
            return;
        }
    }
}

impl AsyncRead for FileReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            match &mut *self {
                FileReader::Idle(file) => {
                    let (file, left) = file.take().expect("an idle reader holds its file");
                    let (sender, chunks) = mpsc::channel(2);
                    tokio::task::spawn_blocking(move || send_chunks(file, left, sender));
                    *self = FileReader::Reading { chunks, chunk: Vec::new(), at: 0 };
                }
                FileReader::Reading { chunks, chunk, at } => {
                    if *at < chunk.len() {
                        let n = buf.remaining().min(chunk.len() - *at);
                        buf.put_slice(&chunk[*at..*at + n]);
                        *at += n;
                        return Poll::Ready(Ok(()));
                    }
                    match ready!(chunks.poll_recv(cx)) {
                        Some(Ok(next)) => (*chunk, *at) = (next, 0),
                        Some(Err(e)) => return Poll::Ready(Err(e)),
                        None => return Poll::Ready(Ok(())),
                    }
                }
            }
        }
    }
}
