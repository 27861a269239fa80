//! The key rules of buckets (see `buckets.wit`): relative `/`-separated paths that cannot leave
//! their bucket, with limits that every file system and object store accepts.

use super::BlobError;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Most `/`-separated segments (folder levels) in a key.
pub const MAX_KEY_SEGMENTS: usize = 32;
/// Longest `/`-separated segment of a key, in bytes (the longest file name of most file systems).
pub const MAX_SEGMENT_LEN: usize = 255;

/// Check a key against the rules in `buckets.wit`; the error says which rule it breaks.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
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
    Err(BlobError::InvalidKey(reason))
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
