//! The background threads of the execution records: one writes the records of direct calls in
//! batches, one prunes what the [`super::Retention`] does not keep (every [`PRUNE_EVERY`], or
//! sooner on a busy host).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::SledExecutions;
use super::retention::{PRUNE_EVERY, PRUNE_FIRST};
use crate::outcome::Logs;
use crate::storage::executions::Execution;

/// How long a direct call's record may wait in memory before it is written to sled.
pub const WRITE_BATCH_EVERY: Duration = Duration::from_millis(100);

/// Records waiting that wake the writer thread before its time.
const WRITE_BATCH_SIZE: usize = 512;

/// Records waiting that make the next direct call write them itself: callers slow down to the
/// pace of the writer rather than let memory grow without bound.
const MAX_WAITING: usize = 32 * WRITE_BATCH_SIZE;

/// The fewest records written that wake the pruning thread before its time.
pub const PRUNE_AFTER_WRITES: u64 = 100;

/// Run `work` on a thread named `name` after `first`, then every `period`, while the records
/// are in use and not stopping.
fn every(
    name: &str,
    executions: Weak<SledExecutions>,
    (first, period): (Duration, Duration),
    work: fn(&SledExecutions),
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            std::thread::park_timeout(first);
            while let Some(executions) = executions.upgrade().filter(|e| !e.stopping.load(Ordering::Acquire)) {
                work(&executions);
                drop(executions);
                std::thread::park_timeout(period);
            }
        })
        .expect("spawn an execution records thread")
}

impl SledExecutions {
    /// Start the writer and the pruning threads (stopped by [`SledExecutions::stop_writer`]).
    pub(super) fn start_threads(self: &Arc<SledExecutions>) {
        let writer = every(
            "execution-writer",
            Arc::downgrade(self),
            (Duration::ZERO, WRITE_BATCH_EVERY),
            SledExecutions::write_pending,
        );
        let pruner = every("execution-pruner", Arc::downgrade(self), (PRUNE_FIRST, PRUNE_EVERY), |executions| {
            if let Err(error) = executions.prune_now() {
                tracing::warn!(%error, "cannot prune execution records");
            }
        });
        let _ = self.writer.set(writer.thread().clone());
        let _ = self.pruner.set(pruner.thread().clone());
        self.threads.lock().unwrap().extend([writer, pruner]);
    }

    /// Wake the pruning thread once a tenth of the count limit (at least [`PRUNE_AFTER_WRITES`]
    /// records) was written since it last ran, so that a busy host keeps close to its limit
    /// instead of overshooting it for a minute.
    fn count_written(&self, written: u64) {
        let every = (self.retention.max_count / 10).max(PRUNE_AFTER_WRITES);
        if self.unpruned.fetch_add(written, Ordering::Relaxed) + written >= every {
            self.unpruned.store(0, Ordering::Relaxed);
            if let Some(pruner) = self.pruner.get() {
                pruner.unpark();
            }
        }
    }

    /// Stop the background threads and write what waits. The host calls this as it is dropped,
    /// so the store is never closed from one of them: with several sled databases in one
    /// process, a database flushed on close from there could hang sled's process-wide lock.
    pub(super) fn stop_writer(&self) {
        self.stopping.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for thread in threads {
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.write_pending();
    }

    /// Append the records of direct calls that wait in memory to the record log.
    pub(super) fn write_pending(&self) {
        let _writing = self.writing.lock().unwrap();
        // The next batch starts with room for a batch: growing it one doubling at a time copied
        // every record waiting several times.
        let pending = std::mem::replace(&mut *self.pending.lock().unwrap(), Vec::with_capacity(WRITE_BATCH_SIZE));
        if pending.is_empty() {
            return;
        }
        if let Err(error) = self.append(&pending) {
            tracing::warn!(%error, records = pending.len(), "cannot record executions");
        }
        self.changed.notify_waiters();
        self.store.flush_soon();
        self.count_written(pending.len() as u64);
    }

    /// Keep the final record of a call that ran at once (`call`, `http`, `map`, or a queue
    /// trigger's delivery). It is written to sled in a batch within [`WRITE_BATCH_EVERY`] and
    /// reaches the disk with the next group commit; the caller does not wait for either. The
    /// writer thread writes the batch, not the caller: a caller writing would block the other
    /// callers that fill the next batch meanwhile (they wait for the batch being written).
    pub(super) fn record_final(&self, record: Execution, logs: Logs) {
        let mut pending = self.pending.lock().unwrap();
        pending.push((record, logs));
        let waiting = pending.len();
        drop(pending);
        if waiting >= MAX_WAITING {
            self.write_pending();
        } else if waiting.is_multiple_of(WRITE_BATCH_SIZE)
            && let Some(writer) = self.writer.get()
        {
            writer.unpark();
        }
    }
}
