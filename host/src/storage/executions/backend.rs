//! What a store of executions provides, shaped for a networked store as much as for the embedded
//! one: records by id, lists by app, function and status with a cursor, the execution queue, and
//! claims for work that exactly one node may run.

use std::time::Duration;

use async_trait::async_trait;

use super::{Execution, ExecutionFilter, Executions, ExecutionsError};
use crate::outcome::Logs;

/// A store of execution records and of the queue of executions still to run.
#[async_trait]
pub trait ExecutionBackend: Send + Sync {
    /// A new, unused execution id; ids sort in creation order.
    async fn new_id(&self) -> Result<String, ExecutionsError>;

    /// The record with this id.
    async fn get(&self, id: &str) -> Result<Option<Execution>, ExecutionsError>;

    /// Store a record (created or changed), and with `logs` append that attempt's output.
    async fn put(&self, record: &Execution, logs: Option<(&Logs, u32)>) -> Result<(), ExecutionsError>;

    /// Store the final record of a call that ran at once, with its output, without waiting for
    /// it to be written: it is readable (through every other method) soon after.
    async fn record(&self, record: Execution, logs: Logs) -> Result<(), ExecutionsError>;

    /// Everything execution `id` printed: one header and its output per attempt.
    async fn logs(&self, id: &str) -> Result<Option<String>, ExecutionsError>;

    /// Records matching `filter`, newest first, at most `limit`, older than the cursor `before`
    /// (the id of the last record of the page before).
    async fn list(
        &self,
        filter: &ExecutionFilter,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Execution>, ExecutionsError>;

    /// Wait until execution `id` is final, or `timeout` passes: the last record seen.
    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<Execution>, ExecutionsError>;

    /// Store a queued record durably with its entry in the execution queue.
    async fn enqueue(&self, record: &Execution) -> Result<(), ExecutionsError>;

    /// Take a final execution off the queue, and release its `once` claim unless it succeeded.
    async fn dequeue(&self, record: &Execution) -> Result<(), ExecutionsError>;

    /// Ids of every execution in the queue, oldest first.
    async fn queued_ids(&self) -> Result<Vec<String>, ExecutionsError>;

    /// Claim `key` for the caller: true when no one else holds it. Exactly one claimant at a
    /// time runs the work `key` names (a queued execution, a schedule tick). A claim lasts until
    /// [`ExecutionBackend::release`], or `ttl` after it was taken on a store shared by several
    /// nodes, so that the work of a node that died is picked up by another; the holder renews it
    /// by claiming again before then.
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, ExecutionsError>;

    /// Give up the claim on `key`.
    async fn release(&self, key: &str) -> Result<(), ExecutionsError>;

    /// Wait until everything written so far survives a crash.
    async fn durable(&self) -> Result<(), ExecutionsError>;

    /// Delete the final records the retention does not keep: how many went.
    async fn prune(&self) -> Result<usize, ExecutionsError>;
}

/// The embedded store: sled trees, claims held in this process (a claim ends with the process,
/// so the `ttl` is not needed).
#[async_trait]
impl ExecutionBackend for Executions {
    async fn new_id(&self) -> Result<String, ExecutionsError> {
        Executions::new_id(self)
    }

    async fn get(&self, id: &str) -> Result<Option<Execution>, ExecutionsError> {
        Ok(Executions::get(self, id))
    }

    async fn put(&self, record: &Execution, logs: Option<(&Logs, u32)>) -> Result<(), ExecutionsError> {
        Executions::put(self, record, logs)
    }

    async fn record(&self, record: Execution, logs: Logs) -> Result<(), ExecutionsError> {
        self.record_final(record, logs);
        Ok(())
    }

    async fn logs(&self, id: &str) -> Result<Option<String>, ExecutionsError> {
        Ok(Executions::logs(self, id))
    }

    async fn list(
        &self,
        filter: &ExecutionFilter,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Execution>, ExecutionsError> {
        Ok(Executions::list(self, filter, before, limit))
    }

    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<Execution>, ExecutionsError> {
        Ok(Executions::wait(self, id, timeout).await)
    }

    async fn enqueue(&self, record: &Execution) -> Result<(), ExecutionsError> {
        Executions::enqueue(self, record).await
    }

    async fn dequeue(&self, record: &Execution) -> Result<(), ExecutionsError> {
        Executions::dequeue(self, record)
    }

    async fn queued_ids(&self) -> Result<Vec<String>, ExecutionsError> {
        Ok(Executions::queued_ids(self))
    }

    async fn claim(&self, key: &str, _ttl: Duration) -> Result<bool, ExecutionsError> {
        Ok(Executions::claim(self, key))
    }

    async fn release(&self, key: &str) -> Result<(), ExecutionsError> {
        Executions::release(self, key);
        Ok(())
    }

    async fn durable(&self) -> Result<(), ExecutionsError> {
        Executions::durable(self).await
    }

    async fn prune(&self) -> Result<usize, ExecutionsError> {
        Executions::prune(self)
    }
}
