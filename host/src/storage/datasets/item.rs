//! The records of a dataset: items, their links and annotations, item events and filters.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// `dir/name`.
pub(super) fn join(dir: &str, name: &str) -> String {
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
}
