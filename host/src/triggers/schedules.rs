//! `[[trigger.schedule]]`: calls a function at the times of an `every` interval or a `cron`
//! expression, with `scheduled-ms` (the fire time) and `missed` (fires skipped before it).
//!
//! The last fire time of each schedule is kept in the store. After the host was down, only the
//! latest missed fire runs, with the number skipped before it in `missed` (and in a warning):
//! missed fires are reported, not replayed in a storm. A fire is a queued execution (trigger =
//! the schedule's name) written before the fire time is, so a crash may repeat a fire but never
//! loses one.

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
    /// Last fire time by `APP/SCHEDULE`.
    fires: sled::Tree,
}

/// The schedules of `apps`, checked.
pub(super) fn arm(host: &Host, apps: &[&App]) -> Result<Vec<Timer>, Error> {
    let fires = host
        .store()
        .tree("schedule-fires")
        .map_err(|e| Error::DataDir { path: host.data_dir().into(), message: e.to_string() })?;
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
                fires: fires.clone(),
            });
        }
    }
    Ok(armed)
}

impl Timer {
    fn key(&self) -> String {
        format!("{}/{}", self.app, self.spec.name)
    }

    fn last_fire(&self) -> Option<u64> {
        let bytes = self.fires.get(self.key()).ok()??;
        Some(u64::from_be_bytes(bytes.as_ref().try_into().ok()?))
    }

    /// Fire at every due time until `stop` turns true.
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut last = self.last_fire();
        if last.is_none() {
            // First start: fires count from now on.
            last = Some(now_ms());
            self.save(now_ms());
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

    async fn fire(&self, fire_ms: u64, missed: u64) -> Result<(), ExecutionsError> {
        let input = json!({ "scheduled-ms": fire_ms, "missed": missed });
        let record = Execution {
            max_attempts: self.spec.attempts,
            backoff_ms: self.spec.backoff.as_millis() as u64,
            ..Execution::queued(self.executions.new_id()?, &self.app, self.function.name(), &self.spec.name, input)
        };
        self.executions.enqueue(&record).await?;
        self.save(fire_ms);
        runner::start(&self.executions, self.function.clone(), record);
        Ok(())
    }

    fn save(&self, fire_ms: u64) {
        if let Err(error) = self.fires.insert(self.key(), &fire_ms.to_be_bytes()) {
            tracing::error!(%error, schedule = %self.spec.name, "cannot save the last fire time");
        }
    }
}
