//! `host serve --watch`: when an app's manifest, its components or its `build-inputs` change,
//! run its build commands, load it again and swap it in (as a deploy does). A build or load that
//! fails is reported and the running version keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::build::Stamp;
use crate::deploy::{Origin, Running};
use crate::manifest::Manifest;
use crate::{Error, Host};

/// How often the files are looked at.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);

/// What is watched of one manifest: the manifest, and each function's component and build
/// inputs. A manifest that does not parse is watched alone, so that fixing it reloads the app.
fn stamp(manifest: &Path) -> Result<Stamp, PathBuf> {
    let mut paths = vec![manifest.to_path_buf()];
    if let Ok(parsed) = Manifest::load(manifest) {
        for spec in parsed.functions.values() {
            paths.push(spec.source.clone());
            paths.extend(spec.build_inputs.iter().cloned());
        }
    }
    Stamp::of(&paths)
}

/// Build and load the app of `manifest` (blocking: builds and compiles).
fn rebuild(host: &Host, manifest: &Path) -> Result<crate::App, Error> {
    crate::build::build(&Manifest::load(manifest)?)?;
    host.load(manifest)
}

/// Watch the apps of `manifests` (already running in `running`) until the task is dropped.
pub async fn watch(host: Host, running: Arc<Running>, manifests: Vec<PathBuf>) {
    let mut stamps: Vec<_> = manifests.iter().map(|m| stamp(m)).collect();
    let names: Vec<Option<String>> =
        manifests.iter().map(|m| Manifest::load(m).ok().map(|parsed| parsed.app)).collect();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        for (i, manifest) in manifests.iter().enumerate() {
            if stamp(manifest) == stamps[i] {
                continue;
            }
            let started = Instant::now();
            let (host, path) = (host.clone(), manifest.clone());
            let loaded = tokio::task::spawn_blocking(move || rebuild(&host, &path)).await;
            // Taken after the build, whose outputs are not a change of their own.
            stamps[i] = stamp(manifest);
            let outcome = match loaded {
                Ok(Ok(app)) if Some(app.name()) != names[i].as_deref() => Err(format!(
                    "the app's name changed from `{}` to `{}`; restart to rename an app",
                    names[i].as_deref().unwrap_or("?"),
                    app.name()
                )),
                Ok(Ok(app)) => running.swap(app, Origin::File(manifest.clone())).await.map_err(|e| e.to_string()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match outcome {
                Ok(()) => tracing::info!(
                    manifest = %manifest.display(),
                    "reloaded in {} ms",
                    started.elapsed().as_millis()
                ),
                Err(error) => tracing::error!(
                    manifest = %manifest.display(),
                    "not reloaded, the running version keeps serving: {error}"
                ),
            }
        }
    }
}
