//! The key rules of buckets (see `buckets.wit`): relative `/`-separated paths that cannot leave
//! their bucket, with limits that every file system and object store accepts.

use super::BlobError;

pub use crate::names::{MAX_KEY_LEN, MAX_KEY_SEGMENTS, MAX_SEGMENT_LEN};

/// Check a key against the rules in `buckets.wit`; the error says which rule it breaks.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    crate::names::check_bucket_key(key).map_err(BlobError::InvalidKey)
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
                Err(BlobError::InvalidKey(reason)) => assert!(reason.contains(rule), "{key:?}: {reason}"),
                other => panic!("{key:?} accepted: {other:?}"),
            }
        }
        assert!(
            matches!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)), Err(BlobError::InvalidKey(r)) if r.contains("1025 bytes"))
        );
        let deep = |n: usize| vec!["a"; n].join("/");
        assert!(validate_key(&deep(MAX_KEY_SEGMENTS)).is_ok());
        assert!(
            matches!(validate_key(&deep(MAX_KEY_SEGMENTS + 1)), Err(BlobError::InvalidKey(r)) if r.contains("segments"))
        );
        let long = format!("a/{}", "s".repeat(MAX_SEGMENT_LEN + 45));
        assert!(
            matches!(validate_key(&long), Err(BlobError::InvalidKey(r)) if r.contains("segment of 300 bytes") && r.contains("255"))
        );
        assert!(validate_key(&"s".repeat(MAX_SEGMENT_LEN)).is_ok());
        for key in ["a", "photos/2024/cat.png", "weird name ü.txt", "..hidden", "a.b"] {
            assert!(validate_key(key).is_ok(), "{key:?} rejected");
        }
    }
}
