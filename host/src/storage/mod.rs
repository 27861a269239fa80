//! Storage libraries: plain libraries with their own error types, each over an async backend
//! trait whose first implementation is the embedded sled store plus local folders. The traits are
//! shaped for a networked store (leases as ack deadlines, durable consumers, events written with
//! their change), so another backend can be put behind them without touching their users.

pub mod datasets;
pub mod queues;
pub mod topics;

/// Now, in ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Check a resource name (app, function, store, bucket, queue, topic): 1-64 of `a-z`, `0-9`, `-`,
/// `_`, starting with a letter or digit. Names become parts of file paths and tree names, so
/// nothing else is allowed.
pub fn check_name(s: &str) -> Result<(), String> {
    let valid = !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    match valid {
        true => Ok(()),
        false => Err(format!(
            "invalid name `{s}`: expected 1-64 characters of a-z, 0-9, `-`, `_`, starting with a letter or digit"
        )),
    }
}
