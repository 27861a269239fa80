//! The networked key-value backend: one JetStream [`Bucket`] per (app, store), shared by every
//! node connected to the cluster. A revision is the stream sequence that wrote the key (8 bytes,
//! big-endian); compare-and-swap is the bucket's stream-wide one, which holds on a 2.9 cluster.
//!
//! Batches (`put_many`, `delete_many`) are all or none although JetStream 2.9 has no multi-key
//! write: a batch is first appended whole, as one message, to the store's intent log (an
//! [`EventLog`]); that append is the batch's commit point. Then each key is written under the
//! message id `<intent id>-<index>` and the intent is removed. Every operation of every node
//! first *settles* the store: it applies and removes the intents still in the log (a batch
//! whose writer crashed, or one being applied right now, by this node or another). Two nodes
//! applying the same intent write each key once, since the server drops a message id it saw in
//! the last two minutes (the duplicate window). So:
//! - a write never lands under an older batch: it settles first, and a batch committed after
//!   that point is concurrent with the write (either order is a valid one);
//! - a single-key read settles first, so once a reader sees one key of a batch, any later read
//!   sees the whole batch (it finds the intent and applies it, or the intent is gone because
//!   every key was written);
//! - `get_many` and `list` read several keys: they settle, read, and read again when an intent
//!   was appended meanwhile (the log's last sequence moved), so they never answer a half-written
//!   batch (while batches of the store commit back to back, they wait for a gap).
//!
//! Costs: a read or write is one round trip more than the bucket's own (the empty intent log is
//! checked), `get_many` and `list` three more, a batch three more plus its keys' writes (in
//! parallel), and `list` reads every key of the store (JetStream keeps no key order).
//!
//! What it cannot promise: a node that stalls for more than the duplicate window between
//! reading an intent and writing one of its keys can write that key again over a newer value;
//! and a batch must fit in one NATS message (the server's `max_payload`, 1 MiB by default).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_nats::jetstream::message::PublishMessage;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};

use super::{Entry, KeyPage, KvBackend, KvError, KvStore, PAGE, Revision, Swap, counter};
use crate::storage::nats::{Bucket, EventLog, Nats, NatsError, OpenCache, random_id};

/// Reads and key writes of a batch in flight at once.
const PARALLEL: usize = 16;

/// Key-value stores as JetStream buckets.
pub struct NatsKv {
    nats: Nats,
    /// Stores opened so far, by (app, store).
    open: OpenCache<(String, String), Arc<NatsStore>>,
}

impl NatsKv {
    /// Stores on the cluster of `nats`; nothing is created before a store is opened.
    pub fn new(nats: Nats) -> NatsKv {
        NatsKv { nats, open: OpenCache::default() }
    }
}

#[async_trait::async_trait]
impl KvBackend for NatsKv {
    async fn open(&self, app: &str, store: &str) -> Result<Arc<dyn KvStore>, KvError> {
        let id = (app.to_string(), store.to_string());
        let opened =
            self.open.get_or_open(id, || async { NatsStore::open(&self.nats, app, store).await.map(Arc::new) });
        Ok(opened.await?)
    }
}

/// One open store: its bucket and its intent log.
struct NatsStore {
    nats: Nats,
    bucket: Bucket,
    intents: EventLog,
    /// `store `S` of app `A``, for error texts.
    what: String,
}

/// A change of one key in a batch: `None` removes it.
type Change = (String, Option<Bytes>);

impl NatsStore {
    /// Open (creating them on first use) the store's bucket and intent log, and finish the
    /// batches a crash left half written.
    async fn open(nats: &Nats, app: &str, store: &str) -> Result<NatsStore, KvError> {
        let what = format!("store `{store}` of app `{app}`");
        let failed = |e: NatsError| KvError::Storage(format!("cannot open key-value {what}: {e}"));
        let bucket = Bucket::open(nats, &nats.name("KV", &[app, store])).await.map_err(failed)?;
        let intents = EventLog::open_named(nats, nats.name("KVI", &[app, store])).await.map_err(failed)?;
        let opened = NatsStore { nats: nats.clone(), bucket, intents, what };
        opened.settle().await?;
        Ok(opened)
    }

    fn failed<'a>(&'a self, doing: &'a str) -> impl Fn(NatsError) -> KvError + 'a {
        move |e| KvError::Storage(format!("key-value {}: {doing}: {e}", self.what))
    }

    /// Apply and remove every intent in the log (see the module docs).
    async fn settle(&self) -> Result<(), KvError> {
        loop {
            let pending = self.intents.pending(PARALLEL).await.map_err(self.failed("reading batches"))?;
            if pending.is_empty() {
                return Ok(());
            }
            for message in pending {
                let (id, changes) = decode_intent(&message.payload).ok_or_else(|| {
                    KvError::Storage(format!("key-value {}: batch {} is unreadable", self.what, message.sequence))
                })?;
                self.apply(&id, changes).await?;
                self.intents.accept(message.sequence).await.map_err(self.failed("removing a batch"))?;
            }
        }
    }

    /// Write each change of intent `id`, under message ids made from `id`.
    async fn apply(&self, id: &str, changes: Vec<Change>) -> Result<(), KvError> {
        futures_util::stream::iter(changes.into_iter().enumerate())
            .map(|(index, (key, value))| async move {
                self.bucket.write(&key, value, &format!("{id}-{index}")).await.map_err(self.failed("writing a batch"))
            })
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<u64>>()
            .await
            .map(drop)
    }

    /// Commit `changes` as one intent, then apply it (see the module docs).
    async fn batch(&self, changes: impl IntoIterator<Item = Change>) -> Result<(), KvError> {
        // The last change of a key wins, as in a batch of the embedded store.
        let changes: BTreeMap<String, Option<Bytes>> = changes.into_iter().collect();
        if changes.is_empty() {
            return Ok(());
        }
        self.settle().await?;
        let id = random_id();
        let intent = encode_intent(&id, &changes);
        let limit = self.nats.client.server_info().max_payload;
        if intent.len() > limit {
            return Err(KvError::Storage(format!(
                "key-value {}: a batch of {} bytes is more than one NATS message can hold ({limit} bytes)",
                self.what,
                intent.len()
            )));
        }
        let sequence = self
            .intents
            .append(&id, PublishMessage::build().payload(intent))
            .await
            .map_err(self.failed("writing a batch"))?;
        self.apply(&id, changes.into_iter().collect()).await?;
        self.intents.accept(sequence).await.map_err(self.failed("removing a batch"))
    }

    /// Run `read` on a settled store, again while a batch was committed during it.
    async fn consistent<T, F, Fut>(&self, mut read: F) -> Result<T, KvError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, KvError>>,
    {
        let last = || async { self.intents.last_sequence().await.map_err(self.failed("reading batches")) };
        loop {
            let before = last().await?;
            self.settle().await?;
            let answer = read().await?;
            if last().await? == before {
                return Ok(answer);
            }
        }
    }

    async fn entry(&self, key: &str) -> Result<Option<Entry>, KvError> {
        let found = self.bucket.get(key).await.map_err(self.failed("reading"))?;
        Ok(found.map(entry))
    }
}

fn entry((value, revision): (Bytes, u64)) -> Entry {
    Entry { value, revision: Revision(Bytes::copy_from_slice(&revision.to_be_bytes())) }
}

#[async_trait::async_trait]
impl KvStore for NatsStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, KvError> {
        self.settle().await?;
        self.entry(key).await
    }

    async fn exists(&self, key: &str) -> Result<bool, KvError> {
        Ok(self.get(key).await?.is_some())
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), KvError> {
        self.settle().await?;
        self.bucket.put(key, value).await.map(drop).map_err(self.failed("writing"))
    }

    async fn put_if(&self, key: &str, expected: Option<&Revision>, value: Bytes) -> Result<Swap, KvError> {
        self.settle().await?;
        let expected = match expected.map(|r| <[u8; 8]>::try_from(&r.0[..])) {
            None => None,
            Some(Ok(bytes)) => Some(u64::from_be_bytes(bytes)),
            // Not a revision of this backend: it cannot be the current one.
            Some(Err(_)) => return Ok(Swap::Raced(self.entry(key).await?)),
        };
        match self.bucket.put_if(key, expected, value).await.map_err(self.failed("writing"))? {
            Ok(_) => Ok(Swap::Done),
            Err(current) => Ok(Swap::Raced(current.map(entry))),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.settle().await?;
        self.bucket.delete(key).await.map_err(self.failed("deleting"))
    }

    async fn list(&self, prefix: &str, cursor: Option<&str>, limit: usize) -> Result<KeyPage, KvError> {
        let limit = limit.clamp(1, PAGE);
        let keys = self.consistent(|| async { self.bucket.keys().await.map_err(self.failed("listing")) }).await?;
        let (keys, cursor) = crate::storage::page_of(keys, prefix, cursor, limit);
        Ok(KeyPage { keys, cursor })
    }

    async fn get_many(&self, keys: Vec<String>, max_bytes: u64) -> Result<Vec<(String, Option<Entry>)>, KvError> {
        self.consistent(|| async {
            // Read a few keys ahead, but stop at the first one past the limit.
            let mut reads = futures_util::stream::iter(keys.clone())
                .map(|key| async move {
                    let entry = self.entry(&key).await?;
                    Ok::<_, KvError>((key, entry))
                })
                .buffered(PARALLEL);
            let (mut total, mut found) = (0u64, Vec::with_capacity(keys.len()));
            while let Some(read) = reads.next().await {
                let (key, entry) = read?;
                total += (key.len() + entry.as_ref().map_or(0, |e| e.value.len())) as u64;
                if total > max_bytes {
                    return Err(KvError::TooLarge { bytes: total });
                }
                found.push((key, entry));
            }
            Ok(found)
        })
        .await
    }

    async fn put_many(&self, pairs: Vec<(String, Bytes)>) -> Result<(), KvError> {
        self.batch(pairs.into_iter().map(|(key, value)| (key, Some(value)))).await
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), KvError> {
        self.batch(keys.into_iter().map(|key| (key, None))).await
    }

    /// The compare-and-swap loop of the trait, settling once rather than on every try.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.settle().await?;
        let mut current = self.bucket.get(key).await.map_err(self.failed("reading"))?;
        loop {
            let new = counter(key, current.as_ref().map(|(v, _)| &v[..]))?
                .checked_add(delta)
                .ok_or_else(|| KvError::Overflow { key: key.into() })?;
            let value = Bytes::copy_from_slice(&new.to_le_bytes());
            let revision = current.as_ref().map(|(_, r)| *r);
            match self.bucket.put_if(key, revision, value).await.map_err(self.failed("writing"))? {
                Ok(_) => return Ok(new),
                Err(now) => current = now,
            }
        }
    }
}

/// An intent as one message: its id (32 hex digits), then per change the key's length (4 bytes,
/// little-endian) and bytes, and either 0 (removed) or 1, the value's length and bytes.
fn encode_intent(id: &str, changes: &BTreeMap<String, Option<Bytes>>) -> Bytes {
    let size: usize = changes.iter().map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Bytes::len)).sum();
    let mut out = BytesMut::with_capacity(id.len() + size);
    out.put_slice(id.as_bytes());
    for (key, value) in changes {
        out.put_u32_le(key.len() as u32);
        out.put_slice(key.as_bytes());
        match value {
            None => out.put_u8(0),
            Some(value) => {
                out.put_u8(1);
                out.put_u32_le(value.len() as u32);
                out.put_slice(value);
            }
        }
    }
    out.freeze()
}

/// The id and changes of an intent [`encode_intent`] made; `None` for anything else.
fn decode_intent(payload: &Bytes) -> Option<(String, Vec<Change>)> {
    const ID: usize = 32;
    let id = std::str::from_utf8(payload.get(..ID)?).ok()?.to_string();
    let mut rest = payload.slice(ID..);
    let take = |rest: &mut Bytes| -> Option<Bytes> {
        let len = rest.try_get_u32_le().ok()? as usize;
        (rest.len() >= len).then(|| rest.split_to(len))
    };
    let mut changes = Vec::new();
    while !rest.is_empty() {
        let key = String::from_utf8(take(&mut rest)?.to_vec()).ok()?;
        let value = match rest.try_get_u8().ok()? {
            0 => None,
            1 => Some(take(&mut rest)?),
            _ => return None,
        };
        changes.push((key, value));
    }
    Some((id, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_round_trip() {
        let id = random_id();
        let changes: BTreeMap<String, Option<Bytes>> =
            [("".into(), Some(Bytes::new())), ("a b".into(), None), ("k".into(), Some(Bytes::from("v")))].into();
        let (read_id, read) = decode_intent(&encode_intent(&id, &changes)).unwrap();
        assert_eq!((read_id, read), (id, changes.into_iter().collect::<Vec<_>>()));
        assert_eq!(decode_intent(&Bytes::from("short")), None);
    }

    /// A batch whose writer died after committing it, before or while writing its keys, is
    /// finished by the next node to open the store, or by the next read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crashed_batch_is_finished_by_the_next_node() {
        let nats = crate::storage::nats::testing::nats().await;
        let store = NatsKv::new(nats.clone()).open("app", "crash").await.unwrap();
        store.put("old", Bytes::from("1")).await.unwrap();
        let log = EventLog::open_named(&nats, nats.name("KVI", &["app", "crash"])).await.unwrap();
        let commit = |changes: &[(&str, Option<&str>)]| {
            let id = random_id();
            let changes: BTreeMap<String, Option<Bytes>> = changes
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(|v: &str| Bytes::copy_from_slice(v.as_bytes()))))
                .collect();
            let log = log.clone();
            async move { log.append(&id, PublishMessage::build().payload(encode_intent(&id, &changes))).await.unwrap() }
        };
        commit(&[("old", None), ("new", Some("2"))]).await;
        let node = crate::storage::nats::testing::another_node(&nats).await;
        let other = NatsKv::new(node).open("app", "crash").await.unwrap();
        assert!(log.pending(1).await.unwrap().is_empty(), "opening the store finished the batch");
        assert_eq!(other.get("new").await.unwrap().map(|e| e.value), Some(Bytes::from("2")));
        assert_eq!(other.get("old").await.unwrap(), None);
        commit(&[("new", Some("3")), ("third", Some("4"))]).await;
        let found = store.get_many(vec!["new".into(), "third".into()], 1 << 10).await.unwrap();
        let values: Vec<_> = found.into_iter().map(|(_, e)| e.map(|e| e.value)).collect();
        assert_eq!(values, [Some(Bytes::from("3")), Some(Bytes::from("4"))], "a reader finished the batch");
    }
}
