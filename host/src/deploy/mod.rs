//! Deploys: apps packed as [`Bundle`]s are checked, compiled and swapped into a running node
//! ([`Running`]) without a restart; every version is kept ([`Deployments::versions`]) and can be
//! rolled back to. The deployed set lives in the host's stores, so it survives a restart and,
//! on a NATS cluster, reaches every node ([`Deployments::sync`]).

pub mod bundle;
pub mod oci;
mod purge;
pub mod running;
mod versions;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use self::bundle::Bundle;
pub use self::purge::Purged;
pub use self::running::{Origin, Running, Served, Snapshot};
pub use self::versions::NAMESPACE;
use self::versions::Versions;
use crate::manifest::ManifestError;
use crate::{Error, Host};

/// How often a node compares what it runs with the deployed set.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// A deploy, rollback or removal failed; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The manifest to pack is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The app could not be packed.
    #[error("cannot pack the app: {0}")]
    Pack(String),
    /// Bytes received are not a usable bundle.
    #[error("bad bundle: {0}")]
    BadBundle(String),
    /// The bundle was sent for another app than it holds.
    #[error("the bundle holds app `{bundle}`, not `{path}`")]
    WrongApp {
        /// The app named in the request.
        path: String,
        /// The app in the bundle.
        bundle: String,
    },
    /// The app does not load (compile, models, variables, triggers).
    #[error("app `{app}` does not load: {error}")]
    Load {
        /// The app.
        app: String,
        /// Why.
        error: Box<Error>,
    },
    /// Two manifests define the same app.
    #[error("two manifests define the app `{0}`")]
    DuplicateApp(String),
    /// Two apps claim the same route.
    #[error("route `{route}` of app `{app}` is already served by app `{other}`")]
    RouteConflict {
        /// The route.
        route: String,
        /// The app that claims it second.
        app: String,
        /// The app that claimed it first.
        other: String,
    },
    /// The app is served from a manifest file, which a deploy does not replace.
    #[error(
        "app `{app}` is served from the manifest {}; deploys do not replace it (restart without `-f` for it)",
        path.display()
    )]
    FromFile {
        /// The app.
        app: String,
        /// Its manifest.
        path: PathBuf,
    },
    /// No version of the app is deployed.
    #[error("app `{0}` is not deployed")]
    NotDeployed(String),
    /// The version asked for does not exist.
    #[error("app `{app}` has no version {version}; it has {}", list(available))]
    UnknownVersion {
        /// The app.
        app: String,
        /// The version asked for.
        version: u64,
        /// The versions there are.
        available: Vec<u64>,
    },
    /// A rollback without a version, and no version before the current one.
    #[error("app `{0}` has no version before the current one to roll back to")]
    NothingToRollBack(String),
    /// The deployments store failed.
    #[error("deployments store: {0}")]
    Store(String),
}

fn list(versions: &[u64]) -> String {
    versions.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

impl DeployError {
    fn load(app: &str, error: Error) -> DeployError {
        DeployError::Load { app: app.into(), error: Box::new(error) }
    }
}

/// One deployed version of an app.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Version {
    /// The app.
    pub app: String,
    /// Its number, from 1; never reused.
    pub version: u64,
    /// `sha256:HEX` of the bundle.
    pub digest: String,
    /// The bundle's size in bytes.
    pub size: u64,
    /// When it was deployed, in ms since the Unix epoch.
    pub deployed_at_ms: u64,
}

/// What a deploy did.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The version now running.
    pub version: Version,
    /// The bundle was the running version already: nothing changed.
    pub unchanged: bool,
}

/// Deploys, rollbacks and removals on a node, and its part in keeping every node on the
/// deployed set.
pub struct Deployments {
    host: Host,
    running: Arc<Running>,
    versions: Versions,
    /// One change at a time on this node.
    changing: tokio::sync::Mutex<()>,
    /// Versions that failed to start here, reported once.
    failed: Mutex<HashSet<(String, u64)>>,
}

impl Deployments {
    /// The deployments of `host`'s stores, for the apps of `running`.
    pub async fn open(host: &Host, running: Arc<Running>) -> Result<Deployments, DeployError> {
        Ok(Deployments {
            host: host.clone(),
            versions: Versions::open(host).await?,
            running,
            changing: tokio::sync::Mutex::new(()),
            failed: Mutex::new(HashSet::new()),
        })
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The apps this node runs.
    pub fn running(&self) -> &Arc<Running> {
        &self.running
    }

    /// Check, compile and start `bundle` as the next version of its app, then record it. A
    /// bundle that does not load changes nothing.
    pub async fn deploy(&self, bundle: &Bundle) -> Result<Deployed, DeployError> {
        let _changing = self.changing.lock().await;
        if let Some(Served { origin: Origin::Deployed(now), .. }) = self.running.get(bundle.app())
            && now.digest == bundle.digest()
        {
            return Ok(Deployed { version: now, unchanged: true });
        }
        let version = self.versions.stage(bundle).await?;
        self.activate(&version).await?;
        self.versions.commit(&version).await?;
        tracing::info!(app = %version.app, version = version.version, digest = %version.digest, "deployed");
        Ok(Deployed { version, unchanged: false })
    }

    /// Run `version` of `app` again (without one: the version before the running one).
    pub async fn rollback(&self, app: &str, version: Option<u64>) -> Result<Version, DeployError> {
        let _changing = self.changing.lock().await;
        let versions = self.versions.list(app).await?;
        let current = match self.running.get(app) {
            Some(Served { origin: Origin::Deployed(v), .. }) => v,
            Some(Served { origin: Origin::File(path), .. }) => {
                return Err(DeployError::FromFile { app: app.into(), path });
            }
            None if versions.is_empty() => return Err(DeployError::NotDeployed(app.into())),
            None => versions[0].clone(),
        };
        let target = match version {
            Some(wanted) => {
                versions.iter().find(|v| v.version == wanted).cloned().ok_or_else(|| DeployError::UnknownVersion {
                    app: app.into(),
                    version: wanted,
                    available: versions.iter().map(|v| v.version).rev().collect(),
                })?
            }
            None => versions
                .iter()
                .find(|v| v.version < current.version)
                .cloned()
                .ok_or_else(|| DeployError::NothingToRollBack(app.into()))?,
        };
        self.activate(&target).await?;
        self.versions.set_current(&target).await?;
        tracing::info!(app, version = target.version, "rolled back");
        Ok(target)
    }

    /// Stop the deployed app `app` and forget its versions. Its data stays, unless `purge`:
    /// then the stores, buckets and datasets its manifest grants are emptied (what was deleted
    /// is returned).
    pub async fn remove(&self, app: &str, purge: bool) -> Result<Option<Purged>, DeployError> {
        let _changing = self.changing.lock().await;
        let versions = self.versions.list(app).await?;
        let manifest = match self.running.get(app) {
            Some(Served { origin: Origin::File(path), .. }) => {
                return Err(DeployError::FromFile { app: app.into(), path });
            }
            Some(served) => served.app.manifest().clone(),
            None => match versions.first() {
                Some(newest) => crate::manifest::Manifest::load(self.versions.unpacked(newest).await?)?,
                None => return Err(DeployError::NotDeployed(app.into())),
            },
        };
        self.running.remove(app).await?;
        self.versions.forget(app, &versions).await?;
        let purged = match purge {
            true => Some(purge::purge(&self.host, &manifest).await?),
            false => None,
        };
        tracing::info!(app, ?purged, "removed");
        Ok(purged)
    }

    /// Every version of `app`, newest first, and the one running on this node.
    pub async fn versions(&self, app: &str) -> Result<(Vec<Version>, Option<Version>), DeployError> {
        let versions = self.versions.list(app).await?;
        let running = match self.running.get(app) {
            Some(Served { origin: Origin::Deployed(v), .. }) => Some(v),
            _ => None,
        };
        if versions.is_empty() && running.is_none() {
            return Err(DeployError::NotDeployed(app.into()));
        }
        Ok((versions, running))
    }

    /// Bring this node to the deployed set: start the current version of every deployed app
    /// that runs another one (or none), stop deployed apps no longer deployed. A version that
    /// fails to start is reported once and the node keeps what it runs.
    pub async fn sync(&self) -> Result<(), DeployError> {
        let _changing = self.changing.lock().await;
        let current = self.versions.current().await?;
        let snapshot = self.running.snapshot();
        for version in &current {
            match snapshot.apps.get(&version.app).map(|s| &s.origin) {
                Some(Origin::Deployed(running)) if running.digest == version.digest => continue,
                Some(Origin::File(path)) => {
                    self.report_once(version, &format!("the app is served from {}", path.display()));
                    continue;
                }
                _ => {}
            }
            if self.failed.lock().expect("lock").contains(&(version.app.clone(), version.version)) {
                continue;
            }
            match self.activate(version).await {
                Ok(()) => tracing::info!(app = %version.app, version = version.version, "now running"),
                Err(error) => self.report_once(version, &error.to_string()),
            }
        }
        for (name, served) in &snapshot.apps {
            if matches!(served.origin, Origin::Deployed(_)) && !current.iter().any(|v| &v.app == name) {
                self.running.remove(name).await?;
                tracing::info!(app = %name, "removed");
            }
        }
        Ok(())
    }

    /// Sync every [`SYNC_EVERY`] until stopped (on the current tokio runtime).
    pub fn keep_synced(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let deployments = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = deployments.sync().await {
                    tracing::warn!(%error, "cannot sync the deployed apps");
                }
                tokio::time::sleep(SYNC_EVERY).await;
            }
        })
    }

    fn report_once(&self, version: &Version, why: &str) {
        if self.failed.lock().expect("lock").insert((version.app.clone(), version.version)) {
            tracing::error!(app = %version.app, version = version.version, "deployed version not started: {why}");
        }
    }

    /// Unpack (if needed), compile and swap in `version`.
    async fn activate(&self, version: &Version) -> Result<(), DeployError> {
        let manifest = self.versions.unpacked(version).await?;
        let host = self.host.clone();
        let app = tokio::task::spawn_blocking(move || host.load(manifest))
            .await
            .map_err(|e| DeployError::Store(format!("loading stopped: {e}")))?
            .map_err(|e| DeployError::load(&version.app, e))?;
        self.running.swap(app, Origin::Deployed(version.clone())).await
    }
}
