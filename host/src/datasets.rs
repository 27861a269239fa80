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

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sled::Transactional;

use crate::store::Store;

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

/// A named link from an item to another item of the same dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Modality {
    /// The link's name, e.g. `gray`.
    pub name: String,
    /// The linked item's id.
    #[serde(rename = "ref")]
    pub reference: String,
}

/// One item's description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Item {
    /// Unique in the dataset; ids sort in creation order.
    pub id: String,
    /// The dataset's name.
    pub dataset: String,
    /// The file name.
    pub name: String,
    /// The folder, `/` or `/a/b`.
    pub dir: String,
    /// The mimetype.
    pub mimetype: String,
    /// Size of the bytes.
    pub size: u64,
    /// User metadata, a JSON object.
    pub metadata: Value,
    /// Links to other items.
    pub modalities: Vec<Modality>,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last change of bytes, metadata or links, ms since the Unix epoch.
    pub updated_ms: u64,
}

impl Item {
    /// The item as the WIT `item` record takes it in JSON (metadata as text), for calls.
    pub fn to_wit_json(&self) -> Value {
        let mut value = serde_json::to_value(self).expect("item serializes");
        value["metadata"] = Value::String(self.metadata.to_string());
        value
    }

    /// `dir/name`, the item's unique path in its dataset.
    pub fn path(&self) -> String {
        join(&self.dir, &self.name)
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" { format!("/{name}") } else { format!("{dir}/{name}") }
}

/// What to draw on an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Geometry {
    /// A rectangle: left, top, right, bottom in pixels.
    Box {
        /// Left edge.
        left: f64,
        /// Top edge.
        top: f64,
        /// Right edge.
        right: f64,
        /// Bottom edge.
        bottom: f64,
    },
    /// A point.
    Point {
        /// From the left.
        x: f64,
        /// From the top.
        y: f64,
    },
    /// A closed polygon.
    Polygon(Vec<[f64; 2]>),
    /// The whole item.
    Classification,
}

/// An annotation on an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Annotation {
    /// Unique within the item.
    pub id: String,
    /// What it marks.
    pub geometry: Geometry,
    /// The label.
    pub label: String,
    /// 0 to 1, when a model produced it.
    pub confidence: Option<f32>,
    /// The model that produced it.
    pub model: Option<String>,
    /// When it was added, ms since the Unix epoch.
    pub created_ms: u64,
}

/// What happened to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Uploaded under a new path.
    Created,
    /// Bytes, metadata or links changed.
    Updated,
    /// Deleted.
    Deleted,
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Action, String> {
        match s {
            "created" => Ok(Action::Created),
            "updated" => Ok(Action::Updated),
            "deleted" => Ok(Action::Deleted),
            _ => Err(format!("invalid action `{s}`: expected `created`, `updated` or `deleted`")),
        }
    }
}

/// The triggered execution that made a change. Such changes are recorded as events but fire no
/// triggers, so triggered functions can never loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// The trigger.
    pub trigger: String,
    /// The execution's id.
    pub execution: String,
}

/// A durable record of a change, consumed by item triggers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemEvent {
    /// Position in the app's event log.
    pub seq: u64,
    /// What happened.
    pub action: Action,
    /// The item after the change (before it, for `deleted`).
    pub item: Item,
    /// Set when an execution made the change.
    pub cause: Option<Cause>,
}

/// Which items to list or trigger on; every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemFilter {
    /// The item's folder is this one or below it.
    #[serde(default)]
    pub dir: Option<String>,
    /// `image/png`, `image/*` or `*`.
    #[serde(default)]
    pub mimetype: Option<String>,
    /// Metadata fields (dotted paths) that must equal these JSON values.
    #[serde(default)]
    pub metadata: Vec<(String, Value)>,
}

impl ItemFilter {
    /// Whether `item` passes.
    pub fn matches(&self, item: &Item) -> bool {
        let dir_ok = self.dir.as_deref().is_none_or(|d| {
            let d = d.trim_end_matches('/');
            d.is_empty() || item.dir == d || item.dir.strip_prefix(d).is_some_and(|rest| rest.starts_with('/'))
        });
        let mime_ok = self.mimetype.as_deref().is_none_or(|p| crate::mimetype::matches(p, &item.mimetype));
        let meta_ok = self.metadata.iter().all(|(path, want)| {
            path.split('.').try_fold(&item.metadata, |v, key| v.get(key)).is_some_and(|v| v == want)
        });
        dir_ok && mime_ok && meta_ok
    }
}

/// One page of items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemPage {
    /// The items, in id order.
    pub items: Vec<Item>,
    /// Pass back for the next page; none on the last.
    pub cursor: Option<String>,
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

fn parse_metadata(text: Option<&str>) -> Result<Value, ItemsError> {
    match text {
        None => Ok(Value::Object(Default::default())),
        Some(text) => match serde_json::from_str(text) {
            Ok(value @ Value::Object(_)) => Ok(value),
            _ => Err(ItemsError::Invalid(format!(
                "metadata: expected a JSON object, got {:?}",
                text.chars().take(40).collect::<String>()
            ))),
        },
    }
}

/// Items of one dataset of one app.
#[derive(Clone)]
pub struct Dataset {
    name: String,
    items: sled::Tree,
    paths: sled::Tree,
    annotations: sled::Tree,
    events: sled::Tree,
    files: PathBuf,
    store: Arc<Store>,
}

impl Dataset {
    /// Open dataset `name` of `app` (created on first use); bytes live under `items_dir`.
    pub fn open(store: &Arc<Store>, items_dir: &Path, app: &str, name: &str) -> Result<Dataset, ItemsError> {
        let files = items_dir.join(app).join(name);
        std::fs::create_dir_all(&files).map_err(storage)?;
        Ok(Dataset {
            name: name.to_string(),
            items: store.tree(&format!("items/{app}/{name}")).map_err(storage)?,
            paths: store.tree(&format!("item-paths/{app}/{name}")).map_err(storage)?,
            annotations: store.tree(&format!("annotations/{app}/{name}")).map_err(storage)?,
            events: events_tree(store, app).map_err(storage)?,
            files,
            store: store.clone(),
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

    /// The item's bytes.
    pub fn download(&self, id: &str) -> Result<Vec<u8>, ItemsError> {
        Ok(self.download_at_most(id, u64::MAX)?.expect("no file holds more than u64::MAX bytes"))
    }

    /// The item's bytes, unless its file holds more than `cap`: then nothing is read and the
    /// inner `Err` holds its size.
    pub fn download_at_most(&self, id: &str, cap: u64) -> Result<Result<Vec<u8>, u64>, ItemsError> {
        use std::io::Read;
        self.get(id)?;
        let file = std::fs::File::open(self.file(id)?).map_err(storage)?;
        let size = file.metadata().map_err(storage)?.len();
        if size > cap {
            return Ok(Err(size));
        }
        let mut data = Vec::with_capacity(size as usize);
        // `take` also bounds a file that grew since its size was read.
        file.take(size).read_to_end(&mut data).map_err(storage)?;
        Ok(Ok(data))
    }

    /// Store the item's event and its new state in one transaction, then wait until it is on disk.
    async fn commit(
        &self,
        action: Action,
        item: &Item,
        cause: Option<&Cause>,
        old_path: Option<&str>,
    ) -> Result<(), ItemsError> {
        let seq = self.store.next_id().map_err(storage)?;
        let event = ItemEvent { seq, action, item: item.clone(), cause: cause.cloned() };
        let event = serde_json::to_vec(&event).map_err(storage)?;
        let record = serde_json::to_vec(item).map_err(storage)?;
        let path = item.path();
        (&self.items, &self.paths, &self.events)
            .transaction(|(items, paths, events)| {
                if action == Action::Deleted {
                    items.remove(item.id.as_bytes())?;
                    paths.remove(path.as_bytes())?;
                } else {
                    items.insert(item.id.as_bytes(), record.as_slice())?;
                    if let Some(old) = old_path.filter(|old| *old != path) {
                        paths.remove(old.as_bytes())?;
                    }
                    paths.insert(path.as_bytes(), item.id.as_bytes())?;
                }
                events.insert(&seq.to_be_bytes(), event.as_slice())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| storage(format!("{e:?}")))?;
        self.store.durable().await.map_err(ItemsError::Storage)?;
        self.store.new_events.notify_waiters();
        Ok(())
    }

    /// Store `data` as `dir/name`: replaces the item at that path (`updated`) or makes a new one
    /// (`created`).
    pub async fn upload(
        &self,
        dir: &str,
        name: &str,
        mimetype: Option<&str>,
        data: &[u8],
        metadata: Option<&str>,
        cause: Option<&Cause>,
    ) -> Result<Item, ItemsError> {
        let dir = validate_dir(dir)?;
        validate_name(name)?;
        if data.len() > MAX_ITEM_SIZE {
            return Err(ItemsError::Invalid(format!("data: {} bytes, the limit is {MAX_ITEM_SIZE}", data.len())));
        }
        let mimetype = match mimetype {
            Some(m) if m.contains('/') && m.len() <= 255 && !m.contains(char::is_whitespace) => m.to_ascii_lowercase(),
            Some(m) => return Err(ItemsError::Invalid(format!("mimetype {m:?}: expected `type/subtype`"))),
            None => crate::mimetype::guess(name).to_string(),
        };
        let metadata = parse_metadata(metadata)?;
        let now = now_ms();
        let existing = self.paths.get(join(&dir, name).as_bytes()).map_err(storage)?;
        let (item, action) = match existing {
            Some(id) => {
                let mut item = self.get(&String::from_utf8_lossy(&id))?;
                item.mimetype = mimetype;
                item.size = data.len() as u64;
                item.metadata = metadata;
                item.updated_ms = now;
                (item, Action::Updated)
            }
            None => {
                let id = format!("{:016x}", self.store.next_id().map_err(storage)?);
                let item = Item {
                    id,
                    dataset: self.name.clone(),
                    name: name.to_string(),
                    dir,
                    mimetype,
                    size: data.len() as u64,
                    metadata,
                    modalities: Vec::new(),
                    created_ms: now,
                    updated_ms: now,
                };
                (item, Action::Created)
            }
        };
        write_synced(&self.files, &item.id, data).map_err(storage)?;
        self.commit(action, &item, cause, None).await?;
        Ok(item)
    }

    /// Replace the item's metadata (a JSON object).
    pub async fn update_metadata(&self, id: &str, metadata: &str, cause: Option<&Cause>) -> Result<Item, ItemsError> {
        let metadata = parse_metadata(Some(metadata))?;
        let mut item = self.get(id)?;
        item.metadata = metadata;
        item.updated_ms = now_ms();
        self.commit(Action::Updated, &item, cause, None).await?;
        Ok(item)
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
        self.get(reference)?;
        let mut item = self.get(id)?;
        if item.modalities.iter().any(|m| m.name == name && m.reference == reference) {
            return Ok(item); // Nothing changes: no `updated` event.
        }
        item.modalities.retain(|m| m.name != name);
        item.modalities.push(Modality { name: name.to_string(), reference: reference.to_string() });
        item.updated_ms = now_ms();
        self.commit(Action::Updated, &item, cause, None).await?;
        Ok(item)
    }

    /// Delete the item, its bytes and annotations; absent is fine.
    pub async fn delete(&self, id: &str, cause: Option<&Cause>) -> Result<(), ItemsError> {
        let item = match self.get(id) {
            Ok(item) => item,
            Err(ItemsError::NoSuchItem(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.commit(Action::Deleted, &item, cause, None).await?;
        for key in self.annotations.scan_prefix(format!("{id}/")).keys() {
            self.annotations.remove(key.map_err(storage)?).map_err(storage)?;
        }
        match std::fs::remove_file(self.file(id)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(storage(e)),
            _ => Ok(()),
        }
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
        self.get(id)?;
        let now = now_ms();
        let mut batch = sled::Batch::default();
        let mut added = Vec::new();
        for (geometry, label, confidence, model) in new {
            if confidence.is_some_and(|c| !(0.0..=1.0).contains(&c)) {
                return Err(ItemsError::Invalid(format!("confidence {confidence:?} of `{label}`: expected 0 to 1")));
            }
            let annotation = Annotation {
                id: format!("{:016x}", self.store.next_id().map_err(storage)?),
                geometry,
                label,
                confidence,
                model,
                created_ms: now,
            };
            batch.insert(
                format!("{id}/{}", annotation.id).as_bytes(),
                serde_json::to_vec(&annotation).map_err(storage)?,
            );
            added.push(annotation);
        }
        self.annotations.apply_batch(batch).map_err(storage)?;
        self.store.durable().await.map_err(ItemsError::Storage)?;
        Ok(added)
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
        match self.annotations.remove(format!("{id}/{annotation}").as_bytes()).map_err(storage)? {
            Some(_) => self.store.durable().await.map_err(ItemsError::Storage),
            None => Err(ItemsError::NoSuchItem(format!("{id}/{annotation}"))),
        }
    }
}

/// The event log of `app`.
pub(crate) fn events_tree(store: &Store, app: &str) -> Result<sled::Tree, sled::Error> {
    store.tree(&format!("events/{app}"))
}

/// Write `data` to `dir/name` through a temporary file, synced, then renamed.
fn write_synced(dir: &Path, name: &str, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_data()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(dir: &str, mimetype: &str, metadata: Value) -> Item {
        Item {
            id: "1".into(),
            dataset: "d".into(),
            name: "x".into(),
            dir: dir.into(),
            mimetype: mimetype.into(),
            size: 0,
            metadata,
            modalities: vec![],
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn filters_match_dir_subtrees_mimetype_patterns_and_metadata() {
        let photo = item("/photos/2024", "image/png", json!({ "camera": { "make": "X" }, "n": 3 }));
        let f = |dir: Option<&str>, mime: Option<&str>, meta: Vec<(&str, Value)>| ItemFilter {
            dir: dir.map(Into::into),
            mimetype: mime.map(Into::into),
            metadata: meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        };
        assert!(f(None, None, vec![]).matches(&photo));
        assert!(
            f(Some("/photos"), Some("image/*"), vec![("camera.make", json!("X")), ("n", json!(3))]).matches(&photo)
        );
        assert!(f(Some("/"), None, vec![]).matches(&photo));
        assert!(!f(Some("/photo"), None, vec![]).matches(&photo));
        assert!(!f(None, Some("video/*"), vec![]).matches(&photo));
        assert!(!f(None, None, vec![("camera.make", json!("Y"))]).matches(&photo));
        assert!(!f(None, None, vec![("missing", Value::Null)]).matches(&photo));
    }

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
