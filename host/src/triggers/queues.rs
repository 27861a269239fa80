//! `[[trigger.queue]]`: a function consumes a queue, one message per call.
//!
//! The consumer holds free `concurrency` slots of its function (waiting for one when it is busy),
//! leases as many messages as it holds slots and calls the function with each in its slot (a
//! record `{id, body, attempt, lease}`), each call recorded as an execution of the trigger. A
//! paused function leases nothing. A call that succeeds completes its message; one that fails
//! gives it back after the trigger's backoff (doubled per attempt) until the queue's
//! `max-attempts`, after which the message moves to the dead-letter queue. Leases last twice the
//! function's timeout, and messages leased when the host stopped are delivered again after a
//! restart.
//!
//! The calls start without waiting for their leases to reach the disk (they ride the next group
//! commit, shared with the completions and the handlers' own writes): a completion is durable only
//! with its lease, and a crash in between gives the message back, the interrupted delivery not
//! counted among its attempts.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::one_parameter;
use crate::invocation::{Origin, Retry, TriggerKind};
use crate::manifest::{QueueSpec, QueueTrigger};
use crate::storage::executions::now_ms;
use crate::storage::queues::{MAX_RECEIVE, Message, Queue, Queues};
use crate::{App, Error, Function, Host};

/// How long the consumer sleeps at most when nothing woke it.
const POLL: Duration = Duration::from_secs(1);

/// One queue trigger, ready to run.
pub(super) struct Consumer {
    spec: QueueTrigger,
    function: Function,
    queue: Arc<Queue>,
    queues: Arc<Queues>,
}

/// The queue triggers of `apps`, checked.
pub(super) fn arm(host: &Host, apps: &[&App]) -> Result<Vec<Consumer>, Error> {
    let mut armed = Vec::new();
    for app in apps {
        for spec in &app.manifest().queue_triggers {
            let function = one_parameter(app, "queue", &spec.name, &spec.function, "message")?;
            let queue = host.queue(app.name(), &spec.queue, &QueueSpec::of(&app.manifest().queues, &spec.queue))?;
            armed.push(Consumer { spec: spec.clone(), function, queue, queues: host.queues().clone() });
        }
    }
    Ok(armed)
}

impl Consumer {
    /// Lease and handle messages until `stop` turns true. A message is leased only once one of
    /// the function's `concurrency` slots is held for it, so it runs at once and its lease does
    /// not run out while it waits for a busy function; nothing is leased while the function is
    /// paused, so a pause uses up no attempts.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let guest = this.function.guest().clone();
        let visibility = guest.limits.timeout * 2;
        loop {
            let sent = this.queue.sent.notified();
            tokio::pin!(sent);
            sent.as_mut().enable();
            let mut slots = Vec::new();
            if this.queue.next_visible_ms().is_some_and(|at| at <= now_ms()) && !guest.paused() {
                tokio::select! {
                    _ = stop.changed() => return,
                    admitted = guest.admit() => slots.extend(admitted.ok()),
                }
                // Paused while waiting for the slot: lease nothing.
                if guest.paused() {
                    slots.clear();
                }
                while !slots.is_empty()
                    && slots.len() < MAX_RECEIVE as usize
                    && let Some(slot) = guest.try_admit()
                {
                    slots.push(slot);
                }
            }
            let wanted = slots.len();
            let mut received = 0;
            if wanted > 0 {
                match this.queue.receive_to_run(&this.queues, wanted as u32, visibility).await {
                    Ok(messages) => {
                        received = messages.len();
                        for (message, slot) in messages.into_iter().zip(slots.drain(..)) {
                            let this = this.clone();
                            tokio::spawn(async move { this.handle(message, slot).await });
                        }
                    }
                    Err(error) => tracing::error!(%error, trigger = %this.spec.name, "cannot receive from the queue"),
                }
            }
            // Slots not used by a message go back before waiting.
            drop(slots);
            if wanted > 0 && received == wanted {
                continue;
            }
            let next = match guest.paused() {
                true => POLL,
                false => {
                    this.queue.next_visible_ms().map_or(POLL, |at| Duration::from_millis(at.saturating_sub(now_ms())))
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                _ = sent => {}
                _ = this.queue.changed() => {}
                _ = tokio::time::sleep(next.clamp(Duration::from_millis(1), POLL)) => {}
            }
        }
    }

    /// One delivery: call the function, then complete the message or give it back.
    async fn handle(&self, message: Message, slot: OwnedSemaphorePermit) {
        let input = json!([{
            "id": message.id,
            "body": base64::engine::general_purpose::STANDARD.encode(&message.body),
            "attempt": message.attempt,
            "lease": message.lease,
        }]);
        let origin = Origin::Trigger { kind: TriggerKind::Queue, name: self.spec.name.clone() };
        let succeeded = match self.function.invoke_as(&input, origin, message.attempt, Some(slot)).await {
            Ok(report) => report.result.is_ok(),
            Err(bad) => {
                tracing::warn!(trigger = %self.spec.name, error = %bad, "queue message does not fit the function");
                false
            }
        };
        let done = match succeeded {
            true => self.queue.complete(&message.lease).await,
            false => {
                let backoff = Retry { backoff: self.spec.backoff }.delay(message.attempt);
                self.queue.retry(&self.queues, &message.lease, backoff).await
            }
        };
        if let Err(error) = done {
            tracing::error!(%error, trigger = %self.spec.name, "cannot settle a queue message");
        }
    }
}
