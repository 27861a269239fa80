//! Durable execution records: every call (direct, over HTTP, triggered) gets one, with its input,
//! status, output or error, timings, attempt and captured logs.
//!
//! Trees: `executions` (id → record), `execution-logs` (id → text), `execution-queue` (`run/ID`
//! for every queued execution not final yet, queued or running when the host stopped; and the
//! claims of `once` item triggers). [`crate::runner`] runs the queued ones.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::call::{CallError, LiveOutput, Logs};
use crate::store::Store;

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
}

impl Status {
    /// Whether the execution is over.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::TimedOut)
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        serde_json::from_value(Value::String(s.to_string()))
            .map_err(|_| format!("invalid status `{s}`: expected queued, running, succeeded, failed or timed-out"))
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

    /// Set how its last attempt ended: the final status, the output or the error, the time.
    pub(crate) fn finish_with(&mut self, result: Result<&Value, &CallError>) {
        self.status = match result {
            Ok(_) => Status::Succeeded,
            Err(CallError::Timeout { .. }) => Status::TimedOut,
            Err(_) => Status::Failed,
        };
        self.output = result.ok().cloned();
        self.error = result.err().map(error_json);
        self.finished_ms = Some(now_ms());
    }
}

/// Which executions to list.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only this app.
    pub app: Option<String>,
    /// Only this function (`function.export`).
    pub function: Option<String>,
    /// Only this trigger (`call`, `http` or a trigger name).
    pub trigger: Option<String>,
    /// Only this status.
    pub status: Option<Status>,
}

impl ExecutionFilter {
    fn matches(&self, e: &Execution) -> bool {
        self.app.as_ref().is_none_or(|a| *a == e.app)
            && self.function.as_ref().is_none_or(|f| *f == e.function)
            && self.trigger.as_ref().is_none_or(|t| *t == e.trigger)
            && self.status.is_none_or(|s| s == e.status)
    }
}

/// The error of a failed call as the execution keeps it.
pub fn error_json(error: &CallError) -> Value {
    let mut value = json!({ "code": error.code(), "message": error.to_string() });
    if let CallError::Guest { value: guest } = error {
        value["error"] = guest.clone();
    }
    value
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The execution-queue key of a queued execution.
pub(crate) fn run_key(id: &str) -> Vec<u8> {
    format!("run/{id}").into_bytes()
}

fn storage(e: impl std::fmt::Display) -> String {
    format!("execution records: {e}")
}

/// Every execution record of a host.
pub struct Executions {
    pub(crate) records: sled::Tree,
    logs: sled::Tree,
    pub(crate) queue: sled::Tree,
    store: Arc<Store>,
    /// Woken whenever a record changes.
    changed: Notify,
    /// Output of attempts running now, by execution id.
    live: std::sync::Mutex<std::collections::HashMap<String, (u32, LiveOutput)>>,
    /// Records of finished direct calls not written yet: written in batches (every
    /// [`WRITE_BATCH_EVERY`], or sooner when many wait, or before any read).
    pending: std::sync::Mutex<Vec<(Execution, Logs)>>,
    /// The thread writing `pending` in batches, until [`Executions::stop_writer`].
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    stopping: std::sync::atomic::AtomicBool,
    /// Queued executions with a task in this process.
    running: std::sync::Mutex<HashSet<String>>,
    /// Serial (`enqueue`) executions with a task here, by `app/function`, in id order.
    serial: std::sync::Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Woken when a serial execution ends.
    serial_done: Notify,
}

/// How long a direct call's record may wait in memory before it is written to sled.
pub const WRITE_BATCH_EVERY: Duration = Duration::from_millis(100);

/// Records waiting that make the next direct call write them at once.
const WRITE_BATCH_SIZE: usize = 512;

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
    /// Open the trees; a thread writes waiting records every [`WRITE_BATCH_EVERY`] until the
    /// returned value is dropped.
    pub(crate) fn open(store: &Arc<Store>) -> Result<Arc<Executions>, sled::Error> {
        let executions = Arc::new(Executions {
            records: store.tree("executions")?,
            logs: store.tree("execution-logs")?,
            queue: store.tree("execution-queue")?,
            store: store.clone(),
            changed: Notify::new(),
            live: Default::default(),
            pending: Default::default(),
            writer: Default::default(),
            stopping: Default::default(),
            running: Default::default(),
            serial: Default::default(),
            serial_done: Notify::new(),
        });
        let weak = Arc::downgrade(&executions);
        let writer = std::thread::Builder::new()
            .name("execution-writer".into())
            .spawn(move || {
                while let Some(executions) = weak.upgrade().filter(|e| !e.stopping.load(Ordering::Acquire)) {
                    executions.write_pending();
                    drop(executions);
                    std::thread::park_timeout(WRITE_BATCH_EVERY);
                }
            })
            .expect("spawn execution writer thread");
        *executions.writer.lock().unwrap() = Some(writer);
        Ok(executions)
    }

    /// Stop the writer thread and write what waits. The host calls this as it is dropped, so the
    /// store is never closed from the writer thread: with several sled databases in one process,
    /// a database flushed on close from there could hang sled's process-wide lock.
    pub(crate) fn stop_writer(&self) {
        self.stopping.store(true, Ordering::Release);
        if let Some(writer) = self.writer.lock().unwrap().take() {
            writer.thread().unpark();
            let _ = writer.join();
        }
        self.write_pending();
    }

    /// Write the records of direct calls that wait in memory, in one batch.
    pub(crate) fn write_pending(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        if pending.is_empty() {
            return;
        }
        // Plain inserts, not `apply_batch`: a batch takes sled's process-wide write lock, which
        // stalls every other reader of every database in the process while it waits.
        let write = |record: &Execution, output: &Logs| -> Result<(), String> {
            self.records.insert(record.id.as_bytes(), serde_json::to_vec(record).map_err(storage)?).map_err(storage)?;
            if !(output.stdout.is_empty() && output.stderr.is_empty()) {
                self.logs
                    .insert(record.id.as_bytes(), format_attempt(output, record.attempt).into_bytes())
                    .map_err(storage)?;
            }
            Ok(())
        };
        for (record, output) in &pending {
            if let Err(error) = write(record, output) {
                tracing::warn!(%error, execution = %record.id, "cannot record an execution");
            }
        }
        self.changed.notify_waiters();
        self.store.flush_soon();
    }

    /// A new, unused execution id.
    pub(crate) fn new_id(&self) -> Result<String, String> {
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
        let live =
            self.live.lock().unwrap().get(id).map(|(attempt, output)| format_attempt(&output.snapshot(), *attempt));
        match (stored, live) {
            (None, None) => None,
            (stored, live) => Some(stored.unwrap_or_default() + &live.unwrap_or_default()),
        }
    }

    /// Make the output of attempt `attempt` of execution `id` readable while it runs.
    pub(crate) fn watch(&self, id: &str, attempt: u32, output: LiveOutput) -> Watched<'_> {
        self.live.lock().unwrap().insert(id.to_string(), (attempt, output));
        Watched { executions: self, id: id.to_string() }
    }

    /// Records matching `filter`, newest first, at most `limit`, older than `before` (an id).
    pub fn list(&self, filter: &ExecutionFilter, before: Option<&str>, limit: usize) -> Vec<Execution> {
        self.write_pending();
        let end = match before {
            Some(id) => std::ops::Bound::Excluded(id.as_bytes().to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        self.records
            .range((std::ops::Bound::Unbounded, end))
            .rev()
            .filter_map(|entry| serde_json::from_slice::<Execution>(&entry.ok()?.1).ok())
            .filter(|e| filter.matches(e))
            .take(limit)
            .collect()
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
    pub(crate) fn put(&self, record: &Execution, logs: Option<(&Logs, u32)>) -> Result<(), String> {
        self.records.insert(record.id.as_bytes(), serde_json::to_vec(record).map_err(storage)?).map_err(storage)?;
        if let Some((logs, attempt)) = logs {
            let mut text = self.logs(&record.id).unwrap_or_default();
            text.push_str(&format_attempt(logs, attempt));
            self.logs.insert(record.id.as_bytes(), text.as_bytes()).map_err(storage)?;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Record a finished direct call (`call`, `http`, `map`, or a queue trigger's delivery). It is written to sled in a batch within
    /// [`WRITE_BATCH_EVERY`] and reaches the disk with the next group commit; the caller does
    /// not wait for either.
    pub(crate) fn record_call(
        &self,
        (app, function, trigger, attempt): (&str, &str, &str, u32),
        input: Value,
        result: Result<&Value, &CallError>,
        logs: &Logs,
        started_ms: u64,
    ) {
        let Ok(id) = self.new_id() else { return };
        let mut record = Execution { attempt, ..Execution::queued(id, app, function, trigger, input) };
        (record.queued_ms, record.started_ms, record.not_before_ms) = (started_ms, Some(started_ms), started_ms);
        record.finish_with(result);
        let mut pending = self.pending.lock().unwrap();
        pending.push((record, logs.clone()));
        if pending.len() >= WRITE_BATCH_SIZE {
            drop(pending);
            self.write_pending();
        }
    }

    /// Record a queued execution durably, with its entry in the execution queue.
    pub(crate) async fn enqueue(&self, record: &Execution) -> Result<(), String> {
        self.put(record, None)?;
        self.queue.insert(run_key(&record.id), record.id.as_bytes()).map_err(storage)?;
        self.durable().await
    }

    /// Take a final execution off the queue, and release its claim unless it succeeded.
    pub(crate) fn dequeue(&self, record: &Execution) -> Result<(), String> {
        self.queue.remove(run_key(&record.id)).map_err(storage)?;
        if let Some(claim) = record.claim.as_ref().filter(|_| record.status != Status::Succeeded) {
            self.queue.remove(claim.as_bytes()).map_err(storage)?;
        }
        Ok(())
    }

    /// Ids of every queued execution not final yet, oldest first.
    pub(crate) fn queued_ids(&self) -> Vec<String> {
        let ids = self.queue.scan_prefix("run/").values().filter_map(Result::ok);
        ids.map(|id| String::from_utf8_lossy(&id).into_owned()).collect()
    }

    /// Note that a task of this process runs `record`; false if one already does.
    pub(crate) fn claim(&self, record: &Execution) -> bool {
        if !self.running.lock().unwrap().insert(record.id.clone()) {
            return false;
        }
        if record.trigger == crate::runner::ENQUEUE {
            let key = format!("{}/{}", record.app, record.function);
            self.serial.lock().unwrap().entry(key).or_default().insert(record.id.clone());
        }
        true
    }

    /// Whether a task of this process runs execution `id`.
    pub(crate) fn is_running(&self, id: &str) -> bool {
        self.running.lock().unwrap().contains(id)
    }

    /// The task running execution `id` is over.
    pub(crate) fn release(&self, id: &str) {
        self.running.lock().unwrap().remove(id);
        let mut serial = self.serial.lock().unwrap();
        serial.values_mut().for_each(|ids| {
            ids.remove(id);
        });
        serial.retain(|_, ids| !ids.is_empty());
        drop(serial);
        self.serial_done.notify_waiters();
    }

    /// Wait until `record` is the oldest serial execution of its function still to run.
    pub(crate) async fn wait_turn(&self, record: &Execution) {
        let key = format!("{}/{}", record.app, record.function);
        loop {
            let done = self.serial_done.notified();
            let first = self.serial.lock().unwrap().get(&key).and_then(|ids| ids.first().cloned());
            if first.is_none_or(|first| first == record.id) {
                return;
            }
            done.await;
        }
    }

    /// Wait until every record written so far is on disk.
    pub(crate) async fn durable(&self) -> Result<(), String> {
        self.store.durable().await
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
