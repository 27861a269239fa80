//! Durable execution records: every call (direct, over HTTP, triggered) gets one, with its input,
//! status, output or error, timings, attempt and captured logs. A plain storage library: it keeps
//! records and knows nothing of how calls run (the runner runs the queued ones).
//!
//! [`ExecutionBackend`] is what a store of executions provides; [`Executions`] is its embedded
//! implementation on sled. Trees: `executions` (id → record), `execution-logs` (id → text),
//! `execution-index` (ids by app, function, trigger and status), `execution-queue` (`run/ID`
//! for every queued execution not final yet, queued or running when the host stopped; and the
//! claims of `once` item triggers). Records are kept as [`Retention`] says.

mod backend;
mod cancel;
mod index;
mod record;
mod retention;
mod switch;
mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use tokio::sync::Notify;

pub use self::backend::ExecutionBackend;
pub use self::cancel::CancelError;
use self::index::entry as index_entry;
pub use self::record::{Execution, ExecutionFilter, Status, error_json, now_ms};
pub use self::retention::{PRUNE_EVERY, PRUNE_FIRST, Retention};
pub(crate) use self::switch::Cancel;
pub use self::writer::{PRUNE_AFTER_WRITES, WRITE_BATCH_EVERY};
use crate::outcome::Logs;
use crate::store::Store;

/// The execution-queue key of a queued execution.
fn run_key(id: &str) -> Vec<u8> {
    format!("run/{id}").into_bytes()
}

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

/// Every execution record of a host.
pub struct Executions {
    records: sled::Tree,
    logs: sled::Tree,
    index: sled::Tree,
    queue: sled::Tree,
    store: Arc<Store>,
    retention: Retention,
    /// Woken whenever a record changes.
    changed: Notify,
    /// Output of attempts running now, by execution id.
    live: std::sync::Mutex<HashMap<String, (u32, LiveLogs)>>,
    /// Records of finished direct calls not written yet: written in batches (every
    /// [`WRITE_BATCH_EVERY`], or sooner when many wait, or before any read).
    pending: std::sync::Mutex<Vec<(Execution, Logs)>>,
    /// Held while a batch taken from `pending` is written, so that a reader that wrote what was
    /// pending never misses a batch another thread took but has not written yet.
    writing: std::sync::Mutex<()>,
    /// The writer and pruning threads, until [`Executions::stop_writer`].
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The pruning thread, woken early when many records were written since it last ran.
    pruner: std::sync::OnceLock<std::thread::Thread>,
    /// Records written since the pruning thread was last woken.
    unpruned: AtomicU64,
    stopping: AtomicBool,
    /// Records read from their bytes (see [`Executions::decoded`]).
    decoded: AtomicU64,
    /// Claims held by this process (queued executions with a task here, by id), with the
    /// switch that cancels each.
    running: std::sync::Mutex<HashMap<String, Arc<Cancel>>>,
    /// Executions that run one at a time, by line (`app/function` of serial calls), in id order.
    lines: std::sync::Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Woken when an execution leaves its line.
    line_moved: Notify,
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

impl Executions {
    /// Open the trees (indexing records written before the index existed); until the host stops
    /// them, a thread writes waiting records every [`WRITE_BATCH_EVERY`] and another deletes
    /// what `retention` does not keep every [`PRUNE_EVERY`].
    pub(crate) fn open(store: &Arc<Store>, retention: Retention) -> Result<Arc<Executions>, sled::Error> {
        let executions = Arc::new(Executions {
            records: store.tree("executions")?,
            logs: store.tree("execution-logs")?,
            index: store.tree("execution-index")?,
            queue: store.tree("execution-queue")?,
            store: store.clone(),
            retention,
            changed: Notify::new(),
            live: Default::default(),
            pending: Default::default(),
            writing: Default::default(),
            threads: Default::default(),
            pruner: Default::default(),
            unpruned: Default::default(),
            stopping: Default::default(),
            decoded: Default::default(),
            running: Default::default(),
            lines: Default::default(),
            line_moved: Notify::new(),
        });
        executions.build_index()?;
        executions.start_threads();
        Ok(executions)
    }

    /// A new, unused execution id.
    pub(crate) fn new_id(&self) -> Result<String, ExecutionsError> {
        Ok(format!("{:016x}", self.store.next_id().map_err(storage)?))
    }

    /// The record with this id.
    pub fn get(&self, id: &str) -> Option<Execution> {
        self.write_pending();
        let bytes = self.records.get(id.as_bytes()).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    /// What the execution printed so far: each finished attempt, then the running one's output
    /// so far (each starts with a header line).
    pub fn logs(&self, id: &str) -> Option<String> {
        self.write_pending();
        let stored = self.logs.get(id.as_bytes()).ok()?.map(|b| String::from_utf8_lossy(&b).into_owned());
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
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            let record = self.get(id)?;
            if record.status.is_final() {
                return Some(record);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Some(record);
            }
        }
    }

    /// Store a record (and optionally a new attempt's logs).
    pub(crate) fn put(&self, record: &Execution, logs: Option<(&Logs, u32)>) -> Result<(), ExecutionsError> {
        use sled::Transactional;
        // The record and its index entry in one transaction: a crash between them would leave a
        // stale status in the index, and status-filtered lists would miss the record for good.
        let bytes = serde_json::to_vec(record).map_err(storage)?;
        let (key, value) = index_entry(record);
        (&self.records, &self.index)
            .transaction(|(records, index)| {
                records.insert(record.id.as_bytes(), bytes.as_slice())?;
                index.insert(key.as_slice(), value.as_slice())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| storage(format!("{e:?}")))?;
        if let Some((logs, attempt)) = logs {
            let mut text = self.logs(&record.id).unwrap_or_default();
            text.push_str(&format_attempt(logs, attempt));
            self.logs.insert(record.id.as_bytes(), text.as_bytes()).map_err(storage)?;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Record a queued execution durably, with its entry in the execution queue.
    pub(crate) async fn enqueue(&self, record: &Execution) -> Result<(), ExecutionsError> {
        self.put(record, None)?;
        self.queue.insert(run_key(&record.id), record.id.as_bytes()).map_err(storage)?;
        self.durable().await
    }

    /// Take a final execution off the queue, and release its claim unless it succeeded.
    pub(crate) fn dequeue(&self, record: &Execution) -> Result<(), ExecutionsError> {
        self.queue.remove(run_key(&record.id)).map_err(storage)?;
        if let Some(claim) = record.claim.as_ref().filter(|_| record.status != Status::Succeeded) {
            self.queue.remove(claim.as_bytes()).map_err(storage)?;
        }
        Ok(())
    }

    /// Remove event `key` from `events` (a tree of the same store) and queue `records`, in one
    /// transaction, so an event turns into its executions exactly once. A record whose claim is
    /// held already is left out (and the claims of the others are taken).
    pub(crate) fn accept_event(
        &self,
        events: &sled::Tree,
        key: &[u8],
        records: &[Execution],
    ) -> Result<(), ExecutionsError> {
        use sled::Transactional;
        use sled::transaction::ConflictableTransactionError;
        let abort = |e: serde_json::Error| ConflictableTransactionError::Abort(e.to_string());
        (events, &self.records, &self.queue, &self.index)
            .transaction(|(events, records_tree, queue, index)| {
                events.remove(key)?;
                for record in records {
                    if let Some(claim) = &record.claim {
                        if queue.get(claim.as_bytes())?.is_some() {
                            continue;
                        }
                        queue.insert(claim.as_bytes(), record.id.as_bytes())?;
                    }
                    records_tree.insert(record.id.as_bytes(), serde_json::to_vec(record).map_err(abort)?)?;
                    let (key, value) = index_entry(record);
                    index.insert(key, value)?;
                    queue.insert(run_key(&record.id), record.id.as_bytes())?;
                }
                Ok(())
            })
            .map_err(|e| storage(format!("{e:?}")))
    }

    /// Ids of every queued execution not final yet, oldest first.
    pub(crate) fn queued_ids(&self) -> Vec<String> {
        let ids = self.queue.scan_prefix("run/").values().filter_map(Result::ok);
        ids.map(|id| String::from_utf8_lossy(&id).into_owned()).collect()
    }

    /// Claim `key` (an execution id) for this process: true if no one held it, and until
    /// [`Executions::release`] no one else gets it. The claim holds the switch that cancels the
    /// execution. In one process a claim ends with its holder, so it needs no expiry; a
    /// networked store would let it lapse after a time (see [`ExecutionBackend::claim`]).
    pub(crate) fn claim(&self, key: &str) -> bool {
        let mut running = self.running.lock().unwrap();
        if running.contains_key(key) {
            return false;
        }
        running.insert(key.to_string(), Arc::default());
        true
    }

    /// Whether this process holds the claim on `key`.
    pub(crate) fn is_claimed(&self, key: &str) -> bool {
        self.running.lock().unwrap().contains_key(key)
    }

    /// Give up the claim on `key`; it also leaves any line it waited in.
    pub(crate) fn release(&self, key: &str) {
        self.running.lock().unwrap().remove(key);
        let mut lines = self.lines.lock().unwrap();
        lines.values_mut().for_each(|ids| {
            ids.remove(key);
        });
        lines.retain(|_, ids| !ids.is_empty());
        drop(lines);
        self.line_moved.notify_waiters();
    }

    /// Put claimed execution `id` in `line`: executions of a line run one at a time, in id order.
    pub(crate) fn join_line(&self, line: &str, id: &str) {
        self.lines.lock().unwrap().entry(line.to_string()).or_default().insert(id.to_string());
    }

    /// Wait until `id` is the oldest execution of `line` still to run.
    pub(crate) async fn wait_turn(&self, line: &str, id: &str) {
        loop {
            let moved = self.line_moved.notified();
            let first = self.lines.lock().unwrap().get(line).and_then(|ids| ids.first().cloned());
            if first.is_none_or(|first| first == id) {
                return;
            }
            moved.await;
        }
    }

    /// Wait until every record written so far is on disk.
    pub(crate) async fn durable(&self) -> Result<(), ExecutionsError> {
        self.store.durable().await.map_err(ExecutionsError::NotDurable)
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
#[cfg(test)]
mod tests;
