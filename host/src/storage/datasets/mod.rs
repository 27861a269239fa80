//! Datasets of items: the library behind `host:api/items`, `[[trigger.item]]` and the item
//! routes. An item is a file (bytes) with a record (path, mimetype, metadata, links to other
//! items); items carry annotations, and every change of an item emits an item event, written
//! together with the change, that item triggers consume.
//!
//! [`Dataset`] checks arguments and decides what a change does; a [`DatasetStore`] keeps the
//! records, annotations, events and bytes. The embedded store is [`SledDatasets`]: records in
//! sled, bytes as files under the data dir. [`NatsDatasets`] shares datasets between the nodes
//! of a NATS JetStream cluster.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};

use self::item::join;
pub use self::item::{Action, Annotation, Cause, Geometry, Item, ItemEvent, ItemFilter, ItemPage, Modality};
pub use self::nats::NatsDatasets;
pub use self::sled::SledDatasets;
pub(crate) use self::sled::{events_tree, remove_orphans};
use crate::clock::now_ms;

mod item;
mod nats;
mod sled;
#[cfg(test)]
pub(crate) mod suite;

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

/// Where datasets live: opens one dataset's store.
#[async_trait::async_trait]
pub trait DatasetBackend: Send + Sync {
    /// The store of dataset `name` of `app`, created on first use.
    async fn open(&self, app: &str, name: &str) -> Result<Arc<dyn DatasetStore>, ItemsError>;

    /// Up to `limit` item events of `app`'s datasets not accepted yet, oldest first, each with
    /// its key in the app's event log (the item triggers accept each through the execution
    /// store, which removes it).
    async fn pending_events(&self, app: &str, limit: usize) -> Result<Vec<(Vec<u8>, ItemEvent)>, ItemsError>;
}

/// The records, annotations, events and bytes of one dataset.
///
/// Changes are made by one [`Dataset`] change at a time, under [`DatasetStore::lock`]; a change
/// is durable once [`DatasetStore::durable`] returns. A networked store makes the lock a claim
/// held by one node at a time, and fences out the writes of a holder whose claim another node
/// took over.
#[async_trait::async_trait]
pub trait DatasetStore: Send + Sync {
    /// The item with this id, if any.
    async fn get(&self, id: &str) -> Result<Option<Item>, ItemsError>;

    /// The id of the item at `dir/name`, if any.
    async fn id_at(&self, path: &str) -> Result<Option<String>, ItemsError>;

    /// Items matching `filter`, at most `limit` after `cursor`, in id order.
    async fn list(&self, filter: &ItemFilter, cursor: Option<&str>, limit: usize) -> Result<ItemPage, ItemsError>;

    /// The annotations of item `id`, in the order they were added.
    async fn annotations(&self, id: &str) -> Result<Vec<Annotation>, ItemsError>;

    /// A reader of item `id`'s bytes, unless they are more than `cap`: then nothing is read and
    /// the inner `Err` holds their size.
    async fn read(&self, id: &str, cap: u64) -> Result<Result<ItemBytes, u64>, ItemsError>;

    /// A new id (of an item or annotation), increasing.
    async fn new_id(&self) -> Result<String, ItemsError>;

    /// Take the lock every change of the dataset holds, shared by every handle on the dataset
    /// (and every node): held until the answer is dropped.
    async fn lock(&self) -> Result<Box<dyn Send>, ItemsError>;

    /// Write bytes aside, durably, before they become an item's.
    async fn stage(&self, data: Vec<u8>) -> Result<Box<dyn StagedBytes>, ItemsError>;

    /// Store `item` and its event in one atomic write: `created`/`updated` store the item
    /// (and its path); `deleted` removes it, its path and its annotations.
    async fn commit(&self, action: Action, item: &Item, cause: Option<&Cause>) -> Result<(), ItemsError>;

    /// Add annotations to item `id`, all or none.
    async fn add_annotations(&self, id: &str, annotations: &[Annotation]) -> Result<(), ItemsError>;

    /// Remove annotation `annotation` of item `id`; whether it was there.
    async fn remove_annotation(&self, id: &str, annotation: &str) -> Result<bool, ItemsError>;

    /// Remove item `id`'s bytes (absent is fine), once its deletion is durable.
    async fn remove_bytes(&self, id: &str) -> Result<(), ItemsError>;

    /// Wait until every change made so far is durable, then wake the consumers of item events.
    async fn durable(&self) -> Result<(), ItemsError>;
}

/// Bytes staged by [`DatasetStore::stage`]: installed as an item's, or thrown away when dropped.
#[async_trait::async_trait]
pub trait StagedBytes: Send {
    /// Make these the bytes of item `id`, replacing its former ones.
    async fn install(self: Box<Self>, id: &str) -> Result<(), ItemsError>;
}

/// An item's bytes being read: their size and a reader that gives them.
pub struct ItemBytes {
    /// How many bytes `reader` gives.
    pub size: u64,
    /// The bytes.
    pub reader: Pin<Box<dyn AsyncRead + Send>>,
}

/// How many bytes [`ItemBytes::chunks`] reads at a time.
const CHUNK: usize = 64 << 10;

impl ItemBytes {
    /// Read them all.
    pub async fn collect(self) -> Result<Vec<u8>, ItemsError> {
        let mut data = Vec::with_capacity(self.size as usize);
        // `take` also bounds a file that grew since its size was read.
        self.reader.take(self.size).read_to_end(&mut data).await.map_err(storage)?;
        Ok(data)
    }

    /// The bytes as a stream of chunks, for a response body.
    pub fn chunks(self) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
        let reader = self.reader.take(self.size);
        futures_util::stream::try_unfold(reader, |mut reader| async move {
            let mut chunk = bytes::BytesMut::with_capacity(CHUNK);
            match reader.read_buf(&mut chunk).await? {
                0 => Ok(None),
                _ => Ok(Some((chunk.freeze(), reader))),
            }
        })
    }
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
/// dataset's lock, so that concurrent changes are serialised and none is lost. An upload stages
/// its bytes before taking the lock; under the lock it only looks up the path, installs the
/// bytes and commits the record.
#[derive(Clone)]
pub struct Dataset {
    name: String,
    store: Arc<dyn DatasetStore>,
}

impl Dataset {
    /// Open dataset `name` of `app` in `backend` (created on first use).
    pub async fn new(backend: &dyn DatasetBackend, app: &str, name: &str) -> Result<Dataset, ItemsError> {
        Ok(Dataset { name: name.to_string(), store: backend.open(app, name).await? })
    }

    /// The dataset's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The item with this id.
    pub async fn get(&self, id: &str) -> Result<Item, ItemsError> {
        self.store.get(id).await?.ok_or_else(|| ItemsError::NoSuchItem(id.into()))
    }

    /// The item's bytes. An item deleted meanwhile is [`ItemsError::NoSuchItem`].
    pub async fn download(&self, id: &str) -> Result<Vec<u8>, ItemsError> {
        self.read(id, u64::MAX).await?.expect("no item holds more than u64::MAX bytes").collect().await
    }

    /// The item's bytes, unless they hold more than `cap`: then nothing is read and the inner
    /// `Err` holds their size.
    pub async fn download_at_most(&self, id: &str, cap: u64) -> Result<Result<Vec<u8>, u64>, ItemsError> {
        match self.read(id, cap).await? {
            Ok(bytes) => Ok(Ok(bytes.collect().await?)),
            Err(size) => Ok(Err(size)),
        }
    }

    /// A reader of the item's bytes, unless they hold more than `cap`: then nothing is read and
    /// the inner `Err` holds their size.
    pub async fn read(&self, id: &str, cap: u64) -> Result<Result<ItemBytes, u64>, ItemsError> {
        self.get(id).await?;
        self.store.read(id, cap).await
    }

    /// Run `change` while holding the dataset's lock. A change that has started finishes even if
    /// the caller stops waiting (it runs as a task of its own, the lock with it). Then wait until
    /// the change is durable.
    async fn change<T, F, Fut>(&self, change: F) -> Result<T, ItemsError>
    where
        T: Send + 'static,
        F: FnOnce(Dataset) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ItemsError>> + Send + 'static,
    {
        let held = self.store.lock().await?;
        let dataset = self.clone();
        let task = tokio::spawn(async move {
            let _held = held;
            change(dataset).await
        });
        let done = match task.await {
            Ok(done) => done?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(storage(format!("change cancelled by the runtime's shutdown: {e}"))),
        };
        self.store.durable().await?;
        Ok(done)
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
        let staged = self.store.stage(data).await?;
        let (name, cause) = (name.to_string(), cause.cloned());
        self.change(move |dataset| async move {
            let now = now_ms();
            let (item, action) = match dataset.store.id_at(&join(&dir, &name)).await? {
                Some(id) => {
                    let mut item = dataset.get(&id).await?;
                    item.mimetype = mimetype;
                    item.size = size;
                    item.metadata = metadata.unwrap_or(item.metadata);
                    item.updated_ms = now;
                    (item, Action::Updated)
                }
                None => {
                    let item = Item {
                        id: dataset.store.new_id().await?,
                        dataset: dataset.name.clone(),
                        name,
                        dir,
                        mimetype,
                        size,
                        metadata: metadata.unwrap_or_else(|| Value::Object(Default::default())),
                        modalities: Vec::new(),
                        created_ms: now,
                        updated_ms: now,
                    };
                    (item, Action::Created)
                }
            };
            staged.install(&item.id).await?;
            dataset.store.commit(action, &item, cause.as_ref()).await?;
            Ok(item)
        })
        .await
    }

    /// Replace the item's metadata (a JSON object).
    pub async fn update_metadata(&self, id: &str, metadata: &str, cause: Option<&Cause>) -> Result<Item, ItemsError> {
        let metadata = parse_metadata(metadata)?;
        let (id, cause) = (id.to_string(), cause.cloned());
        self.change(move |dataset| async move {
            let mut item = dataset.get(&id).await?;
            item.metadata = metadata;
            item.updated_ms = now_ms();
            dataset.store.commit(Action::Updated, &item, cause.as_ref()).await?;
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
        self.change(move |dataset| async move {
            dataset.get(&reference).await?;
            let mut item = dataset.get(&id).await?;
            if item.modalities.iter().any(|m| m.name == name && m.reference == reference) {
                return Ok(item); // Nothing changes: no `updated` event.
            }
            item.modalities.retain(|m| m.name != name);
            item.modalities.push(Modality { name, reference });
            item.updated_ms = now_ms();
            dataset.store.commit(Action::Updated, &item, cause.as_ref()).await?;
            Ok(item)
        })
        .await
    }

    /// Delete the item, its bytes and annotations; absent is fine. The bytes are removed once the
    /// deletion is durable, so a crash never leaves a record without its bytes.
    pub async fn delete(&self, id: &str, cause: Option<&Cause>) -> Result<(), ItemsError> {
        let (id, cause) = (id.to_string(), cause.cloned());
        let deleted = self
            .change(move |dataset| async move {
                let Some(item) = dataset.store.get(&id).await? else { return Ok(None) };
                dataset.store.commit(Action::Deleted, &item, cause.as_ref()).await?;
                Ok(Some(item.id))
            })
            .await?;
        match deleted {
            Some(id) => self.store.remove_bytes(&id).await,
            None => Ok(()),
        }
    }

    /// Items matching `filter`, at most `limit` (1 to 1000) after `cursor`, in id order.
    pub async fn list(&self, filter: &ItemFilter, cursor: Option<&str>, limit: u32) -> Result<ItemPage, ItemsError> {
        self.store.list(filter, cursor, (limit as usize).clamp(1, 1000)).await
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
        self.change(move |dataset| async move {
            dataset.get(&id).await?;
            let now = now_ms();
            let mut added = Vec::new();
            for (geometry, label, confidence, model) in new {
                let id = dataset.store.new_id().await?;
                added.push(Annotation { id, geometry, label, confidence, model, created_ms: now });
            }
            dataset.store.add_annotations(&id, &added).await?;
            Ok(added)
        })
        .await
    }

    /// The item's annotations, in the order they were added.
    pub async fn annotations(&self, id: &str) -> Result<Vec<Annotation>, ItemsError> {
        self.get(id).await?;
        self.store.annotations(id).await
    }

    /// Delete one annotation of an item.
    pub async fn delete_annotation(&self, id: &str, annotation: &str) -> Result<(), ItemsError> {
        let (id, annotation) = (id.to_string(), annotation.to_string());
        self.change(move |dataset| async move {
            match dataset.store.remove_annotation(&id, &annotation).await? {
                true => Ok(()),
                false => Err(ItemsError::NoSuchItem(format!("{id}/{annotation}"))),
            }
        })
        .await
    }
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
