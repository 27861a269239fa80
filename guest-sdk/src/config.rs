//! The function's configuration values (`wasi:config/store`).

use std::fmt;

use crate::bindings::wasi::config::store;

/// Why configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The configuration source failed; the text says how.
    Upstream(String),
    /// An I/O operation failed; the text says how.
    Io(String),
}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Self {
        match error {
            store::Error::Upstream(message) => Self::Upstream(message),
            store::Error::Io(message) => Self::Io(message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Upstream(message) => write!(f, "configuration error: {message}"),
            Self::Io(message) => write!(f, "configuration I/O error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The result of reading configuration.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The value of `key`, if it is set.
pub fn get(key: &str) -> Result<Option<String>> {
    Ok(store::get(key)?)
}

/// Every configuration key with its value.
pub fn get_all() -> Result<Vec<(String, String)>> {
    Ok(store::get_all()?)
}
