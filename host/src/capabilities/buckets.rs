//! `host:api/buckets`: objects as files under one cap-std `Dir` per (app, bucket), so no key can
//! reach outside its bucket. Writes go to a staging folder first and are renamed into place.
//! Reads check the object's size first: one that could not fit in the guest's `memory` limit is
//! not read, and the call ends with [`crate::CallError::MemoryLimit`].

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use wasmtime::component::Resource;

use super::host::api::buckets::{Error, Host, HostBucket, ListPage, ObjectStat};
use crate::call::CallState;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Most `/`-separated segments (folder levels) in a key.
pub const MAX_KEY_SEGMENTS: usize = 32;
/// Most keys returned by one `list` page.
const MAX_PAGE: usize = 1000;
/// Folder beside the buckets where writes are staged (bucket names cannot start with `.`).
const STAGING: &str = ".staging";

/// An open bucket.
pub struct BucketDir {
    dir: Dir,
    staging: Arc<Dir>,
}

type BucketResult<T> = wasmtime::Result<Result<T, Error>>;

/// Check a key against the rules in `buckets.wit`; the error says which rule it breaks.
pub fn validate_key(key: &str) -> Result<(), Error> {
    let shown: String = key.chars().take(80).collect();
    let reason = if key.is_empty() {
        "key is empty".to_string()
    } else if key.len() > MAX_KEY_LEN {
        format!("key is {} bytes long, the limit is {MAX_KEY_LEN}", key.len())
    } else if key.contains('\0') {
        format!("key {shown:?} contains a NUL byte")
    } else if key.contains('\\') {
        format!("key {shown:?} contains a backslash; use `/` to separate folders")
    } else if key.starts_with('/') {
        format!("key {shown:?} is absolute; keys are relative paths")
    } else if let Some(segment) = key.split('/').find(|s| s.is_empty() || *s == "." || *s == "..") {
        format!("key {shown:?} has an empty, `.` or `..` segment ({segment:?})")
    } else if key.split('/').count() > MAX_KEY_SEGMENTS {
        format!("key {shown:?} has more than {MAX_KEY_SEGMENTS} `/`-separated segments")
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey(reason))
}

/// Whether an I/O error means "there is no object under this key" (a folder is not an object).
fn missing(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{IsADirectory, NotADirectory, NotFound};
    matches!(e.kind(), NotFound | IsADirectory | NotADirectory)
}

/// Open (creating it if needed) the folder of bucket `name` under `buckets_dir`.
pub fn open_bucket_dir(buckets_dir: &Path, name: &str) -> std::io::Result<Dir> {
    let path = buckets_dir.join(name);
    std::fs::create_dir_all(&path)?;
    Dir::open_ambient_dir(path, ambient_authority())
}

impl BucketDir {
    /// Open (creating it if needed) bucket `name` under `buckets_dir`.
    pub(crate) fn open(buckets_dir: &Path, name: &str) -> std::io::Result<BucketDir> {
        Ok(BucketDir {
            dir: open_bucket_dir(buckets_dir, name)?,
            staging: Arc::new(open_bucket_dir(buckets_dir, STAGING)?),
        })
    }

    /// Run `op` on the bucket's folder after validating `key`.
    fn with_key<T>(&self, key: &str, op: impl FnOnce(&Dir) -> std::io::Result<T>) -> Result<T, Error> {
        validate_key(key).and_then(|()| {
            op(&self.dir)
                .map_err(|e| if missing(&e) { Error::NoSuchKey } else { Error::Other(format!("key {key:?}: {e}")) })
        })
    }

    /// The whole object.
    pub(crate) fn read(&self, key: &str) -> Result<Vec<u8>, Error> {
        self.with_key(key, |dir| dir.read(key))
    }

    /// Up to `length` bytes from `offset`. When more than `cap` bytes would be read, nothing is
    /// read and the inner `Err` holds how many.
    fn read_range(&self, key: &str, offset: u64, length: u64, cap: u64) -> Result<Result<Vec<u8>, u64>, Error> {
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

    /// Create or replace an object: staged, synced, renamed into place, folder synced.
    pub(crate) fn write(&self, key: &str, data: &[u8]) -> Result<(), Error> {
        static STAGED: AtomicU64 = AtomicU64::new(0);
        self.with_key(key, |dir| {
            if let Some((parent, _)) = key.rsplit_once('/') {
                dir.create_dir_all(parent)?;
            }
            let staged = format!("{}-{}", std::process::id(), STAGED.fetch_add(1, Ordering::Relaxed));
            let written = self.staging.create(&staged).and_then(|mut file| {
                file.write_all(data)?;
                file.sync_data()?;
                self.staging.rename(&staged, dir, key)
            });
            if written.is_err() {
                let _ = self.staging.remove_file(&staged);
                return written;
            }
            // Make the rename itself durable: sync the folder that now holds the object.
            dir.open(key.rsplit_once('/').map_or(".", |(parent, _)| parent))?.sync_all()
        })
    }

    /// Remove an object (absent is fine) and the folders it leaves empty.
    pub(crate) fn delete(&self, key: &str) -> Result<(), Error> {
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

    fn exists(&self, key: &str) -> Result<bool, Error> {
        self.with_key(key, |dir| match dir.metadata(key) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if missing(&e) => Ok(false),
            Err(e) => Err(e),
        })
    }

    fn stat(&self, key: &str) -> Result<ObjectStat, Error> {
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
    pub(crate) fn list(&self, prefix: &str, cursor: Option<&str>, limit: u32) -> Result<ListPage, Error> {
        let mut keys = Vec::new();
        walk(&self.dir, "", &mut keys).map_err(|e| Error::Other(e.to_string()))?;
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

impl CallState {
    /// Read for the guest, refusing before reading anything more than fits in its `memory`
    /// limit: the call then ends with [`crate::CallError::MemoryLimit`].
    fn read_at_most(
        &mut self,
        bucket: &Resource<BucketDir>,
        key: &str,
        offset: u64,
        length: u64,
    ) -> BucketResult<Vec<u8>> {
        let read = self.table.get(bucket)?.read_range(key, offset, length, self.value_budget());
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
        self.read_at_most(&bucket, &key, 0, u64::MAX)
    }

    async fn read_range(
        &mut self,
        bucket: Resource<BucketDir>,
        key: String,
        offset: u64,
        length: u64,
    ) -> BucketResult<Vec<u8>> {
        self.read_at_most(&bucket, &key, offset, length)
    }

    async fn write(&mut self, bucket: Resource<BucketDir>, key: String, data: Vec<u8>) -> BucketResult<()> {
        Ok(self.table.get(&bucket)?.write(&key, &data))
    }

    async fn delete(&mut self, bucket: Resource<BucketDir>, key: String) -> BucketResult<()> {
        Ok(self.table.get(&bucket)?.delete(&key))
    }

    async fn exists(&mut self, bucket: Resource<BucketDir>, key: String) -> BucketResult<bool> {
        Ok(self.table.get(&bucket)?.exists(&key))
    }

    async fn stat(&mut self, bucket: Resource<BucketDir>, key: String) -> BucketResult<ObjectStat> {
        Ok(self.table.get(&bucket)?.stat(&key))
    }

    async fn list(
        &mut self,
        bucket: Resource<BucketDir>,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> BucketResult<ListPage> {
        Ok(self.table.get(&bucket)?.list(&prefix, cursor.as_deref(), limit))
    }

    async fn drop(&mut self, bucket: Resource<BucketDir>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

/// Collect every file under `dir` as a `/`-separated key prefixed by `prefix`. A folder's
/// listing is read whole before descending, so one descriptor is open per level (keys have at
/// most [`MAX_KEY_SEGMENTS`] levels).
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
                Err(Error::InvalidKey(reason)) => assert!(reason.contains(rule), "{key:?}: {reason}"),
                other => panic!("{key:?} accepted: {other:?}"),
            }
        }
        assert!(
            matches!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)), Err(Error::InvalidKey(r)) if r.contains("1025 bytes"))
        );
        let deep = |n: usize| vec!["a"; n].join("/");
        assert!(validate_key(&deep(MAX_KEY_SEGMENTS)).is_ok());
        assert!(
            matches!(validate_key(&deep(MAX_KEY_SEGMENTS + 1)), Err(Error::InvalidKey(r)) if r.contains("segments"))
        );
        for key in ["a", "photos/2024/cat.png", "weird name ü.txt", "..hidden", "a.b"] {
            assert!(validate_key(key).is_ok(), "{key:?} rejected");
        }
    }
}
