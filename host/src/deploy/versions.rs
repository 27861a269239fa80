//! Where deployed versions live: in the host's own key-value store and bucket (namespace
//! [`NAMESPACE`], which no app can be named), so they survive restarts and, on a NATS cluster,
//! are shared by every node. Each node unpacks the bundles it runs into its data dir.
//!
//! Keys: `current/APP` (the version that should run), `version/APP/NNNNNNNNNNNN` (every version
//! deployed, numbered from 1, never reused), `next/APP` (the counter). Bundles: `APP/HEX.tar`.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::bundle::{self, Bundle, MAX_BUNDLE};
use super::{DeployError, Version};
use crate::Host;
use crate::storage::blobs::{self, Bucket};
use crate::storage::kv::KvStore;

/// The host's own namespace in the stores: not a valid app name, so no app can reach it.
pub const NAMESPACE: &str = ".host";

/// Deployed versions of every app.
pub(super) struct Versions {
    kv: Arc<dyn KvStore>,
    bundles: Arc<dyn Bucket>,
    /// This node's unpacked bundles.
    dir: PathBuf,
}

fn store(e: impl std::fmt::Display) -> DeployError {
    DeployError::Store(e.to_string())
}

impl Versions {
    pub(super) async fn open(host: &Host) -> Result<Versions, DeployError> {
        Ok(Versions {
            kv: host.kv().open(NAMESPACE, "deployments").await.map_err(store)?,
            bundles: host.blobs().open(NAMESPACE, "bundles").await.map_err(store)?,
            dir: host.data_dir().join("deployments"),
        })
    }

    /// Keep `bundle` and give it the next version number; it is not listed before [`Versions::commit`].
    pub(super) async fn stage(&self, bundle: &Bundle) -> Result<Version, DeployError> {
        let key = bundle_key(bundle.app(), bundle.digest());
        if !self.bundles.exists(&key).await.map_err(store)? {
            self.bundles.write(&key, blobs::from_bytes(bundle.bytes().to_vec())).await.map_err(store)?;
        }
        let number = self.kv.increment(&format!("next/{}", bundle.app()), 1).await.map_err(store)?;
        Ok(Version {
            app: bundle.app().into(),
            version: number as u64,
            digest: bundle.digest().into(),
            size: bundle.bytes().len() as u64,
            deployed_at_ms: crate::clock::now_ms(),
        })
    }

    /// List `version` and make it the one that should run.
    pub(super) async fn commit(&self, version: &Version) -> Result<(), DeployError> {
        let key = format!("version/{}/{:012}", version.app, version.version);
        self.kv.put(&key, encode(version)).await.map_err(store)?;
        self.set_current(version).await
    }

    /// Make `version` the one that should run.
    pub(super) async fn set_current(&self, version: &Version) -> Result<(), DeployError> {
        self.kv.put(&format!("current/{}", version.app), encode(version)).await.map_err(store)
    }

    /// The version of every deployed app that should run.
    pub(super) async fn current(&self) -> Result<Vec<Version>, DeployError> {
        self.values("current/").await
    }

    /// Every version of `app`, newest first.
    pub(super) async fn list(&self, app: &str) -> Result<Vec<Version>, DeployError> {
        let mut versions = self.values(&format!("version/{app}/")).await?;
        versions.reverse();
        Ok(versions)
    }

    /// Forget `app`: its `versions` (as [`Versions::list`] gave them), their bundles and its
    /// current version (its data stays).
    pub(super) async fn forget(&self, app: &str, versions: &[Version]) -> Result<(), DeployError> {
        self.kv.delete(&format!("current/{app}")).await.map_err(store)?;
        for version in versions {
            self.bundles.delete(&bundle_key(app, &version.digest)).await.map_err(store)?;
        }
        let keys = versions.iter().map(|v| format!("version/{app}/{:012}", v.version)).collect();
        self.kv.delete_many(keys).await.map_err(store)?;
        let unpacked = self.dir.join(app);
        if unpacked.exists() {
            std::fs::remove_dir_all(&unpacked).map_err(store)?;
        }
        Ok(())
    }

    /// The manifest of `version` unpacked on this node, fetched and checked first if needed.
    pub(super) async fn unpacked(&self, version: &Version) -> Result<PathBuf, DeployError> {
        let dir = self.dir.join(&version.app).join(hex(&version.digest));
        let manifest = dir.join(bundle::MANIFEST);
        if manifest.is_file() {
            return Ok(manifest);
        }
        let key = bundle_key(&version.app, &version.digest);
        let object = self.bundles.read(&key, 0, MAX_BUNDLE).await.map_err(store)?;
        let bundle = Bundle::from_bytes(blobs::read_to_vec(&key, object).await.map_err(store)?)?;
        if bundle.digest() != version.digest {
            return Err(DeployError::Store(format!(
                "bundle {key} has digest {}, expected {}",
                bundle.digest(),
                version.digest
            )));
        }
        // Unpacked beside and renamed into place, so a half-written folder is never used.
        let partial = self.dir.join(&version.app).join(format!(".partial-{}", hex(&version.digest)));
        let _ = std::fs::remove_dir_all(&partial);
        bundle.unpack(&partial)?;
        std::fs::rename(&partial, &dir).map_err(store)?;
        Ok(manifest)
    }

    /// Every value under `prefix`, in key order.
    async fn values(&self, prefix: &str) -> Result<Vec<Version>, DeployError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.kv.list(prefix, cursor.as_deref(), 1000).await.map_err(store)?;
            for key in &page.keys {
                if let Some(entry) = self.kv.get(key).await.map_err(store)? {
                    out.push(serde_json::from_slice(&entry.value).map_err(|e| store(format!("{key}: {e}")))?);
                }
            }
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }
}

fn encode(version: &Version) -> Bytes {
    Bytes::from(serde_json::to_vec(version).expect("a version serialises"))
}

/// The hex part of `sha256:HEX`.
fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn bundle_key(app: &str, digest: &str) -> String {
    format!("{app}/{}.tar", hex(digest))
}
