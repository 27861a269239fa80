//! `[[trigger.queue]]`: a function consumes a queue, one message per call.
//!
//! The consumer leases as many messages as its function has free `concurrency` slots and calls
//! the function with each (a record `{id, body, attempt, lease}`), each call recorded as an
//! execution of the trigger. A call that succeeds completes its message; one that fails gives it
//! back after the trigger's backoff (doubled per attempt) until the queue's `max-attempts`, after
//! which the message moves to the dead-letter queue. Leases last twice the function's timeout,
//! and messages leased when the host stopped are delivered again after a restart.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use super::one_parameter;
use crate::executions::now_ms;
use crate::manifest::{QueueSpec, QueueTrigger};
use crate::queues::{MAX_RECEIVE, Message, Queue, Queues};
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
    /// Lease and handle messages until `stop` turns true.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let guest = this.function.guest();
        let slots = Arc::new(Semaphore::new(guest.limits.concurrency as usize));
        let visibility = guest.limits.timeout * 2;
        let slot_freed = Arc::new(tokio::sync::Notify::new());
        loop {
            let sent = this.queue.sent.notified();
            let freed = slot_freed.notified();
            tokio::pin!(sent, freed);
            sent.as_mut().enable();
            freed.as_mut().enable();
            let free = (slots.available_permits() as u32).min(MAX_RECEIVE);
            let mut received = 0;
            if free > 0 && !guest.paused() {
                match this.queue.receive(&this.queues, free, visibility).await {
                    Ok(messages) => {
                        received = messages.len() as u32;
                        for message in messages {
                            let slot = slots.clone().try_acquire_owned().expect("leased no more than free slots");
                            let (this, slot_freed) = (this.clone(), slot_freed.clone());
                            tokio::spawn(async move {
                                this.handle(message).await;
                                drop(slot);
                                slot_freed.notify_one();
                            });
                        }
                    }
                    Err(error) => tracing::error!(%error, trigger = %this.spec.name, "cannot receive from the queue"),
                }
            }
            if received == free && free > 0 {
                continue;
            }
            let next =
                this.queue.next_visible_ms().map_or(POLL, |at| Duration::from_millis(at.saturating_sub(now_ms())));
            tokio::select! {
                _ = stop.changed() => return,
                _ = sent => {}
                _ = freed => {}
                _ = tokio::time::sleep(next.clamp(Duration::from_millis(1), POLL)) => {}
            }
        }
    }

    /// One delivery: call the function, then complete the message or give it back.
    async fn handle(&self, message: Message) {
        let input = json!([{
            "id": message.id,
            "body": base64::engine::general_purpose::STANDARD.encode(&message.body),
            "attempt": message.attempt,
            "lease": message.lease,
        }]);
        let recorded = ("queue", self.spec.name.as_str(), message.attempt);
        let succeeded = match self.function.invoke_as(&input, recorded).await {
            Ok(report) => report.result.is_ok(),
            Err(bad) => {
                tracing::warn!(trigger = %self.spec.name, error = %bad, "queue message does not fit the function");
                false
            }
        };
        let done = match succeeded {
            true => self.queue.complete(&message.lease).await,
            false => {
                let backoff = self.spec.backoff.saturating_mul(1 << (message.attempt - 1).min(16));
                self.queue.retry(&self.queues, &message.lease, backoff).await
            }
        };
        if let Err(error) = done {
            tracing::error!(%error, trigger = %self.spec.name, "cannot settle a queue message");
        }
    }
}
