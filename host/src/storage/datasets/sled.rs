//! The embedded dataset store: records, annotations and the event log in sled; small items'
//! bytes in sled too, larger ones as files under the data dir. Every change of an item and the
//! event it emits are written in one sled transaction (with small bytes), so an event exists
//! exactly when its change does; a file is written (and synced) before that.
//!
//! Why small bytes live in sled: a file costs three `fsync`s (its data, its rename, its folder)
//! per upload, and the folder sync runs under the dataset's lock; in sled the bytes ride the
//! group commit of the record, which many uploads share.
//!
//! Layout: trees `items/APP/DATASET` (id → item), `item-paths/APP/DATASET` (`dir/name` → id),
//! `annotations/APP/DATASET` (`item/annotation` → annotation), `item-bytes/APP/DATASET` (id →
//! bytes of at most [`INLINE_MAX`]), `events/APP` (sequence → event); other bytes in
//! `DATA/items/APP/DATASET/ID`. An item's bytes are in `item-bytes` when its id is there, else in
//! its file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sled::Transactional;

use super::{
    Action, Annotation, Cause, DatasetBackend, DatasetStore, Item, ItemBytes, ItemEvent, ItemFilter, ItemPage,
    ItemsError, StagedBytes, storage,
};
use crate::files::{Staged, blocking};
use crate::store::Store;

/// Items of at most this many bytes keep them in sled rather than in a file (well under sled's
/// own threshold for writing a value as a file of its own).
pub const INLINE_MAX: usize = 16 << 10;

/// Datasets in the embedded store, their bytes under `items_dir`.
pub struct SledDatasets {
    store: Arc<Store>,
    items_dir: PathBuf,
}

impl SledDatasets {
    /// The datasets of `store`, with bytes under `items_dir` (by app and dataset).
    pub fn new(store: Arc<Store>, items_dir: PathBuf) -> SledDatasets {
        SledDatasets { store, items_dir }
    }
}

#[async_trait::async_trait]
impl DatasetBackend for SledDatasets {
    async fn pending_events(&self, app: &str, limit: usize) -> Result<Vec<(Vec<u8>, ItemEvent)>, ItemsError> {
        let events = events_tree(&self.store, app).map_err(storage)?;
        let entries = events.iter().take(limit);
        entries
            .map(|entry| {
                let (key, bytes) = entry.map_err(storage)?;
                Ok((key.to_vec(), serde_json::from_slice(&bytes).map_err(storage)?))
            })
            .collect()
    }

    async fn open(&self, app: &str, name: &str) -> Result<Arc<dyn DatasetStore>, ItemsError> {
        let files = self.items_dir.join(app).join(name);
        let folder = files.clone();
        blocking(move || crate::files::create_dir_all_synced(&folder)).await.map_err(storage)?;
        let store = &self.store;
        Ok(Arc::new(SledDataset {
            items: store.tree(&format!("items/{app}/{name}")).map_err(storage)?,
            paths: store.tree(&format!("item-paths/{app}/{name}")).map_err(storage)?,
            annotations: store.tree(&format!("annotations/{app}/{name}")).map_err(storage)?,
            bytes: store.tree(&format!("item-bytes/{app}/{name}")).map_err(storage)?,
            installed: Arc::default(),
            events: events_tree(store, app).map_err(storage)?,
            files,
            store: store.clone(),
            lock: store.lock(&format!("items/{app}/{name}")),
        }))
    }
}

/// One dataset's trees and folder.
struct SledDataset {
    items: sled::Tree,
    paths: sled::Tree,
    annotations: sled::Tree,
    bytes: sled::Tree,
    /// Bytes installed by the change under way, by item id, that its commit writes: `Some` to
    /// keep in `bytes`, `None` when the item's file now holds them.
    installed: Installed,
    events: sled::Tree,
    files: PathBuf,
    store: Arc<Store>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// Where the bytes of item `id` are, in dataset folder `files` (ids are hex: no other name is
/// an item's).
fn item_file(files: &Path, id: &str) -> Result<PathBuf, ItemsError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ItemsError::NoSuchItem(id.into()));
    }
    Ok(files.join(id))
}

#[async_trait::async_trait]
impl DatasetStore for SledDataset {
    async fn get(&self, id: &str) -> Result<Option<Item>, ItemsError> {
        let bytes = self.items.get(id.as_bytes()).map_err(storage)?;
        bytes.map(|b| serde_json::from_slice(&b).map_err(storage)).transpose()
    }

    async fn id_at(&self, path: &str) -> Result<Option<String>, ItemsError> {
        let id = self.paths.get(path.as_bytes()).map_err(storage)?;
        Ok(id.map(|id| String::from_utf8_lossy(&id).into_owned()))
    }

    async fn list(&self, filter: &ItemFilter, cursor: Option<&str>, limit: usize) -> Result<ItemPage, ItemsError> {
        let start = match cursor {
            Some(c) => std::ops::Bound::Excluded(c.as_bytes().to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        let mut items = Vec::new();
        for entry in self.items.range((start, std::ops::Bound::Unbounded)) {
            let (_, bytes) = entry.map_err(storage)?;
            let item: Item = serde_json::from_slice(&bytes).map_err(storage)?;
            if filter.matches(&item) {
                if items.len() == limit {
                    let cursor = items.last().map(|i: &Item| i.id.clone());
                    return Ok(ItemPage { items, cursor });
                }
                items.push(item);
            }
        }
        Ok(ItemPage { items, cursor: None })
    }

    async fn annotations(&self, id: &str) -> Result<Vec<Annotation>, ItemsError> {
        self.annotations
            .scan_prefix(format!("{id}/"))
            .values()
            .map(|v| serde_json::from_slice(&v.map_err(storage)?).map_err(storage))
            .collect()
    }

    async fn read(&self, id: &str, cap: u64) -> Result<Result<ItemBytes, u64>, ItemsError> {
        if let Some(bytes) = self.bytes.get(id.as_bytes()).map_err(storage)? {
            let size = bytes.len() as u64;
            if size > cap {
                return Ok(Err(size));
            }
            return Ok(Ok(ItemBytes { size, reader: Box::pin(std::io::Cursor::new(bytes)) }));
        }
        let file = tokio::fs::File::open(item_file(&self.files, id)?).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ItemsError::NoSuchItem(id.into()),
            _ => storage(e),
        })?;
        let size = file.metadata().await.map_err(storage)?.len();
        if size > cap {
            return Ok(Err(size));
        }
        Ok(Ok(ItemBytes { size, reader: Box::pin(file) }))
    }

    async fn new_id(&self) -> Result<String, ItemsError> {
        Ok(format!("{:016x}", self.store.next_id().map_err(storage)?))
    }

    async fn lock(&self) -> Result<Box<dyn Send>, ItemsError> {
        Ok(Box::new(self.lock.clone().lock_owned().await))
    }

    async fn stage(&self, data: Vec<u8>) -> Result<Box<dyn StagedBytes>, ItemsError> {
        let bytes = match data.len() <= INLINE_MAX {
            true => Held::Inline(data),
            false => {
                let files = self.files.clone();
                Held::File(blocking(move || Staged::write(&files, &data)).await.map_err(storage)?)
            }
        };
        Ok(Box::new(StagedItem { bytes, files: self.files.clone(), installed: self.installed.clone() }))
    }

    async fn commit(&self, action: Action, item: &Item, cause: Option<&Cause>) -> Result<(), ItemsError> {
        let annotations = match action {
            Action::Deleted => self.annotations.scan_prefix(format!("{}/", item.id)).keys().collect(),
            _ => Ok(Vec::new()),
        };
        let annotations = annotations.map_err(storage)?;
        // Taken before anything can fail, so that a failed commit leaves nothing for the next.
        let installed = self.installed.lock().expect("not poisoned").remove(&item.id);
        let seq = self.store.next_id().map_err(storage)?;
        let event = ItemEvent { seq, action, item: item.clone(), cause: cause.cloned() };
        let event = serde_json::to_vec(&event).map_err(storage)?;
        let record = serde_json::to_vec(item).map_err(storage)?;
        let path = item.path();
        (&self.items, &self.paths, &self.annotations, &self.bytes, &self.events)
            .transaction(|(items, paths, notes, bytes, events)| {
                if action == Action::Deleted {
                    items.remove(item.id.as_bytes())?;
                    paths.remove(path.as_bytes())?;
                    bytes.remove(item.id.as_bytes())?;
                    for key in &annotations {
                        notes.remove(key.clone())?;
                    }
                } else {
                    items.insert(item.id.as_bytes(), record.as_slice())?;
                    paths.insert(path.as_bytes(), item.id.as_bytes())?;
                    match &installed {
                        Some(Some(data)) => drop(bytes.insert(item.id.as_bytes(), data.as_slice())?),
                        Some(None) => drop(bytes.remove(item.id.as_bytes())?),
                        None => {}
                    }
                }
                events.insert(&seq.to_be_bytes(), event.as_slice())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| storage(format!("{e:?}")))
    }

    async fn add_annotations(&self, id: &str, annotations: &[Annotation]) -> Result<(), ItemsError> {
        let mut writes = Vec::with_capacity(annotations.len());
        for annotation in annotations {
            writes.push((format!("{id}/{}", annotation.id), serde_json::to_vec(annotation).map_err(storage)?));
        }
        // One insert is atomic by itself, and costs a fraction of a batch (which writes and
        // syncs sled's log twice).
        if let [(key, value)] = &writes[..] {
            return self.annotations.insert(key.as_bytes(), value.as_slice()).map(drop).map_err(storage);
        }
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            batch.insert(key.as_bytes(), value);
        }
        self.annotations.apply_batch(batch).map_err(storage)
    }

    async fn remove_annotation(&self, id: &str, annotation: &str) -> Result<bool, ItemsError> {
        Ok(self.annotations.remove(format!("{id}/{annotation}").as_bytes()).map_err(storage)?.is_some())
    }

    async fn remove_bytes(&self, id: &str) -> Result<(), ItemsError> {
        let file = item_file(&self.files, id)?;
        blocking(move || match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(storage(e)),
            _ => Ok(()),
        })
        .await
    }

    async fn durable(&self) -> Result<(), ItemsError> {
        self.store.durable().await.map_err(ItemsError::Storage)?;
        self.store.new_events.notify_waiters();
        Ok(())
    }
}

/// What [`SledDataset::installed`] holds.
type Installed = Arc<Mutex<HashMap<String, Option<Vec<u8>>>>>;

/// Bytes staged for an item of the dataset in `files`.
struct StagedItem {
    bytes: Held,
    files: PathBuf,
    installed: Installed,
}

/// Where staged bytes wait.
enum Held {
    /// Written and synced to a temporary file of the dataset's folder.
    File(Staged),
    /// Small bytes, in memory until the commit writes them to sled with the item's record.
    Inline(Vec<u8>),
}

#[async_trait::async_trait]
impl StagedBytes for StagedItem {
    async fn install(self: Box<Self>, id: &str) -> Result<(), ItemsError> {
        let target = item_file(&self.files, id)?;
        let StagedItem { bytes, files, installed } = *self;
        let bytes = match bytes {
            // An item whose bytes are in a file keeps a file: removing the old file could only
            // wait until the commit is durable, and a crash before then would leave it behind.
            // (A `stat` of a folder entry is too cheap to move off the async worker.)
            Held::Inline(data) if target.exists() => {
                Held::File(blocking(move || Staged::write(&files, &data)).await.map_err(storage)?)
            }
            bytes => bytes,
        };
        let kept = match bytes {
            Held::File(staged) => {
                blocking(move || staged.install(&target)).await.map_err(storage)?;
                // The commit drops the item's bytes from sled, if it had any, so its file is read.
                None
            }
            Held::Inline(data) => Some(data),
        };
        installed.lock().expect("not poisoned").insert(id.to_string(), kept);
        Ok(())
    }
}

/// The item event log of `app`.
pub(crate) fn events_tree(store: &Store, app: &str) -> Result<sled::Tree, sled::Error> {
    store.tree(&format!("events/{app}"))
}

/// Remove the temporary files (names starting with `.`) that uploads a crash interrupted left in
/// the dataset folders under `items_dir`; done when a host starts.
pub(crate) fn remove_orphans(items_dir: &Path) -> std::io::Result<()> {
    crate::files::remove_orphans(items_dir, None, |name| name.starts_with('.'))
}
