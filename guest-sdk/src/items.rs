//! Datasets of items: files with a name, a folder, a mimetype and JSON metadata, with annotations
//! and modalities (`host:api/items`).
//!
//! ```ignore
//! use guest_sdk::items::{AnnotationInput, Dataset, Filter, Geometry};
//!
//! let photos = Dataset::open("photos")?;
//! let item = photos.upload("/", "cat.png", None, &png_bytes, Some(r#"{"source":"camera"}"#))?;
//! photos.add_annotations(&item.id, &[AnnotationInput {
//!     geometry: Geometry::Classification,
//!     label: "cat".into(),
//!     confidence: Some(0.9),
//!     model: Some("my-model".into()),
//! }])?;
//! let pngs = photos.list(&Filter { mimetype: Some("image/png".into()), ..Filter::default() })?;
//! ```

use std::fmt;

use crate::bindings::host::api::items;

/// The WIT records and variants, under their WIT names.
pub use items::{Annotation, AnnotationInput, Filter, Geometry, Item, ItemPage, Modality, Point, Rect};

/// Items asked for per page when listing.
const PAGE_SIZE: u32 = 1000;

/// Why an items operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The function's manifest does not grant this dataset.
    AccessDenied,
    /// There is no item (or annotation) with this id.
    NoSuchItem,
    /// An argument breaks the rules; the text says which.
    Invalid(String),
    /// Any other failure (I/O); the text says what happened.
    Other(String),
}

impl From<items::Error> for Error {
    fn from(error: items::Error) -> Self {
        match error {
            items::Error::AccessDenied => Self::AccessDenied,
            items::Error::NoSuchItem => Self::NoSuchItem,
            items::Error::Invalid(reason) => Self::Invalid(reason),
            items::Error::Other(message) => Self::Other(message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AccessDenied => f.write_str("access to the dataset denied"),
            Self::NoSuchItem => f.write_str("no such item"),
            Self::Invalid(reason) => write!(f, "invalid items request: {reason}"),
            Self::Other(message) => write!(f, "dataset error: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// The result of an items operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every item, with no condition; set fields to narrow it down.
impl Default for Filter {
    fn default() -> Self {
        Self { dir: None, mimetype: None, metadata: Vec::new() }
    }
}

/// An open dataset.
#[derive(Debug)]
pub struct Dataset {
    dataset: items::Dataset,
}

impl Dataset {
    /// Opens a dataset the function has been granted; the host creates it on first use.
    pub fn open(name: &str) -> Result<Self> {
        Ok(Self { dataset: items::open(name)? })
    }

    /// The item with this id.
    pub fn get(&self, id: &str) -> Result<Item> {
        Ok(self.dataset.get(id)?)
    }

    /// The item's bytes.
    pub fn download(&self, id: &str) -> Result<Vec<u8>> {
        Ok(self.dataset.download(id)?)
    }

    /// Stores `data` as `name` in folder `dir` (`/` or `/a/b`). `mimetype` defaults to one guessed
    /// from the name; `metadata` is a JSON object as text (default `{}`). An item already at that
    /// folder and name gets the new bytes, keeping its id, links and annotations, and its metadata
    /// unless `metadata` is given.
    pub fn upload(
        &self,
        dir: &str,
        name: &str,
        mimetype: Option<&str>,
        data: &[u8],
        metadata: Option<&str>,
    ) -> Result<Item> {
        Ok(self.dataset.upload(dir, name, mimetype, data, metadata)?)
    }

    /// Replaces the item's metadata with `metadata`, a JSON object as text.
    pub fn update_metadata(&self, id: &str, metadata: &str) -> Result<Item> {
        Ok(self.dataset.update_metadata(id, metadata)?)
    }

    /// Every item matching `filter`, in id (creation) order.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Item>> {
        crate::collect_pages(|cursor| {
            let page = self.dataset.list(filter, cursor, PAGE_SIZE)?;
            Ok((page.items, page.cursor))
        })
    }

    /// Deletes the item, its bytes and its annotations; deleting a missing item is not an error.
    pub fn delete(&self, id: &str) -> Result<()> {
        Ok(self.dataset.delete(id)?)
    }

    /// Adds annotations to the item, all or none; returns them with their ids.
    pub fn add_annotations(&self, id: &str, annotations: &[AnnotationInput]) -> Result<Vec<Annotation>> {
        Ok(self.dataset.add_annotations(id, annotations)?)
    }

    /// The item's annotations, in the order they were added.
    pub fn annotations(&self, id: &str) -> Result<Vec<Annotation>> {
        Ok(self.dataset.annotations(id)?)
    }

    /// Deletes the item's annotation `annotation` (an annotation id).
    pub fn delete_annotation(&self, id: &str, annotation: &str) -> Result<()> {
        Ok(self.dataset.delete_annotation(id, annotation)?)
    }

    /// Links the item to the item `target` under `name` (e.g. `gray`), replacing a link of that
    /// name; returns the updated item.
    pub fn link_modality(&self, id: &str, name: &str, target: &str) -> Result<Item> {
        Ok(self.dataset.link_modality(id, name, target)?)
    }
}
