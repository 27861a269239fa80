//! Running queued executions: jobs (`async`), serial calls (`enqueue`) and the executions of
//! item, topic and schedule triggers, all with the same life.
//!
//! A queued execution has a durable record and an entry `run/ID` in the execution queue until
//! it is final. One task per execution runs it: it waits for its turn (serial calls of one
//! function run one at a time, in id order), for its `not_before` time, for the executions its
//! arguments refer to (`{"$execution": ID}`), and for a `concurrency` slot of its function (and
//! for a pause to end). A failed attempt is retried after the [`Retry`] of its record, until its
//! attempts are used up. An execution found queued or running when triggers start (its host
//! stopped) runs again: delivery is at least once. On a store shared by several nodes, the
//! store's claim on a running execution is renewed while it runs, so that exactly one node runs
//! it; when its node dies, the claim expires and another node's dispatcher takes it over.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::Val;

use crate::Error;
use crate::function::Function;
use crate::invocation::{self, Admission, Invocation, Origin, Retry};
use crate::outcome::{CallError, Logs, error_json};
use crate::storage::datasets::Cause;
use crate::storage::executions::{Execution, Executions, ExecutionsError, Status, now_ms};
use crate::values::ArgumentError;

/// How often a paused function is checked for a resume by executions waiting on it.
const PAUSE_POLL: Duration = Duration::from_millis(200);

impl Function {
    /// Start a call without waiting for it (a job): the execution id comes back once the queued
    /// record (trigger `async`) is on disk, and the record follows the call from `queued` to
    /// `running` to its result; its output is readable while it runs. Wait for it with
    /// [`Executions::wait`]. Bad arguments, and references to executions that do not exist, are
    /// refused before anything is recorded. The call runs on the current tokio runtime; if the
    /// host stops first, it runs again when [`crate::triggers::Triggers`] next start for its app.
    pub async fn spawn(&self, args: &Value) -> Result<String, Error> {
        self.start_queued(args, Origin::Async).await
    }

    /// Like [`Function::spawn`] (trigger `enqueue`), but calls of this function started this way
    /// run one at a time, in the order they were enqueued.
    pub async fn enqueue(&self, args: &Value) -> Result<String, Error> {
        self.start_queued(args, Origin::Enqueue).await
    }

    async fn start_queued(&self, args: &Value, origin: Origin) -> Result<String, Error> {
        let executions = &self.guest().executions;
        let references = invocation::references(args);
        if references.is_empty() {
            self.params(args)?;
        }
        for id in references {
            if executions.get(&id).await.is_none() {
                let expected = "the id of an existing execution".into();
                return Err(ArgumentError { path: "$execution".into(), expected, got: id }.into());
            }
        }
        let record_error = |e: ExecutionsError| Error::Record(e.to_string());
        let id = executions.new_id().map_err(record_error)?;
        let record = Execution::queued(id.clone(), &self.guest().app, self.name(), origin.trigger(), args.clone());
        executions.enqueue(&record).await.map_err(record_error)?;
        start(executions, self.clone(), record);
        Ok(id)
    }
}

/// The line of serial calls `record` runs in: its function's.
fn line(record: &Execution) -> String {
    format!("{}/{}", record.app, record.function)
}

/// Run a queued execution on its own task, unless it is running in this process already (or,
/// on a shared store, on another node).
pub(crate) fn start(executions: &Arc<Executions>, function: Function, record: Execution) {
    if !executions.claim(&record.id) {
        return;
    }
    let origin = Origin::of_queued(&record);
    if origin == Origin::Enqueue {
        executions.join_line(&line(&record), &record.id);
    }
    let executions = executions.clone();
    tokio::spawn(async move {
        let id = record.id.clone();
        if !executions.claim_store(&id).await {
            return;
        }
        // Renewed while it runs. A claim lost (this node cut off from the store for most of
        // the claim's ttl) stops it here, before another node may take it over; the record is
        // left to that node.
        let executed = tokio::select! {
            executed = execute(&executions, &function, origin, record) => executed,
            () = executions.keep_claimed(&id) => Ok(()),
        };
        if let Err(error) = executed {
            tracing::error!(%error, execution = %id, "execution bookkeeping failed");
        }
        executions.release(&id).await;
    });
}

/// Every attempt of one execution, until it is final (or cancelled).
async fn execute(
    executions: &Executions,
    function: &Function,
    origin: Origin,
    mut record: Execution,
) -> Result<(), ExecutionsError> {
    // Cancelled (or finished elsewhere) since it was read: nothing to run.
    if executions.get(&record.id).await.is_none_or(|r| r.status.is_final()) {
        return Ok(());
    }
    let cancel = executions.cancel_handle(&record.id).unwrap_or_default();
    if origin == Origin::Enqueue {
        let line = line(&record);
        tokio::select! {
            () = executions.wait_turn(&line, &record.id) => {}
            () = cancel.wait() => return cancelled(executions, record).await,
        }
    }
    let retry = Retry { backoff: Duration::from_millis(record.backoff_ms) };
    loop {
        let ready = tokio::select! {
            ready = ready_to_run(executions, function, &record) => ready,
            () = cancel.wait() => return cancelled(executions, record).await,
        };
        let (params, slot) = match ready {
            Ok(ready) => ready,
            Err(error) => {
                record.status = Status::Failed;
                record.error = Some(error);
                record.finished_ms = Some(now_ms());
                return finish(executions, record, None).await;
            }
        };
        record.status = Status::Running;
        record.started_ms = Some(now_ms());
        executions.put(&record, None).await?;
        // The attempt starts without waiting for its `running` record to reach the disk (it
        // rides the next group commit, and the final record's wait covers it): a crash before
        // that flush runs the execution again with this attempt not counted, like a queue lease.
        executions.commit_soon();
        let report = {
            let invocation = Invocation {
                attempt: record.attempt,
                execution: Some(&record.id),
                ..Invocation::new(function.guest(), function.name(), &record.input, origin.clone())
            };
            let cause =
                record.item.is_some().then(|| Cause { trigger: record.trigger.clone(), execution: record.id.clone() });
            let execution = Some((record.id.as_str(), record.attempt));
            invocation
                .run(Admission::Held(slot), async || function.run_in_sandbox(&params, cause, execution).await)
                .await
        };
        match report.result {
            Err(error) if record.attempt < record.max_attempts && error != CallError::Cancelled => {
                record.status = Status::Queued;
                record.error = Some(error_json(&error));
                record.not_before_ms = now_ms().saturating_add(retry.delay_ms(record.attempt));
                executions.put(&record, Some((&report.logs, record.attempt))).await?;
                record.attempt += 1;
                executions.put(&record, None).await?;
                executions.durable().await?;
            }
            result => {
                record.finish_with(result.as_ref());
                return finish(executions, record, Some(&report.logs)).await;
            }
        }
    }
}

/// Wait for the execution's `not_before` time, for the executions its arguments refer to, and
/// for a `concurrency` slot of its function (and for a pause to end): its arguments and the slot,
/// or the error that ends it.
async fn ready_to_run(
    executions: &Executions,
    function: &Function,
    record: &Execution,
) -> Result<(Vec<Val>, OwnedSemaphorePermit), Value> {
    let wait = record.not_before_ms.saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let params = match invocation::resolve_references(executions, &record.input).await {
        Ok(input) => {
            function.params(&input).map_err(|bad| json!({ "code": "bad-argument", "message": bad.to_string() }))
        }
        Err(error) => Err(error_json(&error)),
    }?;
    loop {
        match function.guest().admit().await {
            Ok(permit) => return Ok((params, permit)),
            Err(_paused) => tokio::time::sleep(PAUSE_POLL).await,
        }
    }
}

/// End an execution cancelled before its attempt started.
async fn cancelled(executions: &Executions, record: Execution) -> Result<(), ExecutionsError> {
    executions.end_cancelled(record).await.map(drop)
}

/// Write the final record, then leave the queue and release the execution's claim unless it
/// succeeded. (A crash in between leaves a queue entry whose record is final: it is dropped.)
async fn finish(executions: &Executions, record: Execution, logs: Option<&Logs>) -> Result<(), ExecutionsError> {
    executions.put(&record, logs.map(|l| (l, record.attempt))).await?;
    executions.dequeue(&record).await?;
    executions.durable().await
}
