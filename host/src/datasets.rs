//! Datasets of items: metadata, annotations and the event log in sled, bytes as files under the
//! data dir. Every change of an item and the event it emits are written in one sled transaction,
//! so an event exists exactly when its change does; bytes are written (and synced) before that.
//!
//! Layout: trees `items/APP/DATASET` (id → item), `item-paths/APP/DATASET` (`dir/name` → id),
//! `annotations/APP/DATASET` (`item/annotation` → annotation), `events/APP` (sequence → event);
//! bytes in `DATA/items/APP/DATASET/ID`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use sled::Transactional;

use self::item::join;
pub use self::item::{Action, Annotation, Cause, Geometry, Item, ItemEvent, ItemFilter, ItemPage, Modality};
use crate::store::Store;

mod item;

/// Largest item accepted, in bytes.
pub const MAX_ITEM_SIZE: usize = 256 << 20;

/// Why an items operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ItemsError {
    /// No item (or annotation) with this id.
    #[error("no item `{0}`")]
    NoSuchItem(String),
    /// An argument breaks the rules.
    #[error("{0}")]
    Invalid(String),
    /// Storage failed.
    #[error("items storage: {0}")]
    Storage(String),
}

fn storage(e: impl std::fmt::Display) -> ItemsError {
    ItemsError::Storage(e.to_string())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Check a folder (`/` or `/a/b`) or file name.
fn validate_dir(dir: &str) -> Result<String, ItemsError> {
    let dir = if dir.len() > 1 { dir.trim_end_matches('/') } else { dir };
    let bad = !dir.starts_with('/')
        || dir.len() > 1024
        || dir.contains(['\0', '\\'])
        || (dir != "/" && dir[1..].split('/').any(|s| s.is_empty() || s == "." || s == ".."));
    if bad {
        return Err(ItemsError::Invalid(format!(
            "dir {dir:?}: expected `/` or an absolute folder like `/a/b` without empty, `.` or `..` parts"
        )));
    }
    Ok(dir.to_string())
}

fn validate_name(name: &str) -> Result<(), ItemsError> {
    if name.is_empty() || name.len() > 255 || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
        return Err(ItemsError::Invalid(format!("name {name:?}: expected 1-255 bytes without `/`, `\\` or NUL")));
    }
    Ok(())
}

fn parse_metadata(text: &str) -> Result<Value, ItemsError> {
    match serde_json::from_str(text) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(ItemsError::Invalid(format!(
            "metadata: expected a JSON object, got {:?}",
            text.chars().take(40).collect::<String>()
        ))),
    }
}

/// Items of one dataset of one app.
///
/// Every change of the dataset (upload, metadata, link, delete, annotations) runs under the
/// dataset's lock, shared by every handle on the same store, so that concurrent changes are
/// serialised and none is lost. An upload writes and syncs its bytes to a temporary file before
/// taking the lock; under the lock it only looks up the path, renames the file into place and
/// commits the record. The lock is released before waiting for the store's flush.
#[derive(Clone)]
pub struct Dataset {
    name: String,
    items: sled::Tree,
    paths: sled::Tree,
    annotations: sled::Tree,
    events: sled::Tree,
    files: PathBuf,
    store: Arc<Store>,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Dataset {
    /// Open dataset `name` of `app` (created on first use); bytes live under `items_dir`.
    pub fn open(store: &Arc<Store>, items_dir: &Path, app: &str, name: &str) -> Result<Dataset, ItemsError> {
        let files = items_dir.join(app).join(name);
        crate::files::create_dir_all_synced(&files).map_err(storage)?;
        Ok(Dataset {
            name: name.to_string(),
            items: store.tree(&format!("items/{app}/{name}")).map_err(storage)?,
            paths: store.tree(&format!("item-paths/{app}/{name}")).map_err(storage)?,
            annotations: store.tree(&format!("annotations/{app}/{name}")).map_err(storage)?,
            events: events_tree(store, app).map_err(storage)?,
            files,
            store: store.clone(),
            lock: store.lock(&format!("items/{app}/{name}")),
        })
    }

    /// The dataset's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The item with this id.
    pub fn get(&self, id: &str) -> Result<Item, ItemsError> {
        let bytes = self.items.get(id.as_bytes()).map_err(storage)?.ok_or_else(|| ItemsError::NoSuchItem(id.into()))?;
        serde_json::from_slice(&bytes).map_err(storage)
    }

    /// Where the item's bytes are.
    fn file(&self, id: &str) -> Result<PathBuf, ItemsError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ItemsError::NoSuchItem(id.into()));
        }
        Ok(self.files.join(id))
    }

    /// The item's bytes (blocking: async callers run it on a blocking thread). An item deleted
    /// meanwhile is [`ItemsError::NoSuchItem`].
    pub fn download(&self, id: &str) -> Result<Vec<u8>, ItemsError> {
        Ok(self.download_at_most(id, u64::MAX)?.expect("no file holds more than u64::MAX bytes"))
    }

    /// The item's bytes, unless its file holds more than `cap`: then nothing is read and the
    /// inner `Err` holds its size.
    pub fn download_at_most(&self, id: &str, cap: u64) -> Result<Result<Vec<u8>, u64>, ItemsError> {
        use std::io::Read;
        self.get(id)?;
        let file = std::fs::File::open(self.file(id)?).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ItemsError::NoSuchItem(id.into()),
            _ => storage(e),
        })?;
        let size = file.metadata().map_err(storage)?.len();
        if size > cap {
            return Ok(Err(size));
        }
        let mut data = Vec::with_capacity(size as usize);
        // `take` also bounds a file that grew since its size was read.
        file.take(size).read_to_end(&mut data).map_err(storage)?;
        Ok(Ok(data))
    }

    /// Run `change` on a blocking thread while holding the dataset's lock. A change that has
    /// started finishes even if the caller stops waiting (the lock goes with it). Then wait until
    /// the change is on disk and wake the triggers.
    async fn change<T: Send + 'static>(
        &self,
        change: impl FnOnce(&Dataset) -> Result<T, ItemsError> + Send + 'static,
    ) -> Result<T, ItemsError> {
        let held = self.lock.clone().lock_owned().await;
        let dataset = self.clone();
        let done = crate::files::blocking(move || {
            let _held = held;
            change(&dataset)
        })
        .await?;
        self.store.durable().await.map_err(ItemsError::Storage)?;
        self.store.new_events.notify_waiters();
        Ok(done)
    }

    /// Store the item's event and its new state in one transaction; for `deleted`, also remove
    /// its path and `annotations`. Called under the dataset's lock.
    fn record(
        &self,
        action: Action,
        item: &Item,
        cause: Option<&Cause>,
        annotations: &[sled::IVec],
    ) -> Result<(), ItemsError> {
        let seq = self.store.next_id().map_err(storage)?;
        let event = ItemEvent { seq, action, item: item.clone(), cause: cause.cloned() };
        let event = serde_json::to_vec(&event).map_err(storage)?;
        let record = serde_json::to_vec(item).map_err(storage)?;
        let path = item.path();
        (&self.items, &self.paths, &self.annotations, &self.events)
            .transaction(|(items, paths, notes, events)| {
                if action == Action::Deleted {
                    items.remove(item.id.as_bytes())?;
                    paths.remove(path.as_bytes())?;
                    for key in annotations {
                        notes.remove(key.clone())?;
                    }
                } else {
                    items.insert(item.id.as_bytes(), record.as_slice())?;
                    paths.insert(path.as_bytes(), item.id.as_bytes())?;
                }
                events.insert(&seq.to_be_bytes(), event.as_slice())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| storage(format!("{e:?}")))
    }

    /// Store `data` as `dir/name`: replaces the bytes and mimetype of the item at that path
    /// (`updated`; its metadata is replaced only when `metadata` is given, its links and
    /// annotations are kept) or makes a new item (`created`; metadata `{}` when not given).
    pub async fn upload(
        &self,
        dir: &str,
        name: &str,
        mimetype: Option<&str>,
        data: impl Into<Vec<u8>>,
        metadata: Option<&str>,
        cause: Option<&Cause>,
    ) -> Result<Item, ItemsError> {
        let dir = validate_dir(dir)?;
        validate_name(name)?;
        let data = data.into();
        if data.len() > MAX_ITEM_SIZE {
            return Err(ItemsError::Invalid(format!("data: {} bytes, the limit is {MAX_ITEM_SIZE}", data.len())));
        }
        let mimetype = match mimetype {
            Some(m) if m.contains('/') && m.len() <= 255 && !m.contains(char::is_whitespace) => m.to_ascii_lowercase(),
            Some(m) => return Err(ItemsError::Invalid(format!("mimetype {m:?}: expected `type/subtype`"))),
            None => crate::mimetype::guess(name).to_string(),
        };
        let metadata = metadata.map(parse_metadata).transpose()?;
        let size = data.len() as u64;
        let files = self.files.clone();
        let staged =
            crate::files::blocking(move || crate::files::Staged::write(&files, &data)).await.map_err(storage)?;
        let (name, cause) = (name.to_string(), cause.cloned());
        self.change(move |dataset| {
            let now = now_ms();
            let existing = dataset.paths.get(join(&dir, &name).as_bytes()).map_err(storage)?;
            let (item, action) = match existing {
                Some(id) => {
                    let mut item = dataset.get(&String::from_utf8_lossy(&id))?;
                    item.mimetype = mimetype;
                    item.size = size;
                    item.metadata = metadata.unwrap_or(item.metadata);
                    item.updated_ms = now;
                    (item, Action::Updated)
                }
                None => {
                    let id = format!("{:016x}", dataset.store.next_id().map_err(storage)?);
                    let metadata = metadata.unwrap_or_else(|| Value::Object(Default::default()));
                    let modalities = Vec::new();
                    let item = Item {
                        id,
                        dataset: dataset.name.clone(),
                        name,
                        dir,
                        mimetype,
                        size,
                        metadata,
                        modalities,
                        created_ms: now,
                        updated_ms: now,
                    };
                    (item, Action::Created)
                }
            };
            staged.install(&dataset.file(&item.id)?).map_err(storage)?;
            dataset.record(action, &item, cause.as_ref(), &[])?;
            Ok(item)
        })
        .await
    }

    /// Replace the item's metadata (a JSON object).
    pub async fn update_metadata(&self, id: &str, metadata: &str, cause: Option<&Cause>) -> Result<Item, ItemsError> {
        let metadata = parse_metadata(metadata)?;
        let (id, cause) = (id.to_string(), cause.cloned());
        self.change(move |dataset| {
            let mut item = dataset.get(&id)?;
            item.metadata = metadata;
            item.updated_ms = now_ms();
            dataset.record(Action::Updated, &item, cause.as_ref(), &[])?;
            Ok(item)
        })
        .await
    }

    /// Link item `id` to item `reference` under `name`, replacing a link of that name (an
    /// identical link changes nothing and emits no event).
    pub async fn link_modality(
        &self,
        id: &str,
        name: &str,
        reference: &str,
        cause: Option<&Cause>,
    ) -> Result<Item, ItemsError> {
        if name.is_empty() || name.len() > 64 {
            return Err(ItemsError::Invalid(format!("modality name {name:?}: expected 1-64 bytes")));
        }
        let (id, name, reference, cause) = (id.to_string(), name.to_string(), reference.to_string(), cause.cloned());
        self.change(move |dataset| {
            dataset.get(&reference)?;
            let mut item = dataset.get(&id)?;
            if item.modalities.iter().any(|m| m.name == name && m.reference == reference) {
                return Ok(item); // Nothing changes: no `updated` event.
            }
            item.modalities.retain(|m| m.name != name);
            item.modalities.push(Modality { name, reference });
            item.updated_ms = now_ms();
            dataset.record(Action::Updated, &item, cause.as_ref(), &[])?;
            Ok(item)
        })
        .await
    }

    /// Delete the item, its bytes and annotations; absent is fine. The bytes are removed once the
    /// deletion is on disk, so a crash never leaves a record without its bytes.
    pub async fn delete(&self, id: &str, cause: Option<&Cause>) -> Result<(), ItemsError> {
        let (id, cause) = (id.to_string(), cause.cloned());
        let deleted = self
            .change(move |dataset| {
                let item = match dataset.get(&id) {
                    Ok(item) => item,
                    Err(ItemsError::NoSuchItem(_)) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let annotations = dataset.annotations.scan_prefix(format!("{id}/")).keys();
                let annotations = annotations.collect::<Result<Vec<_>, _>>().map_err(storage)?;
                dataset.record(Action::Deleted, &item, cause.as_ref(), &annotations)?;
                dataset.file(&id).map(Some)
            })
            .await?;
        let Some(file) = deleted else { return Ok(()) };
        crate::files::blocking(move || match std::fs::remove_file(file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(storage(e)),
            _ => Ok(()),
        })
        .await
    }

    /// Items matching `filter`, at most `limit` (1 to 1000) after `cursor`, in id order.
    pub fn list(&self, filter: &ItemFilter, cursor: Option<&str>, limit: u32) -> Result<ItemPage, ItemsError> {
        let limit = (limit as usize).clamp(1, 1000);
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

    /// Add annotations to an item, all or none.
    pub async fn add_annotations(
        &self,
        id: &str,
        new: Vec<(Geometry, String, Option<f32>, Option<String>)>,
    ) -> Result<Vec<Annotation>, ItemsError> {
        if let Some((_, label, confidence, _)) = new.iter().find(|a| a.2.is_some_and(|c| !(0.0..=1.0).contains(&c))) {
            return Err(ItemsError::Invalid(format!("confidence {confidence:?} of `{label}`: expected 0 to 1")));
        }
        let id = id.to_string();
        self.change(move |dataset| {
            dataset.get(&id)?;
            let now = now_ms();
            let mut batch = sled::Batch::default();
            let mut added = Vec::new();
            for (geometry, label, confidence, model) in new {
                let annotation = Annotation {
                    id: format!("{:016x}", dataset.store.next_id().map_err(storage)?),
                    geometry,
                    label,
                    confidence,
                    model,
                    created_ms: now,
                };
                let key = format!("{id}/{}", annotation.id);
                batch.insert(key.as_bytes(), serde_json::to_vec(&annotation).map_err(storage)?);
                added.push(annotation);
            }
            dataset.annotations.apply_batch(batch).map_err(storage)?;
            Ok(added)
        })
        .await
    }

    /// The item's annotations, in the order they were added.
    pub fn annotations(&self, id: &str) -> Result<Vec<Annotation>, ItemsError> {
        self.get(id)?;
        self.annotations
            .scan_prefix(format!("{id}/"))
            .values()
            .map(|v| serde_json::from_slice(&v.map_err(storage)?).map_err(storage))
            .collect()
    }

    /// Delete one annotation of an item.
    pub async fn delete_annotation(&self, id: &str, annotation: &str) -> Result<(), ItemsError> {
        let key = format!("{id}/{annotation}");
        self.change(move |dataset| match dataset.annotations.remove(key.as_bytes()).map_err(storage)? {
            Some(_) => Ok(()),
            None => Err(ItemsError::NoSuchItem(key)),
        })
        .await
    }
}

/// The event log of `app`.
pub(crate) fn events_tree(store: &Store, app: &str) -> Result<sled::Tree, sled::Error> {
    store.tree(&format!("events/{app}"))
}

/// Remove the temporary files (names starting with `.`) that uploads a crash interrupted left in
/// the dataset folders under `items_dir`; done when a host starts.
pub(crate) fn remove_orphans(items_dir: &Path) -> std::io::Result<()> {
    crate::files::remove_orphans(items_dir, None, |name| name.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_and_names_are_checked() {
        assert_eq!(validate_dir("/a/b/").unwrap(), "/a/b");
        assert_eq!(validate_dir("/").unwrap(), "/");
        for bad in ["a", "/a//b", "/a/../b", "/a/./b", "/a\\b"] {
            assert!(validate_dir(bad).is_err(), "{bad}");
        }
        assert!(validate_name("x.png").is_ok());
        for bad in ["", "a/b", "..", "a\0"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
