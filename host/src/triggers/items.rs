//! `[[trigger.item]]`: turns item events into queued executions.
//!
//! Accepting an event is atomic (one sled transaction in the embedded store, an outbox on NATS,
//! so that nodes accepting one event at once make its executions once): the event is removed
//! and one queued execution per matching trigger is written (for `once` triggers, together with
//! a claim on the (trigger, item) pair, so a second execution is never made while one is pending
//! or has succeeded; the claim is released if the execution fails for good).
//! Changes made by triggered executions fire no triggers, so triggers cannot loop.
//! [`crate::runner`] runs the executions, with the trigger's retry policy.

use std::collections::BTreeMap;

use std::sync::Arc;

use super::{EVENTS_PER_READ, one_parameter};
use crate::manifest::ItemTrigger;
use crate::storage::datasets::DatasetBackend;
use crate::storage::executions::{EventLog, EventRef, Execution, Executions};
use crate::{App, Error, Function, Host};
use serde_json::Value;

/// One item trigger with its function resolved.
pub(super) struct Armed {
    app: String,
    spec: ItemTrigger,
    function: Function,
    datasets: Arc<dyn DatasetBackend>,
}

/// The item triggers of `apps`, checked.
pub(super) fn arm(host: &Host, apps: &[&App]) -> Result<Vec<Armed>, Error> {
    let mut armed = Vec::new();
    for app in apps {
        for spec in &app.manifest().item_triggers {
            let function = one_parameter(app, "item", &spec.name, &spec.function, "item")?;
            let datasets = host.datasets().clone();
            armed.push(Armed { app: app.name().into(), spec: spec.clone(), function, datasets });
        }
    }
    Ok(armed)
}

fn once_key(trigger: &str, item: &str) -> String {
    format!("once/{trigger}/{item}")
}

/// Turn every pending item event of the apps into queued executions.
pub(super) async fn accept(executions: &Executions, armed: &[Armed]) -> Result<(), String> {
    let mut by_app: BTreeMap<&str, Vec<&Armed>> = BTreeMap::new();
    for trigger in armed {
        by_app.entry(&trigger.app).or_default().push(trigger);
    }
    for (app, triggers) in by_app {
        // Each accepted event leaves the log, so reading from the start again finds the next.
        loop {
            let events = triggers[0].datasets.pending_events(app, EVENTS_PER_READ).await.map_err(|e| e.to_string())?;
            if events.is_empty() {
                break;
            }
            let mut accepted = Vec::with_capacity(events.len());
            for (key, event) in &events {
                let matching = triggers.iter().filter(|t| {
                    event.cause.is_none()
                        && t.spec.dataset == event.item.dataset
                        && t.spec.on.contains(&event.action)
                        && t.spec.filter.matches(&event.item)
                });
                let mut records = Vec::new();
                for trigger in matching {
                    let input = Value::Array(vec![event.item.to_wit_json()]);
                    let id = executions.new_id().map_err(|e| e.to_string())?;
                    records.push(Execution {
                        max_attempts: trigger.spec.attempts,
                        backoff_ms: trigger.spec.backoff.as_millis() as u64,
                        item: Some((event.item.dataset.clone(), event.item.id.clone())),
                        claim: trigger.spec.once.then(|| once_key(&trigger.spec.name, &event.item.id)),
                        ..Execution::queued(id, &trigger.app, trigger.function.name(), &trigger.spec.name, input)
                    });
                }
                accepted.push((EventRef { log: EventLog::Items, app, key }, records));
            }
            executions.accept_events(&accepted).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
