//! `[[trigger.schedule]]`: calls a function at the times of an `every` interval or a `cron`
//! expression, with `scheduled-ms` (the fire time) and `missed` (fires skipped before it).
//!
//! The last fire time of each schedule is kept in the execution store. After the host was down,
//! only the latest missed fire runs, with the number skipped before it in `missed` (and in a
//! warning): missed fires are reported, not replayed in a storm. A fire is a queued execution
//! (trigger = the schedule's name) written before the fire time is, so a crash may repeat a fire
//! but never loses one. Every node sharing the store runs the timers; each fire is claimed first
//! (`tick/APP/SCHEDULE/FIRE_MS`), so one node queues it and the others skip that tick.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use crate::manifest::ScheduleTrigger;
use crate::storage::executions::{Execution, Executions, ExecutionsError, now_ms};
use crate::{App, Error, Function, Host, runner};

/// One schedule, ready to run.
pub(super) struct Timer {
    app: String,
    spec: ScheduleTrigger,
    function: Function,
    executions: Arc<Executions>,
}

/// How long the claim of a fire holds: long past the moment every node's timer reaches it, and
/// short enough that the claims of frequent schedules do not pile up.
const TICK_CLAIM: Duration = Duration::from_secs(600);

/// The schedules of `apps`, checked.
pub(super) fn arm(host: &Host, apps: &[&App]) -> Result<Vec<Timer>, Error> {
    let mut armed = Vec::new();
    for app in apps {
        for spec in &app.manifest().schedule_triggers {
            let function = app.function(&spec.function)?;
            let mut params: Vec<&str> = function.export().params.iter().map(|(n, _)| n.as_str()).collect();
            params.sort();
            if params != ["missed", "scheduled-ms"] {
                return Err(super::bad_trigger(
                    app,
                    "schedule",
                    &spec.name,
                    &function,
                    "func(scheduled-ms: u64, missed: u64)",
                ));
            }
            armed.push(Timer {
                app: app.name().into(),
                spec: spec.clone(),
                function,
                executions: host.executions().clone(),
            });
        }
    }
    Ok(armed)
}

impl Timer {
    fn key(&self) -> String {
        format!("{}/{}", self.app, self.spec.name)
    }

    /// Fire at every due time until `stop` turns true.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut last = match self.executions.last_fire(&self.key()).await {
            Ok(last) => last,
            Err(error) => {
                tracing::error!(%error, schedule = %self.spec.name, "cannot read the last fire time");
                None
            }
        };
        if last.is_none() {
            // First start: fires count from now on.
            last = Some(now_ms());
            self.save(now_ms()).await;
        }
        loop {
            let due = self.spec.schedule.due(last, now_ms());
            if let Some(fire_ms) = due.fire_ms {
                if due.missed > 0 {
                    tracing::warn!(app = %self.app, schedule = %self.spec.name, missed = due.missed,
                        "fires missed while the host was down: running only the latest");
                }
                if let Err(error) = self.fire(fire_ms, due.missed).await {
                    tracing::error!(%error, schedule = %self.spec.name, "cannot start a scheduled call");
                }
                last = Some(fire_ms);
            }
            let Some(next) = last.and_then(|t| self.spec.schedule.next_after(t)) else { return };
            let wait = Duration::from_millis(next.saturating_sub(now_ms()));
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Queue the fire at `fire_ms`, unless another node sharing the store claimed it.
    async fn fire(&self, fire_ms: u64, missed: u64) -> Result<(), ExecutionsError> {
        if !self.executions.claim_for(&format!("tick/{}/{fire_ms}", self.key()), TICK_CLAIM).await? {
            return Ok(());
        }
        let input = json!({ "scheduled-ms": fire_ms, "missed": missed });
        let record = Execution {
            max_attempts: self.spec.attempts,
            backoff_ms: self.spec.backoff.as_millis() as u64,
            ..Execution::queued(self.executions.new_id()?, &self.app, self.function.name(), &self.spec.name, input)
        };
        self.executions.enqueue(&record).await?;
        self.save(fire_ms).await;
        runner::start(&self.executions, self.function.clone(), record);
        Ok(())
    }

    async fn save(&self, fire_ms: u64) {
        if let Err(error) = self.executions.save_fire(&self.key(), fire_ms).await {
            tracing::error!(%error, schedule = %self.spec.name, "cannot save the last fire time");
        }
    }
}
