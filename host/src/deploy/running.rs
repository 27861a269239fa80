//! The apps a node runs now, each with its triggers. A swap replaces one app atomically: calls
//! that already hold the old app finish on it, new calls get the new one, and its triggers are
//! stopped and the new ones started. Event logs keep what arrives meanwhile, and an event is
//! accepted only once its execution is queued, so nothing is lost or doubled.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::{DeployError, Version};
use crate::triggers::Triggers;
use crate::{App, Host};

/// Where a running app came from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A manifest given to `host serve -f`.
    File(PathBuf),
    /// A deployed version.
    Deployed(Version),
}

/// One running app.
#[derive(Clone)]
pub struct Served {
    /// The loaded app.
    pub app: Arc<App>,
    /// Where it came from.
    pub origin: Origin,
}

/// The running apps at one moment; `generation` grows with every change.
#[derive(Clone, Default)]
pub struct Snapshot {
    /// Counts changes, so that views built from a snapshot know when to rebuild.
    pub generation: u64,
    /// By name.
    pub apps: BTreeMap<String, Served>,
}

/// The apps of a node and their triggers.
pub struct Running {
    host: Host,
    now: RwLock<Arc<Snapshot>>,
    /// Also what serialises changes.
    triggers: tokio::sync::Mutex<HashMap<String, Triggers>>,
}

impl Running {
    /// The apps of `host serve -f`, checked: unique names, no route claimed by two apps. Their
    /// triggers wait for [`Running::start`].
    pub fn new(host: &Host, apps: Vec<App>) -> Result<Running, DeployError> {
        let mut now = Snapshot::default();
        for app in apps {
            let name = app.name().to_string();
            if now.apps.contains_key(&name) {
                return Err(DeployError::DuplicateApp(name));
            }
            check_routes(&now, &app)?;
            let origin = Origin::File(app.manifest().path.clone());
            now.apps.insert(name, Served { app: Arc::new(app), origin });
        }
        Ok(Running {
            host: host.clone(),
            now: RwLock::new(Arc::new(now)),
            triggers: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Start the triggers of every app (on the current tokio runtime).
    pub async fn start(&self) -> Result<(), DeployError> {
        let mut triggers = self.triggers.lock().await;
        for (name, served) in &self.snapshot().apps {
            let armed = Triggers::arm(&self.host, &[&served.app]).map_err(|e| DeployError::load(name, e))?;
            triggers.insert(name.clone(), armed.start());
        }
        Ok(())
    }

    /// The apps now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.now.read().expect("lock").clone()
    }

    /// The app `name`, if it runs.
    pub fn get(&self, name: &str) -> Option<Served> {
        self.snapshot().apps.get(name).cloned()
    }

    /// Put `app` in place of the app of its name (or add it). Refused, changing nothing, when its
    /// routes clash with another app's, its triggers do not check, or a deployed version would
    /// replace an app served from a file.
    pub async fn swap(&self, app: App, origin: Origin) -> Result<(), DeployError> {
        let mut triggers = self.triggers.lock().await;
        let name = app.name().to_string();
        let now = self.snapshot();
        if let (Some(Served { origin: Origin::File(path), .. }), Origin::Deployed(_)) = (now.apps.get(&name), &origin) {
            return Err(DeployError::FromFile { app: name, path: path.clone() });
        }
        let mut next = (*now).clone();
        next.apps.remove(&name);
        check_routes(&next, &app)?;
        let armed = Triggers::arm(&self.host, &[&app]).map_err(|e| DeployError::load(&name, e))?;
        next.apps.insert(name.clone(), Served { app: Arc::new(app), origin });
        next.generation += 1;
        *self.now.write().expect("lock") = Arc::new(next);
        if let Some(old) = triggers.remove(&name) {
            old.stop().await;
        }
        triggers.insert(name, armed.start());
        Ok(())
    }

    /// Stop and forget the deployed app `name`; calls in flight finish. An app served from a
    /// file is refused.
    pub async fn remove(&self, name: &str) -> Result<Option<Served>, DeployError> {
        let mut triggers = self.triggers.lock().await;
        let now = self.snapshot();
        let Some(served) = now.apps.get(name) else { return Ok(None) };
        if let Origin::File(path) = &served.origin {
            return Err(DeployError::FromFile { app: name.into(), path: path.clone() });
        }
        let mut next = (*now).clone();
        let removed = next.apps.remove(name);
        next.generation += 1;
        *self.now.write().expect("lock") = Arc::new(next);
        if let Some(old) = triggers.remove(name) {
            old.stop().await;
        }
        Ok(removed)
    }

    /// Stop every trigger; executions already running finish on their own tasks.
    pub async fn stop(&self) {
        let stopped: Vec<Triggers> = self.triggers.lock().await.drain().map(|(_, t)| t).collect();
        for triggers in stopped {
            triggers.stop().await;
        }
    }
}

/// The paths an app claims outside the host's own: its routes (or their prefixes) and its site.
pub fn claimed_paths(app: &App) -> impl Iterator<Item = &str> {
    let routes = app.routes().iter().map(|h| h.route().prefix().unwrap_or(&h.route().route));
    routes.chain(app.manifest().site.iter().map(|s| s.route.as_str()))
}

/// Refuse `app` when another app of `now` claims one of its paths.
fn check_routes(now: &Snapshot, app: &App) -> Result<(), DeployError> {
    for path in claimed_paths(app) {
        let other = now.apps.values().find(|s| s.app.name() != app.name() && claimed_paths(&s.app).any(|p| p == path));
        if let Some(other) = other {
            return Err(DeployError::RouteConflict {
                route: path.into(),
                app: app.name().into(),
                other: other.app.name().into(),
            });
        }
    }
    Ok(())
}
