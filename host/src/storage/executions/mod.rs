//! Durable execution records: every call (direct, over HTTP, triggered) gets one, with its input,
//! status, output or error, timings, attempt and captured logs. A plain storage library: it keeps
//! records and knows nothing of how calls run (the runner runs the queued ones).
//!
//! [`ExecutionBackend`] is what a store of executions provides (records, logs, the queue,
//! claims); [`SledExecutions`] is the embedded one. [`Executions`] is what the host uses: a
//! backend, plus what only this process knows: the output of attempts running here, the switches
//! that cancel them, and the serial lines they wait in.

mod backend;
mod cancel;
mod claims;
mod nats;
mod record;
mod sled;
mod switch;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

pub use self::backend::{CancelRequests, EventLog, EventRef, ExecutionBackend};
pub use self::cancel::CancelError;
pub use self::nats::NatsExecutions;
pub use self::record::{Execution, ExecutionFilter, Status, error_json};
pub use self::sled::{PRUNE_AFTER_WRITES, PRUNE_EVERY, PRUNE_FIRST, Retention, SledExecutions, WRITE_BATCH_EVERY};
pub(crate) use self::switch::Cancel;
pub use crate::clock::now_ms;
use crate::outcome::Logs;

/// How long a claim on a queued execution holds without a renewal: on a store shared by several
/// nodes, the work of a node that died is picked up by another within about this long (the
/// dispatchers of the others try to claim a queued execution again a second after each refusal).
pub const CLAIM_TTL: Duration = Duration::from_secs(15);

/// How often the claim of a running execution is renewed (each try waits this long at most):
/// a fifth of [`CLAIM_TTL`], so that the store may not answer for about 9 s (a NATS leader
/// election takes about 6) before the node gives the execution up.
pub const CLAIM_RENEW_EVERY: Duration = Duration::from_secs(3);

/// Why the execution store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionsError {
    /// The underlying store could not read or write.
    #[error("execution records: {0}")]
    Storage(String),
    /// Written, but the store could not make it durable.
    #[error("{0}")]
    NotDurable(String),
}

fn storage(e: impl std::fmt::Display) -> ExecutionsError {
    ExecutionsError::Storage(e.to_string())
}

/// What an attempt running now has printed so far, asked for whenever its logs are read.
pub(crate) type LiveLogs = Box<dyn Fn() -> Logs + Send + Sync>;

/// Every execution record of a host: the records in an [`ExecutionBackend`], and the executions
/// running in this process.
pub struct Executions {
    backend: Arc<dyn ExecutionBackend>,
    /// Output of attempts running now, by execution id.
    live: std::sync::Mutex<HashMap<String, (u32, LiveLogs)>>,
    /// Claims held by this process (queued executions with a task here, by id), with the
    /// switch that cancels each.
    running: Arc<std::sync::Mutex<HashMap<String, Arc<Cancel>>>>,
    /// Executions that run one at a time, by line (`app/function` of serial calls), in id order.
    lines: std::sync::Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Woken when an execution leaves its line.
    line_moved: Notify,
    /// Lines whose store claim this process holds (see [`Executions::claim_store`]); locked
    /// while one is claimed or released, so that two tasks of a line never race for it.
    held_lines: tokio::sync::Mutex<BTreeSet<String>>,
    /// When the store last refused the claim on a key, for keys refused lately.
    refused: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

/// Keeps an attempt's output readable through [`Executions::logs`] until dropped.
pub(crate) struct Watched<'a> {
    executions: &'a Executions,
    id: String,
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        self.executions.live.lock().unwrap().remove(&self.id);
    }
}

/// A read that failed: logged, and answered as if nothing was found.
fn found<T>(read: Result<Option<T>, ExecutionsError>) -> Option<T> {
    read.unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read execution records");
        None
    })
}

impl Executions {
    /// The executions kept in `backend`.
    pub fn new(backend: Arc<dyn ExecutionBackend>) -> Executions {
        let running: Arc<std::sync::Mutex<HashMap<String, Arc<Cancel>>>> = Arc::default();
        let here = running.clone();
        backend.on_cancel_request(Box::new(move |id| {
            if let Some(cancel) = here.lock().unwrap().get(id) {
                cancel.request();
            }
        }));
        Executions {
            backend,
            live: Default::default(),
            running,
            lines: Default::default(),
            line_moved: Notify::new(),
            held_lines: Default::default(),
            refused: Default::default(),
        }
    }

    /// A new, unused execution id.
    pub(crate) fn new_id(&self) -> Result<String, ExecutionsError> {
        self.backend.new_id()
    }

    /// The record with this id.
    pub async fn get(&self, id: &str) -> Option<Execution> {
        found(self.backend.get(id).await)
    }

    /// Records matching `filter`, newest first, at most `limit`, older than `before` (an id).
    pub async fn list(&self, filter: &ExecutionFilter, before: Option<&str>, limit: usize) -> Vec<Execution> {
        self.backend.list(filter, before, limit).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot list execution records");
            Vec::new()
        })
    }

    /// What the execution printed so far: each finished attempt, then the running one's output
    /// so far (each starts with a header line).
    pub async fn logs(&self, id: &str) -> Option<String> {
        let stored = found(self.backend.logs(id).await);
        let live = self.live.lock().unwrap().get(id).map(|(attempt, snapshot)| format_attempt(&snapshot(), *attempt));
        match (stored, live) {
            (None, None) => None,
            (stored, live) => Some(stored.unwrap_or_default() + &live.unwrap_or_default()),
        }
    }

    /// Make the output of attempt `attempt` of execution `id` readable while it runs: `snapshot`
    /// says what it printed so far.
    pub(crate) fn watch(&self, id: &str, attempt: u32, snapshot: LiveLogs) -> Watched<'_> {
        self.live.lock().unwrap().insert(id.to_string(), (attempt, snapshot));
        Watched { executions: self, id: id.to_string() }
    }

    /// Wait until the execution is final (or `timeout` passes); the last record seen.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Option<Execution> {
        found(self.backend.wait(id, timeout).await)
    }

    /// Delete the final records the retention does not keep, with their logs; how many went.
    /// The embedded store does this in the background every [`PRUNE_EVERY`].
    pub async fn prune(&self) -> Result<usize, ExecutionsError> {
        self.backend.prune().await
    }

    /// Store a record (and optionally a new attempt's logs).
    pub(crate) async fn put(&self, record: &Execution, logs: Option<(&Logs, u32)>) -> Result<(), ExecutionsError> {
        self.backend.put(record, logs).await
    }

    /// Keep the final record of a call that ran at once (`call`, `http`, `map`, or a queue
    /// trigger's delivery), without waiting for it to be written.
    pub(crate) fn record_final(&self, record: Execution, logs: Logs) {
        self.backend.record(record, logs);
    }

    /// Record a queued execution durably, with its entry in the execution queue.
    pub(crate) async fn enqueue(&self, record: &Execution) -> Result<(), ExecutionsError> {
        self.backend.enqueue(record).await
    }

    /// Take a final execution off the queue, and release its claim unless it succeeded.
    pub(crate) async fn dequeue(&self, record: &Execution) -> Result<(), ExecutionsError> {
        self.backend.dequeue(record).await
    }

    /// Remove each event from its log and queue its records, exactly once (see
    /// [`ExecutionBackend::accept_events`]).
    pub(crate) async fn accept_events(&self, events: &[(EventRef<'_>, Vec<Execution>)]) -> Result<(), ExecutionsError> {
        self.backend.accept_events(events).await
    }

    /// Ids of every queued execution not final yet, oldest first.
    pub(crate) async fn queued_ids(&self) -> Result<Vec<String>, ExecutionsError> {
        self.backend.queued_ids().await
    }

    /// When schedule `schedule` (`APP/NAME`) last fired.
    pub(crate) async fn last_fire(&self, schedule: &str) -> Result<Option<u64>, ExecutionsError> {
        self.backend.last_fire(schedule).await
    }

    /// Keep `fire_ms` as the last fire time of `schedule` (unless a later one is kept).
    pub(crate) async fn save_fire(&self, schedule: &str, fire_ms: u64) -> Result<(), ExecutionsError> {
        self.backend.save_fire(schedule, fire_ms).await
    }

    /// Woken when an item or topic event is written (see [`ExecutionBackend::new_events`]).
    pub(crate) fn new_events(&self) -> &Notify {
        self.backend.new_events()
    }

    /// Wait until every record written so far is on disk.
    pub(crate) async fn durable(&self) -> Result<(), ExecutionsError> {
        self.backend.durable().await
    }

    /// Start writing every record written so far to disk, without waiting for it.
    pub(crate) fn commit_soon(&self) {
        self.backend.commit_soon();
    }

    /// Stop the backend's background work and write what waits (the host does this as it is
    /// dropped).
    pub(crate) fn close(&self) {
        self.backend.close();
    }
}

/// One attempt's output as kept in the logs: a header, stdout, stderr.
fn format_attempt(logs: &Logs, attempt: u32) -> String {
    let mut text = format!("--- attempt {attempt} ---\n");
    for (stream, output) in [("stdout", &logs.stdout), ("stderr", &logs.stderr)] {
        if !output.is_empty() {
            text.push_str(&format!("[{stream}]\n{output}"));
            if !output.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    if logs.dropped > 0 {
        text.push_str(&format!("[{} bytes over the `output` limit dropped]\n", logs.dropped));
    }
    text
}

#[cfg(test)]
pub(crate) mod suite;
