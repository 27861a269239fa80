//! `host:api/buckets`: objects as files under one cap-std `Dir` per (app, bucket), so no key can
//! reach outside its bucket. Writes go to a staging folder first and are renamed into place.
//! Guest calls run the file work on tokio's blocking pool (see [`crate::files::blocking`]). Reads
//! check the object's size first: one that could not fit in the guest's `memory` limit is not
//! read, and the call ends with [`crate::CallError::MemoryLimit`].

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use wasmtime::component::Resource;

use super::host::api::buckets::{Error, Host, HostBucket, ListPage, ObjectStat};
use crate::call::CallState;

/// Most keys returned by one `list` page.
const MAX_PAGE: usize = 1000;
/// Folder beside the buckets where writes are staged (bucket names cannot start with `.`).
const STAGING: &str = ".staging";

/// Why a bucket operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
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
    /// The file system failed; the text says what happened.
    #[error("{0}")]
    Io(String),
}

impl From<BucketError> for Error {
    /// The guest's view: a conflict between keys breaks the key rules (`invalid-key`).
    fn from(e: BucketError) -> Error {
        match e {
            BucketError::NoSuchKey(_) => Error::NoSuchKey,
            BucketError::InvalidKey(reason) => Error::InvalidKey(reason),
            e @ (BucketError::ObjectInTheWay { .. } | BucketError::FolderInTheWay { .. }) => {
                Error::InvalidKey(e.to_string())
            }
            BucketError::Io(message) => Error::Other(message),
        }
    }
}

/// An open bucket; clones share the open folders.
#[derive(Clone)]
pub struct BucketDir {
    dir: Arc<Dir>,
    staging: Arc<Dir>,
}

type BucketResult<T> = wasmtime::Result<Result<T, Error>>;

/// Check a key against the rules in `buckets.wit`; the error says which rule it breaks.
pub fn validate_key(key: &str) -> Result<(), BucketError> {
    crate::names::check_bucket_key(key).map_err(BucketError::InvalidKey)
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
/// `buckets_root`; done when a host starts.
pub(crate) fn remove_orphans(buckets_root: &Path) -> std::io::Result<()> {
    crate::files::remove_orphans(buckets_root, Some(STAGING), |_| true)
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

impl BucketDir {
    /// Open (creating it if needed) bucket `name` under `buckets_dir`.
    pub(crate) fn open(buckets_dir: &Path, name: &str) -> std::io::Result<BucketDir> {
        Ok(BucketDir {
            dir: Arc::new(open_bucket_dir(buckets_dir, name)?),
            staging: Arc::new(open_bucket_dir(buckets_dir, STAGING)?),
        })
    }

    /// Run `op` on the bucket's folder after validating `key`.
    fn with_key<T>(&self, key: &str, op: impl FnOnce(&Dir) -> std::io::Result<T>) -> Result<T, BucketError> {
        validate_key(key)?;
        let dir: &Dir = &self.dir;
        op(dir).map_err(|e| {
            if missing(&e) { BucketError::NoSuchKey(key.into()) } else { BucketError::Io(format!("key {key:?}: {e}")) }
        })
    }

    /// The whole object. Blocking.
    pub(crate) fn read(&self, key: &str) -> Result<Vec<u8>, BucketError> {
        self.with_key(key, |dir| dir.read(key))
    }

    /// Up to `length` bytes from `offset`. When more than `cap` bytes would be read, nothing is
    /// read and the inner `Err` holds how many.
    fn read_range(&self, key: &str, offset: u64, length: u64, cap: u64) -> Result<Result<Vec<u8>, u64>, BucketError> {
        self.with_key(key, |dir| {
            let mut file = dir.open(key)?;
            let wanted = length.min(file.metadata()?.len().saturating_sub(offset));
            if wanted > cap {
                return Ok(Err(wanted));
            }
            file.seek(SeekFrom::Start(offset))?;
            let mut data = Vec::with_capacity(wanted as usize);
            // `take` also bounds a file that grew since its size was read.
            file.take(wanted).read_to_end(&mut data)?;
            Ok(Ok(data))
        })
    }

    /// Create or replace an object: staged, synced, renamed into place, folder synced; new
    /// folders are synced too. Blocking.
    pub(crate) fn write(&self, key: &str, data: &[u8]) -> Result<(), BucketError> {
        static STAGED: AtomicU64 = AtomicU64::new(0);
        validate_key(key)?;
        let staged = format!("{}-{}", std::process::id(), STAGED.fetch_add(1, Ordering::Relaxed));
        let written = self
            .staging
            .create(&staged)
            .and_then(|mut file| {
                file.write_all(data)?;
                file.sync_data()
            })
            .and_then(|()| self.install(&staged, key));
        if written.is_err() {
            let _ = self.staging.remove_file(&staged);
        }
        written.map_err(|e| self.conflict(key).unwrap_or_else(|| BucketError::Io(format!("key {key:?}: {e}"))))
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
    fn conflict(&self, key: &str) -> Option<BucketError> {
        let is = |path: &str, file: bool| self.dir.metadata(path).is_ok_and(|m| m.is_file() == file);
        if let Some((end, _)) = key.match_indices('/').find(|(end, _)| is(&key[..*end], true)) {
            return Some(BucketError::ObjectInTheWay { key: key.into(), object: key[..end].into() });
        }
        if is(key, false) {
            let mut inside = Vec::new();
            let _ = self.dir.open_dir(key).and_then(|folder| walk(&folder, &format!("{key}/"), &mut inside));
            let object = inside.into_iter().min().unwrap_or_else(|| format!("{key}/"));
            return Some(BucketError::FolderInTheWay { key: key.into(), object });
        }
        None
    }

    /// Remove an object (absent is fine) and the folders it leaves empty. Blocking.
    pub(crate) fn delete(&self, key: &str) -> Result<(), BucketError> {
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

    fn exists(&self, key: &str) -> Result<bool, BucketError> {
        self.with_key(key, |dir| match dir.metadata(key) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if missing(&e) => Ok(false),
            Err(e) => Err(e),
        })
    }

    fn stat(&self, key: &str) -> Result<ObjectStat, BucketError> {
        self.with_key(key, |dir| {
            let meta = dir.metadata(key)?;
            if !meta.is_file() {
                return Err(std::io::ErrorKind::NotFound.into());
            }
            let modified = meta.modified()?.into_std();
            let modified_ms = modified.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            Ok(ObjectStat { size: meta.len(), modified_ms })
        })
    }

    /// Keys starting with `prefix`, in order, after `cursor`; at most `limit` (1 to 1000).
    /// Blocking.
    pub(crate) fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, BucketError> {
        let mut keys = Vec::new();
        walk(&self.dir, "", &mut keys).map_err(|e| BucketError::Io(format!("listing {prefix:?}: {e}")))?;
        keys.sort();
        let limit = (limit as usize).clamp(1, MAX_PAGE);
        let mut page: Vec<String> = keys
            .into_iter()
            .filter(|k| k.starts_with(prefix) && cursor.is_none_or(|c| k.as_str() > c))
            .take(limit + 1)
            .collect();
        let cursor = (page.len() > limit).then(|| {
            page.truncate(limit);
            page[limit - 1].clone()
        });
        Ok(ListPage { keys: page, cursor })
    }
}

/// Run `op` on `bucket` on a blocking thread, with the guest's view of its error.
async fn on<T: Send + 'static>(
    bucket: BucketDir,
    op: impl FnOnce(&BucketDir) -> Result<T, BucketError> + Send + 'static,
) -> Result<T, Error> {
    crate::files::blocking(move || op(&bucket)).await.map_err(Error::from)
}

impl CallState {
    fn bucket(&self, bucket: &Resource<BucketDir>) -> wasmtime::Result<BucketDir> {
        Ok(self.table.get(bucket)?.clone())
    }

    /// Read for the guest, refusing before reading anything more than fits in its `memory`
    /// limit: the call then ends with [`crate::CallError::MemoryLimit`].
    async fn read_at_most(
        &mut self,
        bucket: &Resource<BucketDir>,
        key: String,
        offset: u64,
        length: u64,
    ) -> BucketResult<Vec<u8>> {
        let cap = self.value_budget();
        let read = on(self.bucket(bucket)?, {
            let key = key.clone();
            move |b| b.read_range(&key, offset, length, cap)
        })
        .await;
        match read {
            Ok(Ok(data)) => Ok(Ok(data)),
            Ok(Err(size)) => Err(self.too_big(&format!("reading bucket object `{key}`"), size)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl Host for CallState {
    async fn open(&mut self, name: String) -> BucketResult<Resource<BucketDir>> {
        if !self.caps.grants.bucket(&name) {
            return Ok(Err(Error::AccessDenied));
        }
        match BucketDir::open(&self.caps.buckets_dir, &name) {
            Ok(bucket) => Ok(Ok(self.table.push(bucket)?)),
            Err(e) => Ok(Err(Error::Other(format!("cannot open bucket `{name}`: {e}")))),
        }
    }
}

impl HostBucket for CallState {
    async fn read(&mut self, bucket: Resource<BucketDir>, key: String) -> BucketResult<Vec<u8>> {
        self.read_at_most(&bucket, key, 0, u64::MAX).await
    }

    async fn read_range(
        &mut self,
        bucket: Resource<BucketDir>,
        key: String,
        offset: u64,
        length: u64,
    ) -> BucketResult<Vec<u8>> {
        self.read_at_most(&bucket, key, offset, length).await
    }

    async fn write(&mut self, bucket: Resource<BucketDir>, key: String, data: Vec<u8>) -> BucketResult<()> {
        Ok(on(self.bucket(&bucket)?, move |b| b.write(&key, &data)).await)
    }

    async fn delete(&mut self, bucket: Resource<BucketDir>, key: String) -> BucketResult<()> {
        Ok(on(self.bucket(&bucket)?, move |b| b.delete(&key)).await)
    }

    async fn exists(&mut self, bucket: Resource<BucketDir>, key: String) -> BucketResult<bool> {
        Ok(on(self.bucket(&bucket)?, move |b| b.exists(&key)).await)
    }

    async fn stat(&mut self, bucket: Resource<BucketDir>, key: String) -> BucketResult<ObjectStat> {
        Ok(on(self.bucket(&bucket)?, move |b| b.stat(&key)).await)
    }

    async fn list(
        &mut self,
        bucket: Resource<BucketDir>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> BucketResult<ListPage> {
        Ok(on(self.bucket(&bucket)?, move |b| b.list(&prefix, cursor.as_deref(), limit)).await)
    }

    async fn drop(&mut self, bucket: Resource<BucketDir>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

/// Collect every file under `dir` as a `/`-separated key prefixed by `prefix`. A folder's
/// listing is read whole before descending, so one descriptor is open per level (keys have at
/// most [`crate::names::MAX_KEY_SEGMENTS`] levels).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{MAX_KEY_LEN, MAX_KEY_SEGMENTS, MAX_SEGMENT_LEN};

    #[test]
    fn keys_that_could_escape_are_rejected_with_the_rule_broken() {
        for (key, rule) in [
            ("", "empty"),
            ("../etc/passwd", "`..`"),
            ("a/../../b", "`..`"),
            ("/etc/passwd", "absolute"),
            ("a//b", "empty"),
            ("a/./b", "`.`"),
            ("a\\..\\b", "backslash"),
            ("a\0b", "NUL"),
        ] {
            match validate_key(key) {
                Err(BucketError::InvalidKey(reason)) => assert!(reason.contains(rule), "{key:?}: {reason}"),
                other => panic!("{key:?} accepted: {other:?}"),
            }
        }
        assert!(
            matches!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)), Err(BucketError::InvalidKey(r)) if r.contains("1025 bytes"))
        );
        let deep = |n: usize| vec!["a"; n].join("/");
        assert!(validate_key(&deep(MAX_KEY_SEGMENTS)).is_ok());
        assert!(
            matches!(validate_key(&deep(MAX_KEY_SEGMENTS + 1)), Err(BucketError::InvalidKey(r)) if r.contains("segments"))
        );
        let long = format!("a/{}", "s".repeat(MAX_SEGMENT_LEN + 45));
        assert!(
            matches!(validate_key(&long), Err(BucketError::InvalidKey(r)) if r.contains("segment of 300 bytes") && r.contains("255"))
        );
        assert!(validate_key(&"s".repeat(MAX_SEGMENT_LEN)).is_ok());
        for key in ["a", "photos/2024/cat.png", "weird name ü.txt", "..hidden", "a.b"] {
            assert!(validate_key(key).is_ok(), "{key:?} rejected");
        }
    }
}
