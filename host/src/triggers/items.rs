//! `[[trigger.item]]`: turns item events into executions, runs them with retries, and survives
//! restarts.
//!
//! Accepting an event is one sled transaction: the event is removed and one queued execution per
//! matching trigger is written (for `once` triggers, together with a claim on the (trigger, item)
//! pair, so a second execution is never made while one is pending or has succeeded). Queued
//! executions run when their function is not paused and has a free `concurrency` slot; a failed
//! attempt is queued again after the trigger's backoff until its attempts are used up (then the
//! `once` claim is released). An execution found `running` at start (the host stopped during it)
//! runs again: delivery is at least once, and a `once` trigger still succeeds at most once per item.
//! Changes made by triggered executions fire no triggers, so triggers cannot loop.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use tokio::sync::Notify;

use crate::datasets::{Cause, ItemEvent, events_tree};
use crate::executions::{Execution, Executions, Status, error_json, now_ms};
use crate::manifest::ItemTrigger;
use crate::{App, Error, Function, Host};

/// How often the dispatcher looks for work when nothing woke it.
const POLL: Duration = Duration::from_millis(200);

/// One trigger with its function resolved.
struct Armed {
    app: String,
    spec: ItemTrigger,
    function: Function,
    events: sled::Tree,
}

/// Runs the item triggers of a set of apps until dropped or stopped.
pub struct ItemTriggers {
    stop: Arc<Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ItemTriggers {
    /// Check every app's item triggers and start dispatching on the current tokio runtime.
    pub fn start(host: &Host, apps: &[&App]) -> Result<ItemTriggers, Error> {
        let mut armed = Vec::new();
        for app in apps {
            for spec in &app.manifest().item_triggers {
                let function = app.function(&spec.function)?;
                if function.export().params.len() != 1 {
                    return Err(Error::Manifest(crate::manifest::ManifestError::Invalid {
                        path: app.manifest().path.clone(),
                        message: format!(
                            "trigger.item `{}`: function `{}` must take one `item` parameter; it is {}",
                            spec.name,
                            function.name(),
                            function.export().signature()
                        ),
                    }));
                }
                let events = events_tree(host.store(), app.name())
                    .map_err(|e| Error::DataDir { path: host.data_dir().into(), message: e.to_string() })?;
                armed.push(Arc::new(Armed { app: app.name().into(), spec: spec.clone(), function, events }));
            }
        }
        let stop = Arc::new(Notify::new());
        let dispatcher = Dispatcher {
            store: host.store().clone(),
            executions: host.executions().clone(),
            armed,
            running: Arc::new(Mutex::new(HashSet::new())),
            wake: Arc::new(Notify::new()),
        };
        let task = (!dispatcher.armed.is_empty()).then(|| tokio::spawn(dispatcher.run(stop.clone())));
        Ok(ItemTriggers { stop, task })
    }

    /// Stop taking new work; executions already running finish on their own tasks.
    pub async fn stop(mut self) {
        self.stop.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ItemTriggers {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Dispatcher {
    store: Arc<crate::store::Store>,
    executions: Arc<Executions>,
    armed: Vec<Arc<Armed>>,
    /// Executions with a task in this process.
    running: Arc<Mutex<HashSet<String>>>,
    wake: Arc<Notify>,
}

fn conflict(e: impl std::fmt::Display) -> ConflictableTransactionError<String> {
    ConflictableTransactionError::Abort(e.to_string())
}

fn once_key(trigger: &str, item: &str) -> Vec<u8> {
    format!("once/{trigger}/{item}").into_bytes()
}

impl Dispatcher {
    async fn run(self, stop: Arc<Notify>) {
        loop {
            // Registered before looking, so an event written meanwhile is not missed.
            let new_events = self.store.new_events.notified();
            tokio::pin!(new_events);
            new_events.as_mut().enable();
            if let Err(error) = self.accept_events() {
                tracing::error!(%error, "cannot accept item events");
            }
            self.start_due();
            tokio::select! {
                _ = stop.notified() => return,
                _ = self.wake.notified() => {}
                _ = new_events => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Turn every pending event of the apps into queued executions.
    fn accept_events(&self) -> Result<(), String> {
        let mut by_app: BTreeMap<&str, Vec<&Arc<Armed>>> = BTreeMap::new();
        for armed in &self.armed {
            by_app.entry(&armed.app).or_default().push(armed);
        }
        for triggers in by_app.values() {
            let events = &triggers[0].events;
            for entry in events.iter() {
                let (key, bytes) = entry.map_err(|e| e.to_string())?;
                let event: ItemEvent = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                let matching: Vec<&Arc<Armed>> = triggers
                    .iter()
                    .copied()
                    .filter(|t| {
                        event.cause.is_none()
                            && t.spec.dataset == event.item.dataset
                            && t.spec.on.contains(&event.action)
                            && t.spec.filter.matches(&event.item)
                    })
                    .collect();
                let mut records = Vec::new();
                for armed in &matching {
                    let input = Value::Array(vec![event.item.to_wit_json()]);
                    let record = Execution {
                        max_attempts: armed.spec.attempts,
                        not_before_ms: 0,
                        item: Some((event.item.dataset.clone(), event.item.id.clone())),
                        ..Execution::queued(
                            self.executions.new_id()?,
                            &armed.app,
                            armed.function.name(),
                            &armed.spec.name,
                            input,
                        )
                    };
                    records.push((armed.spec.once.then(|| once_key(&armed.spec.name, &event.item.id)), record));
                }
                let ex = &self.executions;
                (events, &ex.records, &ex.queue)
                    .transaction(|(events, records_tree, queue)| {
                        events.remove(&key)?;
                        for (once, record) in &records {
                            if let Some(once) = once {
                                if queue.get(once)?.is_some() {
                                    continue;
                                }
                                queue.insert(once.as_slice(), record.id.as_bytes())?;
                            }
                            records_tree.insert(record.id.as_bytes(), serde_json::to_vec(record).map_err(conflict)?)?;
                            queue.insert(format!("run/{}", record.id).as_bytes(), record.id.as_bytes())?;
                        }
                        Ok(())
                    })
                    .map_err(|e| format!("{e:?}"))?;
            }
        }
        Ok(())
    }

    /// Start every queued execution that is due, not running here, and whose function is not
    /// paused.
    fn start_due(&self) {
        let now = now_ms();
        for entry in self.executions.queue.scan_prefix("run/").values() {
            let Ok(id) = entry else { continue };
            let id = String::from_utf8_lossy(&id).into_owned();
            if self.running.lock().unwrap().contains(&id) {
                continue;
            }
            let Some(record) = self.executions.get(&id) else { continue };
            if record.status.is_final() {
                let _ = self.executions.queue.remove(format!("run/{id}").as_bytes());
                continue;
            }
            let Some(armed) = self.armed.iter().find(|a| a.app == record.app && a.spec.name == record.trigger) else {
                continue;
            };
            if record.not_before_ms > now || armed.function.guest().paused() {
                continue;
            }
            self.running.lock().unwrap().insert(id.clone());
            let (this, armed) = (self.clone(), armed.clone());
            tokio::spawn(async move {
                if let Err(error) = this.execute(&armed, record).await {
                    tracing::error!(%error, execution = %id, "execution bookkeeping failed");
                }
                this.running.lock().unwrap().remove(&id);
                this.wake.notify_one();
            });
        }
    }

    /// One attempt of an execution, and what follows: done, retried later, or failed.
    async fn execute(&self, armed: &Armed, mut record: Execution) -> Result<(), String> {
        let function = &armed.function;
        let guest = function.guest();
        let params = match function.params(&record.input) {
            Ok(params) => params,
            Err(bad) => {
                record.status = Status::Failed;
                record.error = Some(serde_json::json!({ "code": "bad-argument", "message": bad.to_string() }));
                return self.finish(armed, record, None).await;
            }
        };
        let Ok(_permit) = guest.admit().await else {
            return Ok(()); // Paused while waiting: stays queued.
        };
        record.status = Status::Running;
        record.started_ms = Some(now_ms());
        self.executions.put(&record, None)?;
        self.executions.durable().await?;
        let cause = Cause { trigger: armed.spec.name.clone(), execution: record.id.clone() };
        let report = function.run_admitted(&params, Some(cause), Some((&record.id, record.attempt))).await;
        guest.metrics.record(&guest.app, function.name(), "item", report.outcome(), report.elapsed);
        match report.result {
            Ok(output) => {
                record.status = Status::Succeeded;
                record.output = Some(output);
                record.error = None;
            }
            Err(error) => {
                record.error = Some(error_json(&error));
                if record.attempt < record.max_attempts {
                    let backoff = armed.spec.backoff.saturating_mul(1 << (record.attempt - 1).min(16));
                    record.status = Status::Queued;
                    record.not_before_ms = now_ms() + backoff.as_millis() as u64;
                    self.executions.put(&record, Some((&report.logs, record.attempt)))?;
                    record.attempt += 1;
                    self.executions.put(&record, None)?;
                    return self.executions.durable().await;
                }
                record.status =
                    if matches!(error, crate::CallError::Timeout { .. }) { Status::TimedOut } else { Status::Failed };
            }
        }
        self.finish(armed, record, Some(&report.logs)).await
    }

    /// Write the final record, then leave the queue and release a `once` claim unless it
    /// succeeded. (A crash in between leaves a queue entry whose record is final: it is dropped.)
    async fn finish(&self, armed: &Armed, mut record: Execution, logs: Option<&crate::Logs>) -> Result<(), String> {
        record.finished_ms = Some(now_ms());
        self.executions.put(&record, logs.map(|l| (l, record.attempt)))?;
        let queue = &self.executions.queue;
        queue.remove(format!("run/{}", record.id).as_bytes()).map_err(|e| e.to_string())?;
        if armed.spec.once
            && record.status != Status::Succeeded
            && let Some((_, item)) = &record.item
        {
            queue.remove(once_key(&armed.spec.name, item)).map_err(|e| e.to_string())?;
        }
        self.executions.durable().await
    }
}
