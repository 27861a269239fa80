//! Buckets of binary objects named by path-like keys (`host:api/buckets`).

use std::fmt;

use crate::bindings::host::api::buckets;

pub use buckets::ObjectStat;

/// Keys asked for per page when listing.
const PAGE_SIZE: u32 = 1000;

/// Why a bucket operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The function's manifest does not grant this bucket.
    AccessDenied,
    /// There is no object under this key.
    NoSuchKey,
    /// The key breaks the key rules; the text says which.
    InvalidKey(String),
    /// Any other failure (I/O); the text says what happened.
    Other(String),
}

impl From<buckets::Error> for Error {
    fn from(error: buckets::Error) -> Self {
        match error {
            buckets::Error::AccessDenied => Self::AccessDenied,
            buckets::Error::NoSuchKey => Self::NoSuchKey,
            buckets::Error::InvalidKey(reason) => Self::InvalidKey(reason),
            buckets::Error::Other(message) => Self::Other(message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AccessDenied => f.write_str("access to the bucket denied"),
            Self::NoSuchKey => f.write_str("no such object"),
            Self::InvalidKey(reason) => write!(f, "invalid object key: {reason}"),
            Self::Other(message) => write!(f, "bucket error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The result of a bucket operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An open bucket.
#[derive(Debug)]
pub struct Bucket {
    bucket: buckets::Bucket,
}

impl Bucket {
    /// Opens a bucket the function has been granted.
    pub fn open(name: &str) -> Result<Self> {
        Ok(Self { bucket: buckets::open(name)? })
    }

    /// Reads a whole object.
    pub fn read(&self, key: &str) -> Result<Vec<u8>> {
        Ok(self.bucket.read(key)?)
    }

    /// Reads at most `length` bytes starting at `offset`; fewer near the end, none past it.
    pub fn read_range(&self, key: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        Ok(self.bucket.read_range(key, offset, length)?)
    }

    /// Creates or replaces an object, atomically.
    pub fn write(&self, key: &str, data: &[u8]) -> Result<()> {
        Ok(self.bucket.write(key, data)?)
    }

    /// Deletes an object; deleting a missing key is not an error.
    pub fn delete(&self, key: &str) -> Result<()> {
        Ok(self.bucket.delete(key)?)
    }

    /// Whether an object exists under `key`.
    pub fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.bucket.exists(key)?)
    }

    /// Size and modification time of an object.
    pub fn stat(&self, key: &str) -> Result<ObjectStat> {
        Ok(self.bucket.stat(key)?)
    }

    /// Every key that starts with `prefix`, in byte order.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>> {
        crate::collect_pages(|cursor| {
            let page = self.bucket.list(prefix, cursor, PAGE_SIZE)?;
            Ok((page.keys, page.cursor))
        })
    }
}
