//! What starts calls besides a direct typed call: one module per kind of trigger, and
//! [`Triggers`], which runs them all for a set of apps.

pub mod http;
mod items;
mod queues;
mod schedules;
mod topics;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::manifest::ManifestError;
use crate::storage::executions::Executions;
use crate::{App, Error, Function, Host, runner};

/// How often the dispatcher looks for work when nothing woke it.
const POLL: Duration = Duration::from_millis(200);

/// Events read from an event log at a time.
const EVENTS_PER_READ: usize = 100;

/// Runs the triggers of a set of apps (item, topic, queue and schedule triggers) and every
/// queued execution of their functions (jobs and serial calls too, including those left by a
/// host that stopped), until stopped or dropped.
pub struct Triggers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The triggers of a set of apps, checked and ready to start.
pub struct Armed {
    dispatcher: Dispatcher,
    consumers: Vec<queues::Consumer>,
    timers: Vec<schedules::Timer>,
}

impl Armed {
    /// Start them on the current tokio runtime.
    pub fn start(self) -> Triggers {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(self.dispatcher.run(stopped.clone()))];
        tasks.extend(self.consumers.into_iter().map(|c| tokio::spawn(c.run(stopped.clone()))));
        tasks.extend(self.timers.into_iter().map(|t| tokio::spawn(t.run(stopped.clone()))));
        Triggers { stop, tasks }
    }
}

impl Triggers {
    /// Check every trigger of the apps (their functions' signatures, their queues); nothing
    /// runs until [`Armed::start`].
    pub fn arm(host: &Host, apps: &[&App]) -> Result<Armed, Error> {
        let functions = apps
            .iter()
            .flat_map(|app| app.functions().iter().map(|f| ((app.name().to_string(), f.name().to_string()), f.clone())))
            .collect();
        let dispatcher = Dispatcher {
            executions: host.executions().clone(),
            functions,
            items: items::arm(host, apps)?,
            topics: topics::arm(host, apps)?,
        };
        Ok(Armed { dispatcher, consumers: queues::arm(host, apps)?, timers: schedules::arm(host, apps)? })
    }

    /// Check every trigger of the apps and start them on the current tokio runtime.
    pub fn start(host: &Host, apps: &[&App]) -> Result<Triggers, Error> {
        Ok(Triggers::arm(host, apps)?.start())
    }

    /// Stop taking new work; executions already running finish on their own tasks.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Triggers {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Turns item and topic events into queued executions and starts every queued execution.
struct Dispatcher {
    executions: Arc<Executions>,
    /// Every function of the apps, by (app, `function.export`).
    functions: HashMap<(String, String), Function>,
    items: Vec<items::Armed>,
    topics: Vec<topics::Subscriptions>,
}

impl Dispatcher {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            // Registered before looking, so an event written meanwhile is not missed. The poll
            // finds what no one announced: work a node that died left behind, events of other
            // nodes where the store does not announce them.
            let new_events = self.executions.new_events().notified();
            tokio::pin!(new_events);
            new_events.as_mut().enable();
            if let Err(error) = items::accept(&self.executions, &self.items).await {
                tracing::error!(%error, "cannot accept item events");
            }
            if let Err(error) = topics::accept(&self.executions, &self.topics).await {
                tracing::error!(%error, "cannot accept topic events");
            }
            self.start_queued().await;
            tokio::select! {
                _ = stop.changed() => return,
                _ = new_events => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Start every queued execution of the apps' functions not running in this process.
    async fn start_queued(&self) {
        let ids = match self.executions.queued_ids().await {
            Ok(ids) => ids,
            Err(error) => return tracing::error!(%error, "cannot read the execution queue"),
        };
        for id in ids {
            // Running here, or lately found running on another node (tried again in a while,
            // so that the work of a node that died is taken over).
            if self.executions.is_claimed(&id) || self.executions.refused_lately(&id) {
                continue;
            }
            let Some(record) = self.executions.get(&id).await else { continue };
            if record.status.is_final() {
                if let Err(error) = self.executions.dequeue(&record).await {
                    tracing::error!(%error, execution = %id, "cannot take a finished execution off the queue");
                }
                continue;
            }
            if let Some(function) = self.functions.get(&(record.app.clone(), record.function.clone())) {
                runner::start(&self.executions, function.clone(), record);
            }
        }
    }
}

/// The function of a trigger, which must take one parameter (`what`).
fn one_parameter(app: &App, kind: &str, trigger: &str, function: &str, what: &str) -> Result<Function, Error> {
    let function = app.function(function)?;
    match function.export().params.len() {
        1 => Ok(function),
        _ => Err(bad_trigger(app, kind, trigger, &function, &format!("a function taking one `{what}` parameter"))),
    }
}

/// A trigger whose function has the wrong signature.
fn bad_trigger(app: &App, kind: &str, trigger: &str, function: &Function, expected: &str) -> Error {
    Error::Manifest(ManifestError::Invalid {
        path: app.manifest().path.clone(),
        message: format!(
            "trigger.{kind} `{trigger}`: function `{}` must be {expected}; it is {}",
            function.name(),
            function.export().signature()
        ),
    })
}
