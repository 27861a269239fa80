//! [`Bucket`]: a JetStream key-value bucket with a compare-and-swap that holds on a cluster.
//!
//! Two things of Debian's nats-server 2.9 shape it. The KV API's own compare-and-swap (`update`,
//! by the key's last sequence) is checked by a clustered stream's leader before replication, so
//! two racing updates with the same expected revision can both win (nats-server#4320, fixed in
//! 2.9.21): measured here, 8 writers × 25 increments on a 3-replica bucket kept 79 to 85 of 200.
//! The stream-wide check (`Nats-Expected-Last-Sequence`) is made in the replicated log and holds
//! (200 of 200), so [`Bucket::put_if`] uses it: any write to the bucket makes a racing swap try
//! again, which is why buckets are kept small (one per app and store). And reads go to the
//! stream leader (`allow_direct` off), since a follower may answer with a value it has not
//! caught up on yet. Newer clients cannot create buckets on 2.9 servers (they read account
//! fields 2.9 lacks), so the bucket's stream is created as the KV API lays it out.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy};
use bytes::Bytes;
use futures_util::TryStreamExt;

use super::{Nats, NatsError};

/// A key-value bucket on JetStream. Keys are any strings (escaped by [`encode_key`]).
#[derive(Clone)]
pub struct Bucket {
    nats: Nats,
    store: kv::Store,
    stream: stream::Stream,
    name: String,
}

/// A value and its revision (the stream sequence that wrote it).
pub type Versioned = (Bytes, u64);

impl Bucket {
    /// The bucket `name` (a valid bucket name, see [`Nats::name`]), created on first use.
    pub async fn open(nats: &Nats, name: &str) -> Result<Bucket, NatsError> {
        let config = stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_bytes: -1,
            max_message_size: -1,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: false,
            discard: DiscardPolicy::New,
            num_replicas: nats.replicas,
            ..Default::default()
        };
        let stream = nats.stream(config.clone()).await?;
        let store = nats.retry(|| nats.js.get_key_value(name)).await?;
        Ok(Bucket { nats: nats.clone(), store, stream, name: name.to_string() })
    }

    /// The value under `key` and its revision, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Versioned>, NatsError> {
        let key = encode_key(key);
        let entry = self.nats.retry(|| self.store.entry(key.clone())).await?;
        Ok(entry.filter(|e| e.operation == Operation::Put).map(|e| (e.value, e.revision)))
    }

    /// Set `key` to `value`; its new revision.
    pub async fn put(&self, key: &str, value: Bytes) -> Result<u64, NatsError> {
        self.write(key, Some(value), &super::random_id()).await
    }

    /// Remove `key` (absent is fine).
    pub async fn delete(&self, key: &str) -> Result<(), NatsError> {
        self.write(key, None, &super::random_id()).await.map(drop)
    }

    /// Set `key` to `value` (`None`: remove it) under the message id `id`: another write with
    /// the same id in the next two minutes (the stream's duplicate window), from any node, is
    /// dropped as a duplicate. Its revision (the first write's when it is one).
    pub async fn write(&self, key: &str, value: Option<Bytes>, id: &str) -> Result<u64, NatsError> {
        let subject = self.subject(key);
        let message = match value {
            Some(value) => PublishMessage::build().payload(value),
            None => delete_marker(),
        }
        .message_id(id);
        // A retry after a lost acknowledgement has the same id, so it is not written twice.
        let ack = self
            .nats
            .retry(|| async { self.nats.js.send_publish(subject.clone(), message.clone()).await?.await })
            .await?;
        Ok(ack.sequence)
    }

    /// Set `key` to `value` if its revision is still `expected` (`None`: absent): `Ok(revision)`
    /// when written, else `Err` with what is there now.
    pub async fn put_if(
        &self,
        key: &str,
        expected: Option<u64>,
        value: Bytes,
    ) -> Result<Result<u64, Option<Versioned>>, NatsError> {
        self.swap(key, expected, || PublishMessage::build().payload(value.clone())).await
    }

    /// Remove `key` if its revision is still `expected`: whether it was removed.
    pub async fn delete_if(&self, key: &str, expected: u64) -> Result<bool, NatsError> {
        Ok(self.swap(key, Some(expected), delete_marker).await?.is_ok())
    }

    /// Every key, decoded and sorted.
    pub async fn keys(&self) -> Result<Vec<String>, NatsError> {
        let keys: Vec<String> = self
            .nats
            .retry(|| async {
                let keys = self.store.keys().await.map_err(|e| e.to_string())?;
                keys.try_collect::<Vec<String>>().await.map_err(|e| e.to_string())
            })
            .await?;
        let mut keys: Vec<String> = keys.iter().filter_map(|k| decode_key(k)).collect();
        keys.sort_unstable();
        // The listing may deliver a key twice (seen on a loaded machine: 1 key in 36, in 3 runs
        // of 6), e.g. when its consumer restarts.
        keys.dedup();
        Ok(keys)
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A compare-and-swap on the bucket's last sequence (see the module docs).
    async fn swap(
        &self,
        key: &str,
        expected: Option<u64>,
        message: impl Fn() -> PublishMessage,
    ) -> Result<Result<u64, Option<Versioned>>, NatsError> {
        let subject = self.subject(key);
        let mut pause = Duration::from_millis(1);
        loop {
            let last = self
                .nats
                .retry(|| {
                    let mut stream = self.stream.clone();
                    async move { stream.info().await.map(|i| i.state.last_sequence) }
                })
                .await?;
            let current = self.get(key).await?;
            if current.as_ref().map(|(_, revision)| *revision) != expected {
                return Ok(Err(current));
            }
            if current.as_ref().is_some_and(|(_, revision)| *revision > last) {
                // The stream's info was older than the read: read both again.
                continue;
            }
            match self.publish_after(&subject, message(), last).await? {
                Some(revision) => return Ok(Ok(revision)),
                None => {
                    // Another write to the bucket came first: maybe to another key.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
            }
        }
    }

    /// Set (`Some`) or remove (`None`) `key` if the bucket's last write is still the one with
    /// sequence `last`: the new revision, or `None` when another write came first. A writer that
    /// owns the bucket for a while (a lock's holder) chains its writes this way, so that a write
    /// by anyone else (a node taking over an expired lock) fences it out.
    pub async fn write_after(&self, key: &str, value: Option<Bytes>, last: u64) -> Result<Option<u64>, NatsError> {
        let message = match value {
            Some(value) => PublishMessage::build().payload(value),
            None => delete_marker(),
        };
        self.publish_after(&self.subject(key), message, last).await
    }

    /// Publish `message` to `subject` if the bucket's last sequence is still `last`: its sequence,
    /// or `None` when another write came first.
    async fn publish_after(&self, subject: &str, message: PublishMessage, last: u64) -> Result<Option<u64>, NatsError> {
        let publish = message.message_id(super::random_id()).expected_last_sequence(last);
        self.nats
            .retry(|| async {
                match self.nats.js.send_publish(subject.to_string(), publish.clone()).await {
                    Ok(ack) => match ack.await {
                        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
                        Err(e) => Err(e.to_string()),
                        Ok(ack) => Ok(Some(ack.sequence)),
                    },
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
    }

    fn subject(&self, key: &str) -> String {
        format!("$KV.{}.{}", self.name, encode_key(key))
    }
}

/// The message the KV API writes for a deleted key.
fn delete_marker() -> PublishMessage {
    PublishMessage::build().header("KV-Operation", "DEL")
}

/// A key escaped for a KV key, which allows only `[-/_=.A-Za-z0-9]` without empty `.` parts:
/// bytes other than `[-/=A-Za-z0-9]` become `_XX`, and the empty key is `_`.
pub fn encode_key(key: &str) -> String {
    if key.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'/' | b'=' => out.push(byte as char),
            _ => out.push_str(&format!("_{byte:02X}")),
        }
    }
    out
}

/// The key [`encode_key`] escaped, or `None` for a key it cannot have made.
pub fn decode_key(encoded: &str) -> Option<String> {
    if encoded == "_" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'_' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for key in ["", "a", "a/b", "..", "a.b", "ü spaces and \"quotes\"", "a\0b", "_", "_41"] {
            let encoded = encode_key(key);
            assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b)), "{encoded}");
            assert_eq!(decode_key(&encoded).as_deref(), Some(key));
        }
        assert_ne!(encode_key("_41"), encode_key("A"));
    }

    /// Racing swaps on a three-replica bucket: none is lost (the KV API's own `update` loses
    /// most of them on a 2.9 cluster).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_swaps_are_all_kept() {
        let nats = crate::storage::nats::testing::nats().await;
        let bucket = Bucket::open(&nats, &nats.name("KV", &["race"])).await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let bucket = bucket.clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        loop {
                            let old = bucket.get("n").await.unwrap();
                            let n = old.as_ref().map_or(0, |(v, _)| u64::from_le_bytes(v[..].try_into().unwrap()));
                            let new = Bytes::copy_from_slice(&(n + 1).to_le_bytes());
                            if bucket.put_if("n", old.map(|(_, r)| r), new).await.unwrap().is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let (value, _) = bucket.get("n").await.unwrap().unwrap();
        assert_eq!(u64::from_le_bytes(value[..].try_into().unwrap()), 200);
        bucket.delete("n").await.unwrap();
        assert_eq!(bucket.get("n").await.unwrap(), None);
        bucket.put("", Bytes::from_static(b"e")).await.unwrap();
        bucket.put("a b", Bytes::new()).await.unwrap();
        assert_eq!(bucket.keys().await.unwrap(), ["", "a b"]);
        let (_, revision) = bucket.get("a b").await.unwrap().unwrap();
        assert!(!bucket.delete_if("a b", revision + 100).await.unwrap());
        assert!(bucket.delete_if("a b", revision).await.unwrap());
        assert_eq!(bucket.keys().await.unwrap(), [""]);
    }
}
