//! Naming rules shared by the manifest, the stores and the WIT adapters: resource names, bucket
//! keys and dead-letter queues. They sit at the bottom of the crate so storage code and the
//! manifest check names the same way without importing each other.

use std::fmt;
use std::str::FromStr;

/// The dead-letter queue of queue `q` is `q.dead`.
pub const DEAD_LETTER_SUFFIX: &str = ".dead";

/// The queue whose dead-letter queue `name` is (`q.dead` → `q`); `None` for a plain queue.
pub fn dead_letters_of(name: &str) -> Option<&str> {
    name.strip_suffix(DEAD_LETTER_SUFFIX)
}

/// The name of queue `name`'s dead-letter queue (`q` → `q.dead`).
pub fn dead_letter_queue(name: &str) -> String {
    format!("{name}{DEAD_LETTER_SUFFIX}")
}

/// Longest bucket key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Most `/`-separated segments (folder levels) in a bucket key.
pub const MAX_KEY_SEGMENTS: usize = 32;
/// Longest `/`-separated segment of a bucket key, in bytes (the longest file name of most file
/// systems).
pub const MAX_SEGMENT_LEN: usize = 255;

/// A name of an app, function, store or bucket: 1-64 of `a-z`, `0-9`, `-`, `_`, starting with a
/// letter or digit. Names become parts of file paths and tree names, so nothing else is allowed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceName(pub String);

impl FromStr for ResourceName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid {
            Ok(ResourceName(s.to_string()))
        } else {
            Err(format!(
                "invalid name `{s}`: expected 1-64 characters of a-z, 0-9, `-`, `_`, starting with a letter or digit"
            ))
        }
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ResourceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Check a bucket key against the rules in `buckets.wit`; the error says which rule it breaks.
pub fn check_bucket_key(key: &str) -> Result<(), String> {
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
    } else if let Some(segment) = key.split('/').find(|s| s.len() > MAX_SEGMENT_LEN) {
        let long: String = segment.chars().take(20).collect();
        format!(
            "key {shown:?} has a segment of {} bytes ({long:?}...); the limit is {MAX_SEGMENT_LEN} bytes per `/`-separated segment",
            segment.len()
        )
    } else {
        return Ok(());
    };
    Err(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_path_safe() {
        for good in ["a", "0", "photos", "my-store_2", &"x".repeat(64)] {
            assert_eq!(good.parse::<ResourceName>().map(|n| n.to_string()).as_deref(), Ok(good));
        }
        for bad in ["", "-a", "_a", "A", "a.b", "a/b", "..", "ü", &"x".repeat(65)] {
            let err = bad.parse::<ResourceName>().unwrap_err();
            assert!(err.starts_with(&format!("invalid name `{bad}`")), "{err}");
        }
    }

    #[test]
    fn bucket_keys_that_could_escape_are_refused() {
        assert!(check_bucket_key("photos/2024/cat.png").is_ok());
        assert!(check_bucket_key("..hidden").is_ok());
        assert_eq!(check_bucket_key("a/../b"), Err("key \"a/../b\" has an empty, `.` or `..` segment (\"..\")".into()));
        assert_eq!(check_bucket_key("/etc"), Err("key \"/etc\" is absolute; keys are relative paths".into()));
    }
}
