//! What an execution record holds, and which records a list asks for.

use crate::clock::now_ms;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::outcome::CallError;
pub use crate::outcome::error_json;

/// Where an execution is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting to run (or to be retried).
    Queued,
    /// Running now.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error, after its last attempt.
    Failed,
    /// Ran past its time limit on its last attempt.
    TimedOut,
    /// Stopped by a request (`POST /v1/executions/ID/cancel`) before it finished.
    Cancelled,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 6] =
        [Status::Queued, Status::Running, Status::Succeeded, Status::Failed, Status::TimedOut, Status::Cancelled];

    /// Whether the execution is over.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Queued | Status::Running)
    }

    /// Its name, as in JSON: `queued`, `running`, `succeeded`, `failed`, `timed-out`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed-out",
            Status::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        Status::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            format!("invalid status `{s}`: expected queued, running, succeeded, failed, timed-out or cancelled")
        })
    }
}

/// One execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// Unique; ids sort in creation order.
    pub id: String,
    /// The app.
    pub app: String,
    /// `function.export`.
    pub function: String,
    /// What started it: `call`, `async` (a job), `http`, or the name of an item trigger.
    pub trigger: String,
    /// The JSON arguments.
    pub input: Value,
    /// Where it is.
    pub status: Status,
    /// The result, once succeeded.
    pub output: Option<Value>,
    /// The last error: `{"code": ..., "message": ...}` (plus the guest's `error` value).
    pub error: Option<Value>,
    /// The current (or last) attempt, from 1.
    pub attempt: u32,
    /// Attempts allowed by the trigger's retry policy (1 for direct calls).
    pub max_attempts: u32,
    /// When it was created, ms since the Unix epoch.
    pub queued_ms: u64,
    /// When its last attempt started.
    pub started_ms: Option<u64>,
    /// When it finished.
    pub finished_ms: Option<u64>,
    /// Not to be started before this time (retry backoff), ms since the Unix epoch.
    pub not_before_ms: u64,
    /// For item triggers: the dataset and item it runs on.
    pub item: Option<(String, String)>,
    /// Wait before the second attempt, in ms; doubled before each next one.
    #[serde(default)]
    pub backoff_ms: u64,
    /// A key of the execution queue held while this execution may still succeed (the `once`
    /// claim of an item trigger), removed if it fails.
    #[serde(default)]
    pub claim: Option<String>,
}

impl Execution {
    /// A new queued record of one attempt (callers change what differs).
    pub(crate) fn queued(id: String, app: &str, function: &str, trigger: &str, input: Value) -> Execution {
        let now = now_ms();
        Execution {
            id,
            app: app.to_string(),
            function: function.to_string(),
            trigger: trigger.to_string(),
            input,
            status: Status::Queued,
            output: None,
            error: None,
            attempt: 1,
            max_attempts: 1,
            queued_ms: now,
            started_ms: None,
            finished_ms: None,
            not_before_ms: now,
            item: None,
            backoff_ms: 0,
            claim: None,
        }
    }

    /// The final record of a call that ran at once, without being queued: attempt `attempt`,
    /// started at `started_ms`, ended now with `result`.
    pub(crate) fn ran(
        id: String,
        (app, function, trigger, attempt): (&str, &str, &str, u32),
        input: Value,
        started_ms: u64,
        result: Result<&Value, &CallError>,
    ) -> Execution {
        let mut record = Execution { attempt, ..Execution::queued(id, app, function, trigger, input) };
        (record.queued_ms, record.started_ms, record.not_before_ms) = (started_ms, Some(started_ms), started_ms);
        record.finish_with(result);
        record
    }

    /// Set how its last attempt ended: the final status, the output or the error, the time.
    pub(crate) fn finish_with(&mut self, result: Result<&Value, &CallError>) {
        self.status = match result {
            Ok(_) => Status::Succeeded,
            Err(CallError::Timeout { .. }) => Status::TimedOut,
            Err(CallError::Cancelled) => Status::Cancelled,
            Err(_) => Status::Failed,
        };
        self.output = result.ok().cloned();
        self.error = result.err().map(error_json);
        self.finished_ms = Some(now_ms());
    }
}

/// Which executions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    /// Only this app.
    pub app: Option<String>,
    /// Only this function (`function.export`).
    pub function: Option<String>,
    /// Only this trigger (`call`, `http` or a trigger name).
    pub trigger: Option<String>,
    /// Only this status.
    pub status: Option<Status>,
    /// Only executions queued at or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Only executions queued before this time (ms since the Unix epoch).
    pub until_ms: Option<u64>,
    /// Only the executions of an item trigger on this item: (dataset, item id).
    pub item: Option<(String, String)>,
}

impl ExecutionFilter {
    pub(super) fn matches(&self, e: &Execution) -> bool {
        self.app.as_ref().is_none_or(|a| *a == e.app)
            && self.function.as_ref().is_none_or(|f| *f == e.function)
            && self.trigger.as_ref().is_none_or(|t| *t == e.trigger)
            && self.status.is_none_or(|s| s == e.status)
            && self.queued_in_range(e.queued_ms)
            && self.item.as_ref().is_none_or(|item| e.item.as_ref() == Some(item))
    }

    /// Whether an execution queued at `queued_ms` is in the time range.
    pub(super) fn queued_in_range(&self, queued_ms: u64) -> bool {
        self.since_ms.is_none_or(|since| queued_ms >= since) && self.until_ms.is_none_or(|until| queued_ms < until)
    }
}
