//! One path for every call. An [`Invocation`] says which function runs, with which input, who
//! started it ([`Origin`]) and which attempt it is; [`Invocation::run`] admits it (pause and
//! `concurrency`), runs it in the sandbox, counts it in the metrics and records it. [`Retry`]
//! says how long a failed attempt waits before the next.

mod references;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

pub(crate) use self::references::{references, resolve_references};
use crate::call::Guest;
use crate::outcome::{CallError, Logs};
use crate::storage::executions::{Execution, now_ms};

/// Which kind of trigger started a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// `[[trigger.item]]`: an item event.
    Item,
    /// `[[trigger.topic]]`: an event published to a topic.
    Topic,
    /// `[[trigger.queue]]`: a message of a queue.
    Queue,
    /// `[[trigger.schedule]]`: a fire time.
    Schedule,
}

/// Who started a call. Its names are those of metrics (`kind`) and of execution records
/// (`trigger`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A direct typed call ([`crate::Function::call`], `POST .../call`).
    Call,
    /// One call of a `map` or `starmap`.
    Map,
    /// A request to a `[[trigger.http]]` route.
    Http,
    /// A job started with [`crate::Function::spawn`].
    Async,
    /// A serial call started with [`crate::Function::enqueue`].
    Enqueue,
    /// A trigger of the manifest, by kind and name.
    Trigger {
        /// The kind of trigger.
        kind: TriggerKind,
        /// Its name in the manifest.
        name: String,
    },
}

impl Origin {
    /// The origin of a queued execution, from its record: jobs and serial calls by their
    /// trigger, the rest from the triggers whose executions are queued (item triggers name the
    /// item they run on, schedules pass one object, topics a list of one event). Metrics count
    /// every one of those as `trigger`.
    pub(crate) fn of_queued(record: &Execution) -> Origin {
        let kind = match (record.trigger.as_str(), &record.item, &record.input) {
            ("async", None, _) => return Origin::Async,
            ("enqueue", None, _) => return Origin::Enqueue,
            (_, Some(_), _) => TriggerKind::Item,
            (_, None, Value::Object(_)) => TriggerKind::Schedule,
            (_, None, _) => TriggerKind::Topic,
        };
        Origin::Trigger { kind, name: record.trigger.clone() }
    }

    /// The kind of call in metrics: `call`, `map`, `http`, `async`, `enqueue`, `queue` or
    /// `trigger`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::Call => "call",
            Origin::Map => "map",
            Origin::Http => "http",
            Origin::Async => "async",
            Origin::Enqueue => "enqueue",
            Origin::Trigger { kind: TriggerKind::Queue, .. } => "queue",
            Origin::Trigger { .. } => "trigger",
        }
    }

    /// The `trigger` of its execution records: the kind of call, or the trigger's name.
    pub fn trigger(&self) -> &str {
        match self {
            Origin::Trigger { name, .. } => name,
            other => other.kind(),
        }
    }

    /// Whether a caller waits for the call's answer: then the function's `record` setting
    /// decides which calls are recorded (work started by triggers always is).
    fn direct(&self) -> bool {
        matches!(self, Origin::Call | Origin::Map | Origin::Http)
    }
}

/// How long a failed attempt waits before the next: `backoff` before the second, doubled before
/// each next one (up to 2^16 times the backoff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The wait before the second attempt.
    pub backoff: Duration,
}

impl Retry {
    /// The wait after failed attempt `attempt` (from 1).
    pub fn delay(self, attempt: u32) -> Duration {
        self.backoff.saturating_mul(1 << attempt.saturating_sub(1).min(16))
    }

    /// [`Retry::delay`] in ms, as execution records keep times.
    pub fn delay_ms(self, attempt: u32) -> u64 {
        u64::try_from(self.delay(attempt).as_millis()).unwrap_or(u64::MAX)
    }
}

/// How an invocation gets its `concurrency` slot.
pub(crate) enum Admission {
    /// Wait for a slot; refused at once while the function is paused.
    Wait,
    /// The caller holds a slot already.
    Held(OwnedSemaphorePermit),
    /// Refused before admission: it cannot run (paused, or an argument refers to an execution
    /// without a result).
    Refused(CallError),
}

/// The full story of one call: its outcome, what the guest printed and how long it took.
#[derive(Debug, Clone)]
pub struct CallReport<T = Value> {
    /// The returned value, or why the call failed.
    pub result: Result<T, CallError>,
    /// Captured stdout and stderr.
    pub logs: Logs,
    /// Wall time from the start of instantiation to the end of the call.
    pub elapsed: Duration,
}

impl<T> CallReport<T> {
    /// `ok` or the failure's [`CallError::code`].
    pub fn outcome(&self) -> &'static str {
        self.result.as_ref().map_or_else(CallError::code, |_| "ok")
    }
}

/// One call of one function, as it is started.
pub(crate) struct Invocation<'a> {
    /// The component.
    pub(crate) guest: &'a Arc<Guest>,
    /// The name its metrics and records use (`function.export`; the component for routes).
    pub(crate) function: &'a str,
    /// The JSON input its record keeps.
    pub(crate) input: &'a Value,
    /// Who started it.
    pub(crate) origin: Origin,
    /// Which attempt, from 1.
    pub(crate) attempt: u32,
    /// The queued execution it is an attempt of, if any: that record follows the execution
    /// across attempts, kept by [`crate::runner`]; other calls get a record here once they end.
    pub(crate) execution: Option<&'a str>,
    /// When it was started, ms since the Unix epoch.
    pub(crate) started_ms: u64,
}

impl<'a> Invocation<'a> {
    /// A first attempt, not of a queued execution, started now.
    pub(crate) fn new(guest: &'a Arc<Guest>, function: &'a str, input: &'a Value, origin: Origin) -> Invocation<'a> {
        Invocation { guest, function, input, origin, attempt: 1, execution: None, started_ms: now_ms() }
    }

    /// Admit the call, run `work` (the sandbox run: its result and output) in its slot, count it
    /// in the metrics and keep its record.
    pub(crate) async fn run<T>(
        &self,
        admission: Admission,
        work: impl AsyncFnOnce() -> (Result<T, CallError>, Logs),
    ) -> CallReport<T>
    where
        Result<T, CallError>: RecordedResult,
    {
        let admitted = match admission {
            Admission::Held(slot) => Ok(slot),
            Admission::Wait => self.guest.admit().await,
            Admission::Refused(error) => Err(error),
        };
        let report = match admitted {
            Ok(_slot) => {
                let started = Instant::now();
                let _in_flight = self.guest.metrics.start();
                let (result, logs) = work().await;
                CallReport { result, logs, elapsed: started.elapsed() }
            }
            Err(refused) => CallReport { result: Err(refused), logs: Logs::default(), elapsed: Duration::ZERO },
        };
        let guest = &self.guest;
        guest.metrics.record(&guest.app, self.function, self.origin.kind(), report.outcome(), report.elapsed);
        if self.keeps_record(&report.result) {
            self.record(report.result.as_recorded(), &report.logs);
        }
        report
    }

    /// Whether this call gets a record once it ends. A route's request refused before it was
    /// admitted has none (no instance served it); other refused calls do.
    fn keeps_record<T>(&self, result: &Result<T, CallError>) -> bool {
        let refused_route = self.origin == Origin::Http && matches!(result, Err(CallError::Paused { .. }));
        self.execution.is_none()
            && !refused_route
            && (!self.origin.direct() || self.guest.record.records(result.is_err()))
    }

    /// Keep the final record of this call (written in the background).
    fn record(&self, result: Result<&Value, &CallError>, logs: &Logs) {
        let executions = &self.guest.executions;
        let Ok(id) = executions.new_id() else { return };
        let ran = (self.guest.app.as_str(), self.function, self.origin.trigger(), self.attempt);
        executions.record_final(Execution::ran(id, ran, self.input.clone(), self.started_ms, result), logs.clone());
    }
}

/// A call's result as its record keeps it: the returned JSON value (`null` when the call returns
/// nothing, or answers in another way, as a route does).
pub(crate) trait RecordedResult {
    /// The value or the error.
    fn as_recorded(&self) -> Result<&Value, &CallError>;
}

impl RecordedResult for Result<Value, CallError> {
    fn as_recorded(&self) -> Result<&Value, &CallError> {
        self.as_ref()
    }
}

impl RecordedResult for Result<(), CallError> {
    fn as_recorded(&self) -> Result<&Value, &CallError> {
        self.as_ref().map(|()| &Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn trigger(kind: TriggerKind) -> Origin {
        Origin::Trigger { kind, name: "on-upload".into() }
    }

    #[test]
    fn origins_keep_the_names_of_metrics_and_records() {
        let names = [
            (Origin::Call, "call", "call"),
            (Origin::Map, "map", "map"),
            (Origin::Http, "http", "http"),
            (Origin::Async, "async", "async"),
            (Origin::Enqueue, "enqueue", "enqueue"),
            (trigger(TriggerKind::Queue), "queue", "on-upload"),
            (trigger(TriggerKind::Item), "trigger", "on-upload"),
            (trigger(TriggerKind::Topic), "trigger", "on-upload"),
            (trigger(TriggerKind::Schedule), "trigger", "on-upload"),
        ];
        for (origin, kind, recorded) in names {
            assert_eq!((origin.kind(), origin.trigger()), (kind, recorded), "{origin:?}");
        }
        let direct: Vec<Origin> = [Origin::Call, Origin::Map, Origin::Http, Origin::Async, trigger(TriggerKind::Queue)]
            .into_iter()
            .filter(Origin::direct)
            .collect();
        assert_eq!(direct, [Origin::Call, Origin::Map, Origin::Http], "the `record` setting applies to these");
    }

    #[test]
    fn queued_records_tell_their_origin() {
        let queued = |trigger: &str, input| Execution::queued("1".into(), "app", "f.x", trigger, input);
        assert_eq!(Origin::of_queued(&queued("async", json!([1]))), Origin::Async);
        assert_eq!(Origin::of_queued(&queued("enqueue", json!([1]))), Origin::Enqueue);
        let fire = queued("nightly", json!({ "scheduled-ms": 1, "missed": 0 }));
        assert_eq!(Origin::of_queued(&fire), Origin::Trigger { kind: TriggerKind::Schedule, name: "nightly".into() });
        let event = queued("audit", json!([{ "topic": "t" }]));
        assert_eq!(Origin::of_queued(&event), Origin::Trigger { kind: TriggerKind::Topic, name: "audit".into() });
        let item = Execution { item: Some(("photos".into(), "a".into())), ..queued("on-upload", json!([{}])) };
        assert_eq!(Origin::of_queued(&item), trigger(TriggerKind::Item));
        assert_eq!(Origin::of_queued(&item).kind(), "trigger");
    }

    #[test]
    fn retries_double_the_backoff_per_attempt_up_to_a_cap() {
        let retry = Retry { backoff: Duration::from_millis(100) };
        let delays: Vec<u64> = (1..=4).map(|attempt| retry.delay_ms(attempt)).collect();
        assert_eq!(delays, [100, 200, 400, 800]);
        assert_eq!(retry.delay(0), retry.delay(1), "attempts count from 1");
        assert_eq!(retry.delay(17), retry.delay(40), "doubled at most 16 times");
        assert_eq!(retry.delay(17), Duration::from_millis(100 << 16));
        assert_eq!(Retry { backoff: Duration::MAX }.delay(5), Duration::MAX, "saturates");
        assert_eq!(Retry { backoff: Duration::ZERO }.delay_ms(9), 0);
    }
}
