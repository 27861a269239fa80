//! `[[trigger.topic]]`: hands every published event to each subscription of its topic.
//!
//! Accepting an event is atomic (one sled transaction in the embedded store, an outbox on NATS,
//! so that nodes accepting one event at once make its executions once): the event leaves
//! the app's topic log and one queued execution per subscription is written, so each
//! subscription's delivery is durable on its own and retried by its own policy. Events of a
//! topic without subscriptions are dropped.

use super::{EVENTS_PER_READ, one_parameter};
use crate::manifest::TopicTrigger;
use crate::storage::executions::{EventLog, EventRef, Execution, Executions};
use crate::storage::topics::Topics;
use crate::{App, Error, Function, Host};
use serde_json::Value;

/// The topic log of one app and its subscriptions, functions resolved.
pub(super) struct Subscriptions {
    app: String,
    topics: Topics,
    subscriptions: Vec<(TopicTrigger, Function)>,
}

/// The subscriptions of every app (apps without any still get their logs emptied).
pub(super) fn arm(host: &Host, apps: &[&App]) -> Result<Vec<Subscriptions>, Error> {
    let mut armed = Vec::new();
    for app in apps {
        let mut subscriptions = Vec::new();
        for spec in &app.manifest().topic_triggers {
            let function = one_parameter(app, "topic", &spec.name, &spec.function, "event")?;
            subscriptions.push((spec.clone(), function));
        }
        armed.push(Subscriptions { app: app.name().into(), topics: host.topics().clone(), subscriptions });
    }
    Ok(armed)
}

/// Turn every published event of the apps into one queued execution per subscription.
pub(super) async fn accept(executions: &Executions, armed: &[Subscriptions]) -> Result<(), String> {
    for app in armed {
        // Each accepted event leaves the log, so reading from the start again finds the next.
        loop {
            let events = app.topics.pending(&app.app, EVENTS_PER_READ).await.map_err(|e| e.to_string())?;
            if events.is_empty() {
                break;
            }
            let mut accepted = Vec::with_capacity(events.len());
            for event in &events {
                let mut records = Vec::new();
                for (spec, function) in app.subscriptions.iter().filter(|(spec, _)| spec.topic == event.topic) {
                    let input = Value::Array(vec![event.to_wit_json()]);
                    records.push(Execution {
                        max_attempts: spec.attempts,
                        backoff_ms: spec.backoff.as_millis() as u64,
                        ..Execution::queued(
                            executions.new_id().map_err(|e| e.to_string())?,
                            &app.app,
                            function.name(),
                            &spec.name,
                            input,
                        )
                    });
                }
                accepted.push((EventRef { log: EventLog::Topics, app: &app.app, key: event.id.as_bytes() }, records));
            }
            executions.accept_events(&accepted).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
