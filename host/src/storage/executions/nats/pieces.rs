//! Values of any size in a bucket whose messages hold at most a megabyte (NATS' default
//! `max_payload`): a record's input can be a 16 MiB topic event, an attempt's logs megabytes of
//! output. A value's head is `=` and the value when it fits in one [`PIECE`], else `+N`: the
//! value is in pieces `KEY \0 0` to `KEY \0 N-1`, written before the head, so a reader that
//! finds the head finds its pieces.

use bytes::{BufMut, Bytes, BytesMut};

use crate::storage::nats::{Bucket, NatsError};

/// The largest piece of a value kept in one message.
const PIECE: usize = 256 * 1024;

/// The key of piece `n` of `key`.
fn piece(key: &str, n: usize) -> String {
    format!("{key}\0{n}")
}

/// Write the pieces of `value` under `key` if it needs them: the head to write under `key`.
pub(super) async fn store(bucket: &Bucket, key: &str, value: Bytes) -> Result<Bytes, NatsError> {
    if value.len() <= PIECE {
        let mut head = BytesMut::with_capacity(value.len() + 1);
        head.put_u8(b'=');
        head.put(value);
        return Ok(head.freeze());
    }
    let mut count = 0;
    for (n, chunk) in value.chunks(PIECE).enumerate() {
        bucket.put(&piece(key, n), value.slice_ref(chunk)).await?;
        count = n + 1;
    }
    Ok(Bytes::from(format!("+{count}")))
}

/// The value whose head under `key` is `head`.
pub(super) async fn load(bucket: &Bucket, key: &str, head: &Bytes) -> Result<Bytes, NatsError> {
    match head.first() {
        Some(b'=') => Ok(head.slice(1..)),
        Some(b'+') => {
            let count: usize =
                std::str::from_utf8(&head[1..]).ok().and_then(|n| n.parse().ok()).ok_or_else(|| bad(key))?;
            let mut value = BytesMut::new();
            for n in 0..count {
                let (chunk, _) = bucket.get(&piece(key, n)).await?.ok_or_else(|| bad(key))?;
                value.put(chunk);
            }
            Ok(value.freeze())
        }
        _ => Err(bad(key)),
    }
}

/// The value under `key`, if any.
pub(super) async fn get(bucket: &Bucket, key: &str) -> Result<Option<Bytes>, NatsError> {
    match bucket.get(key).await? {
        Some((head, _)) => Ok(Some(load(bucket, key, &head).await?)),
        None => Ok(None),
    }
}

/// Set `key` to `value`.
pub(super) async fn put(bucket: &Bucket, key: &str, value: Bytes) -> Result<(), NatsError> {
    let head = store(bucket, key, value).await?;
    bucket.put(key, head).await.map(drop)
}

/// Remove `key`, then its pieces (so a reader never finds a head without them).
pub(super) async fn delete(bucket: &Bucket, key: &str) -> Result<(), NatsError> {
    let head = bucket.get(key).await?;
    bucket.delete(key).await?;
    if let Some((head, _)) = head
        && let Some(count) = head.strip_prefix(b"+").and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
    {
        for n in 0..count {
            bucket.delete(&piece(key, n)).await?;
        }
    }
    Ok(())
}

fn bad(key: &str) -> NatsError {
    NatsError::Request(format!("value of `{key}`: missing or malformed pieces"))
}
