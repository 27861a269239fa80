//! Datasets on NATS JetStream, shared by every node of a cluster.
//!
//! Each dataset of each app has a key-value bucket (item records under `i/ID`, the path index
//! under `p/PATH`, annotations under `a/ITEM/ID`, the objects records name under `o/OBJECT`,
//! the lock and the outbox, see [`claim`]) and an object store of the same name holding item
//! bytes. An upload stages its bytes as a new object and the item's record names the object
//! that holds its bytes, so replacing them is one write of the record (the former object is
//! deleted once the change is applied). Item events go to the app's `ITEMS` event log, each
//! with its stream sequence as its key.
//!
//! A change a node left half done (it died, or lost its lock) is finished by the next node that
//! takes the dataset's lock, opens the dataset, or sweeps the app's datasets (which reading the
//! app's item events does every [`SWEEP_EVERY`]). Staged bytes that no change named (their
//! node died first) are deleted by a sweep every [`ORPHANS_EVERY`] once an hour old.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::object_store::{DeleteErrorKind, GetErrorKind, ObjectMetadata, ObjectStore};
use async_nats::jetstream::stream::{self, DiscardPolicy};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use self::claim::{Intent, Writer};
use super::{
    Action, Annotation, Cause, DatasetBackend, DatasetStore, Item, ItemBytes, ItemEvent, ItemFilter, ItemPage,
    ItemsError, StagedBytes, storage,
};
use crate::clock::now_ms;
use crate::storage::nats::{Bucket, EventLog, Nats, OpenCache, event_key, random_id};

mod claim;
#[cfg(test)]
mod tests;

/// Size of the chunks item bytes are stored in.
const CHUNK_SIZE: usize = 256 << 10;

/// How many records are read at once.
const READS_AT_ONCE: usize = 64;

/// How often reading an app's item events also sweeps its datasets for half-done changes.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// How often such a sweep also deletes orphaned staged bytes.
const ORPHANS_EVERY: Duration = Duration::from_secs(3600);

/// How old staged bytes that no record names must be to be orphans (an upload takes its
/// dataset's lock long before).
const ORPHAN_AGE_MS: u64 = 3_600_000;

/// Datasets in NATS JetStream.
pub struct NatsDatasets {
    nats: Nats,
    /// Datasets opened by this node, so that its changes of one dataset take turns here before
    /// they contend for the dataset's lock across nodes.
    open: OpenCache<(String, String), Arc<NatsDataset>>,
    logs: OpenCache<String, EventLog>,
    /// When each app's datasets were last swept.
    swept: Mutex<HashMap<String, Instant>>,
    /// When each app's datasets were last swept for orphaned bytes.
    orphans_swept: Mutex<HashMap<String, Instant>>,
}

/// Whether `every` has passed since `app` was last done in `last` (then counted as done now).
fn due(last: &Mutex<HashMap<String, Instant>>, app: &str, every: Duration) -> bool {
    let mut last = last.lock().expect("not poisoned");
    let due = last.get(app).is_none_or(|at| at.elapsed() >= every);
    if due {
        last.insert(app.to_string(), Instant::now());
    }
    due
}

impl NatsDatasets {
    /// Datasets on the cluster of `nats` (streams are made when a dataset is first opened).
    pub fn new(nats: Nats) -> NatsDatasets {
        NatsDatasets {
            nats,
            open: OpenCache::default(),
            logs: OpenCache::default(),
            swept: Mutex::default(),
            orphans_swept: Mutex::default(),
        }
    }

    /// The item event log of `app`.
    async fn log(&self, app: &str) -> Result<EventLog, ItemsError> {
        let open = || async { EventLog::open(&self.nats, "ITEMS", app).await.map_err(storage) };
        self.logs.get_or_open(app.to_string(), open).await
    }
}

#[async_trait::async_trait]
impl DatasetBackend for NatsDatasets {
    async fn open(&self, app: &str, name: &str) -> Result<Arc<dyn DatasetStore>, ItemsError> {
        let open = || async {
            let bucket_name = self.nats.name("DATASET", &[app, name]);
            let writer = writer(&self.nats, name, &bucket_name, self.log(app).await?).await?;
            let dataset = Arc::new(NatsDataset {
                nats: self.nats.clone(),
                writer,
                turn: Arc::default(),
                installed: Arc::default(),
            });
            if dataset.writer.bucket.get(claim::OUTBOX).await.map_err(storage)?.is_some() {
                // A change a node left half done: taking the lock finishes it.
                drop(dataset.lock().await?);
            }
            Ok(dataset)
        };
        let dataset: Arc<dyn DatasetStore> = self.open.get_or_open((app.to_string(), name.to_string()), open).await?;
        Ok(dataset)
    }

    async fn pending_events(&self, app: &str, limit: usize) -> Result<Vec<(Vec<u8>, ItemEvent)>, ItemsError> {
        if due(&self.swept, app, SWEEP_EVERY) {
            let orphans = due(&self.orphans_swept, app, ORPHANS_EVERY);
            let (nats, app) = (self.nats.clone(), app.to_string());
            // In a task of its own: finishing a change may wait for an expired lock.
            tokio::spawn(async move {
                if let Err(e) = sweep(&nats, &app, orphans).await {
                    tracing::warn!(app = %app, error = %e, "sweeping datasets for half-done changes failed");
                }
            });
        }
        let messages = self.log(app).await?.pending(limit).await.map_err(storage)?;
        messages
            .into_iter()
            .map(|message| {
                let mut event: ItemEvent = serde_json::from_slice(&message.payload).map_err(storage)?;
                event.seq = message.sequence;
                Ok((event_key(message.sequence).into_bytes(), event))
            })
            .collect()
    }
}

/// What changes dataset `dataset` in bucket (and object store) `bucket_name`.
async fn writer(nats: &Nats, dataset: &str, bucket_name: &str, events: EventLog) -> Result<Writer, ItemsError> {
    Ok(Writer {
        dataset: dataset.to_string(),
        bucket: Bucket::open(nats, bucket_name).await.map_err(storage)?,
        objects: open_objects(nats, bucket_name).await.map_err(storage)?,
        events,
        claim: Arc::default(),
    })
}

/// Finish the changes nodes left half done in the datasets of `app`, and delete their orphaned
/// staged bytes when `orphans`.
async fn sweep(nats: &Nats, app: &str, orphans: bool) -> Result<(), ItemsError> {
    let prefix = format!("KV_{}_", nats.name("DATASET", &[app]));
    let streams: Vec<String> = nats.retry(|| nats.js.stream_names().try_collect()).await.map_err(storage)?;
    for bucket_name in streams.iter().filter(|s| s.starts_with(&prefix)).map(|s| &s["KV_".len()..]) {
        let bucket = Bucket::open(nats, bucket_name).await.map_err(storage)?;
        if bucket.get(claim::OUTBOX).await.map_err(storage)?.is_some() {
            let events = EventLog::open(nats, "ITEMS", app).await.map_err(storage)?;
            let writer = writer(nats, bucket_name, bucket_name, events).await?;
            let turn = Arc::new(tokio::sync::Mutex::new(())).lock_owned().await;
            drop(writer.lock(turn).await?);
        }
        if orphans {
            delete_orphans(&bucket, &open_objects(nats, bucket_name).await.map_err(storage)?).await?;
        }
    }
    Ok(())
}

/// Delete the staged bytes that no record names and that are older than [`ORPHAN_AGE_MS`]: left
/// by uploads whose node died, or whose change failed, before the change named them.
async fn delete_orphans(bucket: &Bucket, objects: &ObjectStore) -> Result<(), ItemsError> {
    let listed = objects.list().await.map_err(storage)?;
    let names: Vec<String> = listed.map_ok(|info| info.name).try_collect().await.map_err(storage)?;
    let before = now_ms().saturating_sub(ORPHAN_AGE_MS);
    for name in names {
        let staged_ms = name.strip_prefix("staged/").and_then(|n| u64::from_str_radix(n.get(..16)?, 16).ok());
        if staged_ms.is_some_and(|ms| ms < before) && bucket.get(&object_key(&name)).await.map_err(storage)?.is_none() {
            delete_object(objects, &name).await?;
        }
    }
    Ok(())
}

/// The object store `name`, made with reads from its stream's leader (a follower may not have
/// an object just written yet).
async fn open_objects(nats: &Nats, name: &str) -> Result<ObjectStore, crate::storage::nats::NatsError> {
    let config = stream::Config {
        name: format!("OBJ_{name}"),
        subjects: vec![format!("$O.{name}.C.>"), format!("$O.{name}.M.>")],
        num_replicas: nats.replicas,
        discard: DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: false,
        max_bytes: -1,
        max_message_size: -1,
        ..Default::default()
    };
    nats.stream(config.clone()).await?;
    nats.retry(|| nats.js.get_object_store(name)).await
}

/// Delete object `name` (absent is fine).
async fn delete_object(objects: &ObjectStore, name: &str) -> Result<(), ItemsError> {
    match objects.delete(name).await {
        Err(e) if e.kind() != DeleteErrorKind::NotFound => Err(storage(format!("deleting object `{name}`: {e}"))),
        _ => Ok(()),
    }
}

/// An item's record: the item and the object holding its bytes.
#[derive(Serialize, Deserialize)]
struct Record {
    item: Item,
    object: String,
}

fn record_key(id: &str) -> String {
    format!("i/{id}")
}

fn path_key(path: &str) -> String {
    format!("p{path}")
}

/// The key that tells object `name` holds an item's bytes (its value is the item's id).
fn object_key(name: &str) -> String {
    format!("o/{name}")
}

fn annotation_prefix(item: &str) -> String {
    format!("a/{item}/")
}

/// One dataset.
struct NatsDataset {
    nats: Nats,
    writer: Writer,
    /// This node's turn to take the dataset's lock.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Objects installed as an item's bytes, by item, until the change commits them.
    installed: Arc<Mutex<HashMap<String, String>>>,
}

impl NatsDataset {
    async fn record(&self, id: &str) -> Result<Option<Record>, ItemsError> {
        let value = self.writer.bucket.get(&record_key(id)).await.map_err(storage)?;
        value.map(|(bytes, _)| serde_json::from_slice(&bytes).map_err(storage)).transpose()
    }

    /// The keys starting with `prefix`, sorted.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, ItemsError> {
        let mut keys = self.writer.bucket.keys().await.map_err(storage)?;
        keys.retain(|k| k.starts_with(prefix));
        Ok(keys)
    }

    /// The values of `keys`, in their order (absent ones skipped), read [`READS_AT_ONCE`] at a
    /// time.
    async fn values<T: serde::de::DeserializeOwned>(&self, keys: &[String]) -> Result<Vec<T>, ItemsError> {
        let mut values = Vec::with_capacity(keys.len());
        for batch in keys.chunks(READS_AT_ONCE) {
            let reads = batch.iter().map(|key| self.writer.bucket.get(key));
            let read = futures_util::future::try_join_all(reads).await.map_err(storage)?;
            for (bytes, _) in read.into_iter().flatten() {
                values.push(serde_json::from_slice(&bytes).map_err(storage)?);
            }
        }
        Ok(values)
    }
}

/// A new id: increasing on each node, and across nodes as their clocks are (ms since the epoch,
/// then random bits so that nodes never make the same id).
fn new_id() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the OS random source works");
    let now = now_ms() << 16;
    let next = |last: u64| (last + 1).max(now);
    let last = LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(next(last))).expect("always some");
    format!("{:016x}{:016x}", next(last), u64::from_le_bytes(random))
}

#[async_trait::async_trait]
impl DatasetStore for NatsDataset {
    async fn get(&self, id: &str) -> Result<Option<Item>, ItemsError> {
        Ok(self.record(id).await?.map(|r| r.item))
    }

    async fn id_at(&self, path: &str) -> Result<Option<String>, ItemsError> {
        let id = self.writer.bucket.get(&path_key(path)).await.map_err(storage)?;
        Ok(id.map(|(id, _)| String::from_utf8_lossy(&id).into_owned()))
    }

    async fn list(&self, filter: &ItemFilter, cursor: Option<&str>, limit: usize) -> Result<ItemPage, ItemsError> {
        let mut keys = self.keys("i/").await?;
        if let Some(cursor) = cursor {
            keys.retain(|k| k[2..] > *cursor);
        }
        let mut items = Vec::new();
        for batch in keys.chunks(limit.clamp(1, READS_AT_ONCE)) {
            for record in self.values::<Record>(batch).await? {
                if !filter.matches(&record.item) {
                    continue;
                }
                if items.len() == limit {
                    let cursor = items.last().map(|i: &Item| i.id.clone());
                    return Ok(ItemPage { items, cursor });
                }
                items.push(record.item);
            }
        }
        Ok(ItemPage { items, cursor: None })
    }

    async fn annotations(&self, id: &str) -> Result<Vec<Annotation>, ItemsError> {
        self.values(&self.keys(&annotation_prefix(id)).await?).await
    }

    async fn read(&self, id: &str, cap: u64) -> Result<Result<ItemBytes, u64>, ItemsError> {
        let mut object = None;
        loop {
            let Some(record) = self.record(id).await? else { return Err(ItemsError::NoSuchItem(id.into())) };
            if object.as_ref() == Some(&record.object) {
                return Err(storage(format!("item `{id}`: its bytes (object `{}`) are missing", record.object)));
            }
            match self.writer.objects.get(&record.object).await {
                Ok(bytes) if bytes.info.size as u64 > cap => return Ok(Err(bytes.info.size as u64)),
                Ok(bytes) => return Ok(Ok(ItemBytes { size: bytes.info.size as u64, reader: Box::pin(bytes) })),
                // Replaced or deleted since the record was read: read the record again.
                Err(e) if e.kind() == GetErrorKind::NotFound => object = Some(record.object),
                Err(e) => return Err(storage(format!("item `{id}`: {e}"))),
            }
        }
    }

    async fn new_id(&self) -> Result<String, ItemsError> {
        Ok(new_id())
    }

    async fn lock(&self) -> Result<Box<dyn Send>, ItemsError> {
        self.writer.lock(self.turn.clone().lock_owned().await).await
    }

    async fn stage(&self, data: Vec<u8>) -> Result<Box<dyn StagedBytes>, ItemsError> {
        // Named by the time it was staged, so that orphans can be told by their age.
        let name = format!("staged/{:016x}-{}", now_ms(), random_id());
        let meta = ObjectMetadata { name: name.clone(), chunk_size: Some(CHUNK_SIZE), ..Default::default() };
        let objects = &self.writer.objects;
        // Read from the slice chunk by chunk; a retry writes the object again from the start.
        let put = || async { objects.put(meta.clone(), &mut data.as_slice()).await };
        self.nats.retry(put).await.map_err(|e| storage(format!("staging item bytes: {e}")))?;
        Ok(Box::new(StagedObject { name, objects: objects.clone(), installed: Some(self.installed.clone()) }))
    }

    async fn commit(&self, action: Action, item: &Item, cause: Option<&Cause>) -> Result<(), ItemsError> {
        let previous = self.record(&item.id).await?.map(|r| r.object);
        let installed = self.installed.lock().expect("not poisoned").remove(&item.id);
        let mut writes = Vec::new();
        let mut retired = Vec::new();
        if action == Action::Deleted {
            writes.push((record_key(&item.id), None));
            writes.push((path_key(&item.path()), None));
            writes.extend(self.keys(&annotation_prefix(&item.id)).await?.into_iter().map(|k| (k, None)));
            retired.extend(previous.into_iter().chain(installed));
        } else {
            let object = match (installed, previous) {
                (Some(new), previous) => {
                    retired.extend(previous);
                    writes.push((object_key(&new), Some(item.id.clone())));
                    new
                }
                (None, Some(previous)) => previous,
                (None, None) => return Err(storage(format!("item `{}`: no bytes were installed", item.id))),
            };
            let record = serde_json::to_string(&Record { item: item.clone(), object }).map_err(storage)?;
            writes.push((record_key(&item.id), Some(record)));
            writes.push((path_key(&item.path()), Some(item.id.clone())));
        }
        writes.extend(retired.iter().map(|object| (object_key(object), None)));
        let event = ItemEvent { seq: 0, action, item: item.clone(), cause: cause.cloned() };
        self.writer.change(Intent { id: random_id(), writes, event: Some(event), retired }).await
    }

    async fn add_annotations(&self, id: &str, annotations: &[Annotation]) -> Result<(), ItemsError> {
        let mut writes = Vec::new();
        for annotation in annotations {
            let value = serde_json::to_string(annotation).map_err(storage)?;
            writes.push((format!("{}{}", annotation_prefix(id), annotation.id), Some(value)));
        }
        self.writer.change(Intent { id: random_id(), writes, event: None, retired: Vec::new() }).await
    }

    async fn remove_annotation(&self, id: &str, annotation: &str) -> Result<bool, ItemsError> {
        let key = format!("{}{annotation}", annotation_prefix(id));
        if self.writer.bucket.get(&key).await.map_err(storage)?.is_none() {
            return Ok(false);
        }
        let writes = vec![(key, None)];
        self.writer.change(Intent { id: random_id(), writes, event: None, retired: Vec::new() }).await?;
        Ok(true)
    }

    async fn remove_bytes(&self, _id: &str) -> Result<(), ItemsError> {
        // The change that deleted the item deleted its object once applied.
        Ok(())
    }

    async fn durable(&self) -> Result<(), ItemsError> {
        // A write is acknowledged once a majority of the stream's replicas have it.
        Ok(())
    }
}

/// Bytes staged as an object of their own: installing names it in the item's next record;
/// dropped before that, it is deleted.
struct StagedObject {
    name: String,
    objects: ObjectStore,
    installed: Option<Arc<Mutex<HashMap<String, String>>>>,
}

#[async_trait::async_trait]
impl StagedBytes for StagedObject {
    async fn install(mut self: Box<Self>, id: &str) -> Result<(), ItemsError> {
        let installed = self.installed.take().expect("installed once");
        installed.lock().expect("not poisoned").insert(id.to_string(), self.name.clone());
        Ok(())
    }
}

impl Drop for StagedObject {
    fn drop(&mut self) {
        if self.installed.is_some()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (objects, name) = (self.objects.clone(), self.name.clone());
            runtime.spawn(async move { delete_object(&objects, &name).await });
        }
    }
}
