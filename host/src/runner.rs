//! Running queued executions: jobs (`async`), serial calls (`enqueue`) and the executions of
//! item, topic and schedule triggers, all with the same life.
//!
//! A queued execution has a durable record and an entry `run/ID` in the execution queue until
//! it is final. One task per execution runs it: it waits for its turn (serial calls of one
//! function run one at a time, in id order), for its `not_before` time, for the executions its
//! arguments refer to (`{"$execution": ID}`), and for a `concurrency` slot of its function (and
//! for a pause to end). A failed attempt is retried after the record's backoff, doubled each
//! time, until its attempts are used up. An execution found queued or running when triggers
//! start (its host stopped) runs again: delivery is at least once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::call::CallError;
use crate::executions::{Execution, Executions, Status, error_json, now_ms};
use crate::storage::datasets::Cause;
use crate::{Function, Logs};

/// The trigger of calls started with [`Function::spawn`].
pub const ASYNC: &str = "async";

/// The trigger of calls started with [`Function::enqueue`].
pub const ENQUEUE: &str = "enqueue";

/// How often a paused function is checked for a resume by executions waiting on it.
const PAUSE_POLL: Duration = Duration::from_millis(200);

/// The longest wait for an execution an argument refers to.
const REFERENCE_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Run a queued execution on its own task, unless it is running in this process already.
pub(crate) fn start(executions: &Arc<Executions>, function: Function, record: Execution) {
    if !executions.claim(&record) {
        return;
    }
    let executions = executions.clone();
    tokio::spawn(async move {
        let id = record.id.clone();
        if let Err(error) = execute(&executions, &function, record).await {
            tracing::error!(%error, execution = %id, "execution bookkeeping failed");
        }
        executions.release(&id);
    });
}

/// Every attempt of one execution, until it is final (or cancelled).
async fn execute(executions: &Executions, function: &Function, mut record: Execution) -> Result<(), String> {
    // Cancelled (or finished elsewhere) since it was read: nothing to run.
    if executions.get(&record.id).is_none_or(|r| r.status.is_final()) {
        return Ok(());
    }
    let cancel = executions.cancel_handle(&record.id).unwrap_or_default();
    if record.trigger == ENQUEUE {
        tokio::select! {
            () = executions.wait_turn(&record) => {}
            () = cancel.wait() => return cancelled(executions, record).await,
        }
    }
    let guest = function.guest().clone();
    loop {
        let ready = tokio::select! {
            ready = ready_to_run(executions, function, &record) => ready,
            () = cancel.wait() => return cancelled(executions, record).await,
        };
        let (params, _permit) = match ready {
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
        executions.put(&record, None)?;
        executions.durable().await?;
        let cause =
            record.item.is_some().then(|| Cause { trigger: record.trigger.clone(), execution: record.id.clone() });
        let report = function.run_admitted(&params, cause, Some((&record.id, record.attempt))).await;
        let kind = match record.trigger.as_str() {
            ASYNC => ASYNC,
            ENQUEUE => ENQUEUE,
            _ => "trigger",
        };
        guest.metrics.record(&guest.app, function.name(), kind, report.outcome(), report.elapsed);
        match report.result {
            Err(error) if record.attempt < record.max_attempts && error != CallError::Cancelled => {
                let backoff = record.backoff_ms.saturating_mul(1 << (record.attempt - 1).min(16));
                record.status = Status::Queued;
                record.error = Some(error_json(&error));
                record.not_before_ms = now_ms() + backoff;
                executions.put(&record, Some((&report.logs, record.attempt)))?;
                record.attempt += 1;
                executions.put(&record, None)?;
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
) -> Result<(Vec<wasmtime::component::Val>, tokio::sync::OwnedSemaphorePermit), Value> {
    let wait = record.not_before_ms.saturating_sub(now_ms());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let params = match resolve_references(executions, &record.input).await {
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
async fn cancelled(executions: &Executions, record: Execution) -> Result<(), String> {
    executions.end_cancelled(record).await.map(drop).map_err(|e| e.to_string())
}

/// Write the final record, then leave the queue and release the execution's claim unless it
/// succeeded. (A crash in between leaves a queue entry whose record is final: it is dropped.)
async fn finish(executions: &Executions, record: Execution, logs: Option<&Logs>) -> Result<(), String> {
    executions.put(&record, logs.map(|l| (l, record.attempt)))?;
    executions.dequeue(&record)?;
    executions.durable().await
}

/// The ids of every `{"$execution": ID}` in `value`.
pub(crate) fn references(value: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    fn walk(value: &Value, ids: &mut Vec<String>) {
        match value {
            Value::Object(map) => match reference(map) {
                Some(id) => ids.push(id.to_string()),
                None => map.values().for_each(|v| walk(v, ids)),
            },
            Value::Array(items) => items.iter().for_each(|v| walk(v, ids)),
            _ => {}
        }
    }
    walk(value, &mut ids);
    ids
}

fn reference(map: &Map<String, Value>) -> Option<&str> {
    match (map.len(), map.get("$execution")) {
        (1, Some(Value::String(id))) => Some(id),
        _ => None,
    }
}

/// `value` with every `{"$execution": ID}` replaced by that execution's result, once it has one.
/// An execution that does not exist or did not succeed is a [`CallError::Reference`].
pub(crate) async fn resolve_references(executions: &Executions, value: &Value) -> Result<Value, CallError> {
    let ids = references(value);
    if ids.is_empty() {
        return Ok(value.clone());
    }
    let mut outputs = std::collections::HashMap::new();
    for id in ids {
        let refused = |message: String| CallError::Reference { execution: id.clone(), message };
        let record = executions.wait(&id, REFERENCE_WAIT).await.ok_or_else(|| refused("no such execution".into()))?;
        match (record.status, record.output) {
            (Status::Succeeded, Some(output)) => outputs.insert(id, output),
            (Status::Succeeded, None) => outputs.insert(id, Value::Null),
            (status, _) => {
                let error = record.error.as_ref().and_then(|e| e["message"].as_str()).unwrap_or("no result");
                return Err(refused(format!("it ended {}: {error}", json!(status).as_str().unwrap_or("?"))));
            }
        };
    }
    fn substitute(value: &Value, outputs: &std::collections::HashMap<String, Value>) -> Value {
        match value {
            Value::Object(map) => match reference(map) {
                Some(id) => outputs[id].clone(),
                None => Value::Object(map.iter().map(|(k, v)| (k.clone(), substitute(v, outputs))).collect()),
            },
            Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, outputs)).collect()),
            other => other.clone(),
        }
    }
    Ok(substitute(value, &outputs))
}
