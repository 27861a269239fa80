//! Cancelling an execution: a queued one never starts, a running one is interrupted; both end
//! `cancelled`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Cancel, Execution, Executions, ExecutionsError, Status, now_ms};

/// How long [`Executions::cancel`] waits for the task running an execution to end it.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// Why an execution cannot be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No execution has this id.
    #[error("no execution `{0}`")]
    Unknown(String),
    /// The execution is over already.
    #[error("execution `{id}` already {status}: only a queued or running execution can be cancelled")]
    Final {
        /// The execution.
        id: String,
        /// How it ended.
        status: Status,
    },
    /// The record could not be written.
    #[error(transparent)]
    Storage(#[from] ExecutionsError),
}

impl Executions {
    /// Cancel execution `id`. A queued one is marked `cancelled` and never starts; a running one
    /// is interrupted (within an epoch tick, or at once when parked in a host call) and its task
    /// marks it `cancelled`. Answers the record once final (or as it is after a few seconds, if
    /// its task has not ended it by then).
    pub async fn cancel(&self, id: &str) -> Result<Execution, CancelError> {
        let record = self.get(id).await.ok_or_else(|| CancelError::Unknown(id.to_string()))?;
        if record.status.is_final() {
            return Err(CancelError::Final { id: id.to_string(), status: record.status });
        }
        if self.claim(id) && self.claim_store(id).await {
            // No task runs it: end it here, holding the claim so none starts.
            let ended = self.end_cancelled(record).await;
            self.release(id).await;
            return Ok(ended?);
        }
        match self.cancel_handle(id) {
            Some(cancel) => cancel.request(),
            // Another node may run it.
            None => self.backend.request_cancel(id).await?,
        }
        self.wait(id, CANCEL_WAIT).await.ok_or_else(|| CancelError::Unknown(id.to_string()))
    }

    /// Mark `record` cancelled before it ran (again), and take it off the queue.
    pub(crate) async fn end_cancelled(&self, mut record: Execution) -> Result<Execution, ExecutionsError> {
        record.status = Status::Cancelled;
        record.error = Some(json!({ "code": "cancelled", "message": "cancelled by request before it started" }));
        record.finished_ms = Some(now_ms());
        self.put(&record, None).await?;
        self.dequeue(&record).await?;
        self.durable().await?;
        Ok(record)
    }

    /// The switch that cancels execution `id`, while a task of this process runs it.
    pub(crate) fn cancel_handle(&self, id: &str) -> Option<Arc<Cancel>> {
        self.running.lock().unwrap().get(id).cloned()
    }
}
