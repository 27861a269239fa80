//! `DELETE /v1/apps/NAME?purge=true`: besides the versions, delete the data of the stores,
//! buckets and datasets the app's manifest grants. Queue messages, topic events and execution
//! records are not deleted: they expire (dead letters aside) by the retention rules.

use super::DeployError;
use crate::Host;
use crate::manifest::Manifest;
use crate::storage::blobs::MAX_PAGE;
use crate::storage::datasets::ItemFilter;
use crate::storage::kv::PAGE;

fn failed(what: &str, name: &str, error: impl std::fmt::Display) -> DeployError {
    DeployError::Store(format!("purging {what} `{name}`: {error}"))
}

/// What was deleted, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    /// Key-value entries.
    pub keys: u64,
    /// Bucket objects.
    pub objects: u64,
    /// Dataset items.
    pub items: u64,
}

/// Delete the data `manifest` grants its app.
pub(super) async fn purge(host: &Host, manifest: &Manifest) -> Result<Purged, DeployError> {
    let app = manifest.app.as_str();
    let mut purged = Purged::default();
    for name in manifest.granted(|g| &g.kv) {
        let store = host.kv().open(app, &name).await.map_err(|e| failed("store", &name, e))?;
        loop {
            let page = store.list("", None, PAGE).await.map_err(|e| failed("store", &name, e))?;
            if page.keys.is_empty() {
                break;
            }
            purged.keys += page.keys.len() as u64;
            store.delete_many(page.keys).await.map_err(|e| failed("store", &name, e))?;
        }
    }
    for name in manifest.granted(|g| &g.buckets) {
        let bucket = host.blobs().open(app, &name).await.map_err(|e| failed("bucket", &name, e))?;
        loop {
            let page = bucket.list("", None, MAX_PAGE as u32).await.map_err(|e| failed("bucket", &name, e))?;
            if page.keys.is_empty() {
                break;
            }
            for key in &page.keys {
                bucket.delete(key).await.map_err(|e| failed("bucket", &name, e))?;
                purged.objects += 1;
            }
        }
    }
    for name in manifest.granted(|g| &g.datasets) {
        let dataset = host.dataset(app, &name).await.map_err(|e| failed("dataset", &name, e))?;
        loop {
            let page =
                dataset.list(&ItemFilter::default(), None, 1000).await.map_err(|e| failed("dataset", &name, e))?;
            if page.items.is_empty() {
                break;
            }
            for item in &page.items {
                dataset.delete(&item.id, None).await.map_err(|e| failed("dataset", &name, e))?;
                purged.items += 1;
            }
        }
    }
    Ok(purged)
}
