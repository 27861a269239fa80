//! The embedded [`ExecutionBackend`]: sled trees in the host's store. Trees: `executions`
//! (id → record), `execution-logs` (id → text), `execution-index` (ids by app, function,
//! trigger and status), `execution-queue` (`run/ID` for every queued execution not final yet,
//! queued or running when the host stopped; and the claims of `once` item triggers),
//! `schedule-fires` (`APP/SCHEDULE` → last fire time), and the record log (`execution-log`,
//! `execution-log-index`: see [`log`]). Records of direct calls are appended to the log in
//! batches by a thread; another deletes what [`Retention`] does not keep.

mod index;
mod log;
mod retention;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;

use self::index::entry as index_entry;
pub use self::retention::{PRUNE_EVERY, PRUNE_FIRST, Retention};
pub use self::writer::{PRUNE_AFTER_WRITES, WRITE_BATCH_EVERY};
use crate::files::blocking;
use crate::outcome::Logs;
use crate::storage::executions::{
    CancelRequests, EventLog, EventRef, Execution, ExecutionBackend, ExecutionFilter, ExecutionsError, Status,
    format_attempt, storage,
};
use crate::store::Store;

/// The execution-queue key of a queued execution.
fn run_key(id: &str) -> Vec<u8> {
    format!("run/{id}").into_bytes()
}

/// How long after it expired a claim is forgotten.
const FORGET_CLAIMS_AFTER: Duration = Duration::from_secs(3600);

/// Execution records and the execution queue in sled.
pub struct SledExecutions {
    /// This backend, for reads handed to the blocking pool.
    me: Weak<SledExecutions>,
    records: sled::Tree,
    logs: sled::Tree,
    index: sled::Tree,
    queue: sled::Tree,
    /// The record log's batches and their summaries (see [`log`]), and the summaries in memory.
    log_batches: sled::Tree,
    log_index: sled::Tree,
    log: std::sync::RwLock<log::RecordLog>,
    /// Last fire time of each schedule (`APP/SCHEDULE` → ms, big-endian).
    fires: sled::Tree,
    store: Arc<Store>,
    retention: Retention,
    /// Woken whenever a record changes.
    changed: Notify,
    /// Records of finished direct calls not written yet: written in batches (every
    /// [`WRITE_BATCH_EVERY`], or sooner when many wait, or before any read).
    pending: std::sync::Mutex<Vec<(Execution, Logs)>>,
    /// Held while a batch taken from `pending` is written, so that a reader that wrote what was
    /// pending never misses a batch another thread took but has not written yet.
    writing: std::sync::Mutex<()>,
    /// The writer and pruning threads, until [`ExecutionBackend::close`].
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The writer thread, woken early when many records wait.
    writer: std::sync::OnceLock<std::thread::Thread>,
    /// The pruning thread, woken early when many records were written since it last ran.
    pruner: std::sync::OnceLock<std::thread::Thread>,
    /// Records written since the pruning thread was last woken.
    unpruned: AtomicU64,
    stopping: AtomicBool,
    /// Records read from their bytes (see [`SledExecutions::decoded`]).
    decoded: AtomicU64,
    /// Keys claimed, with when each claim expires: one process owns the store, so claims live
    /// in its memory.
    claims: std::sync::Mutex<HashMap<String, Instant>>,
}

impl SledExecutions {
    /// Open the trees (indexing records written before the index existed); until
    /// [`ExecutionBackend::close`], a thread writes waiting records every [`WRITE_BATCH_EVERY`]
    /// and another deletes what `retention` does not keep every [`PRUNE_EVERY`].
    pub fn open(store: &Arc<Store>, retention: Retention) -> Result<Arc<SledExecutions>, sled::Error> {
        let (records, logs) = (store.tree("executions")?, store.tree("execution-logs")?);
        let (index, queue) = (store.tree("execution-index")?, store.tree("execution-queue")?);
        let fires = store.tree("schedule-fires")?;
        let (log_batches, log_index) = (store.tree("execution-log")?, store.tree("execution-log-index")?);
        let executions = Arc::new_cyclic(|me| SledExecutions {
            me: me.clone(),
            records,
            logs,
            index,
            queue,
            fires,
            log_batches,
            log_index,
            log: Default::default(),
            store: store.clone(),
            retention,
            changed: Notify::new(),
            pending: Default::default(),
            writing: Default::default(),
            threads: Default::default(),
            writer: Default::default(),
            pruner: Default::default(),
            unpruned: Default::default(),
            stopping: Default::default(),
            decoded: Default::default(),
            claims: Default::default(),
        });
        executions.build_index()?;
        executions.load_log()?;
        executions.start_threads();
        Ok(executions)
    }

    /// Run `read` on this backend on the blocking pool: a read may go to the disk, and a list
    /// may read many records.
    async fn read<T: Send + 'static>(&self, read: impl FnOnce(&SledExecutions) -> T + Send + 'static) -> T {
        let me = self.me.upgrade().expect("the backend is in use");
        blocking(move || read(&me)).await
    }

    /// The record with this id.
    pub(crate) fn get_now(&self, id: &str) -> Option<Execution> {
        self.write_pending();
        if let Some(bytes) = self.records.get(id.as_bytes()).ok()? {
            return serde_json::from_slice(&bytes).ok();
        }
        let entry = self.log.read().unwrap().entries.get(id)?.clone();
        self.logged(&entry, &mut None)
    }

    /// The stored logs of execution `id`.
    pub(crate) fn logs_now(&self, id: &str) -> Option<String> {
        self.write_pending();
        if let Some(logged) = self.logged_logs(id) {
            return logged;
        }
        self.logs.get(id.as_bytes()).ok()?.map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Store a record (and optionally a new attempt's logs). A record of the log (see [`log`])
    /// moves to the `executions` tree with its logs.
    pub(crate) fn put_now(&self, record: &Execution, logs: Option<(&Logs, u32)>) -> Result<(), ExecutionsError> {
        let moved = self.logged_logs(&record.id);
        self.write(record, false)?;
        if moved.is_some() {
            self.forget(std::slice::from_ref(&record.id))?;
        }
        let mut text = match moved {
            Some(text) => text,
            None if logs.is_some() => self.logs_now(&record.id),
            None => None,
        };
        if let Some((logs, attempt)) = logs {
            text.get_or_insert_default().push_str(&format_attempt(logs, attempt));
        }
        if let Some(text) = text {
            self.logs.insert(record.id.as_bytes(), text.as_bytes()).map_err(storage)?;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    /// Write `record` and its index entry, with `queued` also its entry in the execution queue, in
    /// one transaction: a crash between them would leave a stale status in the index (and
    /// status-filtered lists would miss the record for good), or a queued record nothing runs.
    ///
    /// A record in the execution queue already is written without a transaction (which writes
    /// and syncs sled's log twice, the largest cost of a queued execution): the record, then its
    /// index entry. sled recovers a prefix of the writes, so a crash in between leaves the
    /// record in the queue, with a stale index entry: it runs again (and is written again),
    /// or, final, is taken off the queue, which writes its index entry first (see `dequeue`).
    fn write(&self, record: &Execution, queued: bool) -> Result<(), ExecutionsError> {
        use sled::Transactional;
        let bytes = serde_json::to_vec(record).map_err(storage)?;
        let (key, value) = index_entry(record);
        if !queued && self.queue.contains_key(run_key(&record.id)).map_err(storage)? {
            self.records.insert(record.id.as_bytes(), bytes).map_err(storage)?;
            self.index.insert(key, value).map_err(storage)?;
            return Ok(());
        }
        (&self.records, &self.index, &self.queue)
            .transaction(|(records, index, queue)| {
                records.insert(record.id.as_bytes(), bytes.as_slice())?;
                index.insert(key.as_slice(), value.as_slice())?;
                if queued {
                    queue.insert(run_key(&record.id), record.id.as_bytes())?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<String>>(())
            })
            .map_err(storage)
    }

    /// Remove events of one log (a tree of the store) and queue their records, in one
    /// transaction (see [`ExecutionBackend::accept_events`]). One transaction for many events,
    /// because every sled transaction writes and syncs the log twice.
    fn accept_events_now(&self, events: &[(EventRef<'_>, Vec<Execution>)]) -> Result<(), ExecutionsError> {
        use sled::Transactional;
        use sled::transaction::ConflictableTransactionError;
        let Some((first, _)) = events.first() else { return Ok(()) };
        let log = match first.log {
            EventLog::Items => crate::storage::datasets::events_tree(&self.store, first.app),
            EventLog::Topics => crate::storage::topics::events_tree(&self.store, first.app),
        }
        .map_err(storage)?;
        let abort = |e: serde_json::Error| ConflictableTransactionError::Abort(e.to_string());
        (&log, &self.records, &self.queue, &self.index)
            .transaction(|(log, records_tree, queue, index)| {
                for (event, records) in events {
                    log.remove(event.key)?;
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
                }
                Ok(())
            })
            .map_err(storage)
    }
}

/// Claims are held in this process: a claim ends with the process, or when its `ttl` passes
/// without a renewal (so that claims of schedule ticks, never released, do not pile up).
#[async_trait]
impl ExecutionBackend for SledExecutions {
    fn new_id(&self) -> Result<String, ExecutionsError> {
        Ok(format!("{:016x}", self.store.next_id().map_err(storage)?))
    }

    async fn get(&self, id: &str) -> Result<Option<Execution>, ExecutionsError> {
        let id = id.to_string();
        Ok(self.read(move |me| me.get_now(&id)).await)
    }

    async fn put(&self, record: &Execution, logs: Option<(&Logs, u32)>) -> Result<(), ExecutionsError> {
        self.put_now(record, logs)
    }

    fn record(&self, record: Execution, logs: Logs) {
        self.record_final(record, logs);
    }

    async fn logs(&self, id: &str) -> Result<Option<String>, ExecutionsError> {
        let id = id.to_string();
        Ok(self.read(move |me| me.logs_now(&id)).await)
    }

    async fn list(
        &self,
        filter: &ExecutionFilter,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Execution>, ExecutionsError> {
        let (filter, before) = (filter.clone(), before.map(str::to_string));
        Ok(self.read(move |me| me.list_now(&filter, before.as_deref(), limit)).await)
    }

    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<Execution>, ExecutionsError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            let Some(record) = self.get(id).await? else { return Ok(None) };
            if record.status.is_final() {
                return Ok(Some(record));
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(Some(record));
            }
        }
    }

    async fn enqueue(&self, record: &Execution) -> Result<(), ExecutionsError> {
        self.write(record, true)?;
        self.changed.notify_waiters();
        self.durable().await
    }

    async fn dequeue(&self, record: &Execution) -> Result<(), ExecutionsError> {
        // Heals an entry a crash left stale in the middle of `write`.
        self.index_put(record).map_err(storage)?;
        self.queue.remove(run_key(&record.id)).map_err(storage)?;
        if let Some(claim) = record.claim.as_ref().filter(|_| record.status != Status::Succeeded) {
            self.queue.remove(claim.as_bytes()).map_err(storage)?;
        }
        Ok(())
    }

    async fn accept_events(&self, events: &[(EventRef<'_>, Vec<Execution>)]) -> Result<(), ExecutionsError> {
        for run in events.chunk_by(|a, b| (a.0.log, a.0.app) == (b.0.log, b.0.app)) {
            self.accept_events_now(run)?;
        }
        Ok(())
    }

    async fn queued_ids(&self) -> Result<Vec<String>, ExecutionsError> {
        let ids = self.queue.scan_prefix("run/").values().filter_map(Result::ok);
        Ok(ids.map(|id| String::from_utf8_lossy(&id).into_owned()).collect())
    }

    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, ExecutionsError> {
        let now = Instant::now();
        let mut claims = self.claims.lock().unwrap();
        if claims.get(key).is_some_and(|until| *until > now) {
            return Ok(false);
        }
        if claims.len() >= 1024 && claims.len().is_power_of_two() {
            // Long expired only: a claim whose renewal is late (a stalled runtime) stays its
            // holder's, as no other task of the process can claim it meanwhile.
            claims.retain(|_, until| *until + FORGET_CLAIMS_AFTER > now);
        }
        claims.insert(key.to_string(), now + ttl);
        Ok(true)
    }

    async fn renew(&self, key: &str, ttl: Duration) -> Result<bool, ExecutionsError> {
        // Holders are not told apart: in one process, `Executions::claim` keeps a key to one task.
        Ok(self.claims.lock().unwrap().get_mut(key).map(|until| *until = Instant::now() + ttl).is_some())
    }

    async fn release(&self, key: &str) -> Result<(), ExecutionsError> {
        self.claims.lock().unwrap().remove(key);
        Ok(())
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<u64>, ExecutionsError> {
        let bytes = self.fires.get(schedule).map_err(storage)?;
        Ok(bytes.and_then(|b| Some(u64::from_be_bytes(b.as_ref().try_into().ok()?))))
    }

    async fn save_fire(&self, schedule: &str, fire_ms: u64) -> Result<(), ExecutionsError> {
        let decode = |bytes: &[u8]| Some(u64::from_be_bytes(bytes.try_into().ok()?));
        let later = |old: Option<&[u8]>| Some(old.and_then(decode).unwrap_or(0).max(fire_ms).to_be_bytes().to_vec());
        self.fires.fetch_and_update(schedule, later).map_err(storage)?;
        Ok(())
    }

    async fn request_cancel(&self, _id: &str) -> Result<(), ExecutionsError> {
        Ok(())
    }

    fn on_cancel_request(&self, _handler: CancelRequests) {}

    fn new_events(&self) -> &Notify {
        &self.store.new_events
    }

    async fn durable(&self) -> Result<(), ExecutionsError> {
        self.store.durable().await.map_err(ExecutionsError::NotDurable)
    }

    fn commit_soon(&self) {
        self.store.commit_soon();
    }

    async fn prune(&self) -> Result<usize, ExecutionsError> {
        self.read(SledExecutions::prune_now).await
    }

    fn close(&self) {
        self.stop_writer();
    }
}

#[cfg(test)]
mod tests;
