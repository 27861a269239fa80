//! The background work of the NATS execution store: a task that writes the records of direct
//! calls in batches (every [`WRITE_BATCH_EVERY`], or sooner when many wait) and prunes what the
//! [`Retention`](crate::storage::executions::Retention) does not keep, once per [`PRUNE_EVERY`]
//! across the cluster (the node that claims the round prunes).

use std::sync::atomic::Ordering;

use futures_util::StreamExt;

use super::{NatsExecutions, id_time, nats_error, records};
use crate::outcome::Logs;
use crate::storage::executions::{
    Execution, ExecutionsError, PRUNE_EVERY, PRUNE_FIRST, Status, WRITE_BATCH_EVERY, format_attempt, now_ms,
};

/// Records waiting that wake the writer before its time.
const WRITE_BATCH_SIZE: usize = 512;

/// Records of a batch written at once.
const WRITES_IN_FLIGHT: usize = 32;

impl NatsExecutions {
    /// Hand over the final record of a direct call, written by the background task.
    pub(super) fn hand_over(&self, record: Execution, logs: Logs) {
        let waiting = {
            let mut pending = self.pending.lock().unwrap();
            pending.push((record, logs));
            pending.len()
        };
        self.start_task();
        if waiting >= WRITE_BATCH_SIZE {
            self.wake.notify_one();
        }
    }

    /// Start the background task on the current runtime, once.
    fn start_task(&self) {
        let mut task = self.task.lock().unwrap();
        if task.is_some() || self.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return tracing::error!("execution records handed over outside a tokio runtime: not written");
        };
        let _ = self.runtime.set(runtime.clone());
        let me = self.me.clone();
        *task = Some(runtime.spawn(async move {
            let mut next_prune = tokio::time::Instant::now() + PRUNE_FIRST;
            loop {
                // Held for one round only: once every other holder is gone, the task ends.
                let Some(executions) = me.upgrade() else { return };
                if executions.stopping.load(Ordering::Acquire) {
                    return;
                }
                executions.write_pending().await;
                if tokio::time::Instant::now() >= next_prune {
                    next_prune += PRUNE_EVERY;
                    executions.prune_round().await;
                }
                let _ = tokio::time::timeout(WRITE_BATCH_EVERY, executions.wake.notified()).await;
            }
        }));
    }

    /// Prune, if this node claims this round (the claim expires before the next one).
    async fn prune_round(&self) {
        let round = format!("prune/{}", now_ms() / PRUNE_EVERY.as_millis() as u64);
        match self.claim_now(&round, PRUNE_EVERY / 2).await {
            Ok(true) => {
                if let Err(error) = self.prune_now().await {
                    tracing::warn!(%error, "cannot prune execution records");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "cannot claim pruning the execution records"),
        }
    }

    /// Write the records of direct calls waiting in memory.
    pub(super) async fn write_pending(&self) {
        let _writing = self.writing.lock().await;
        let pending = std::mem::take(&mut *self.pending.lock().unwrap());
        if pending.is_empty() {
            return;
        }
        let writes = futures_util::stream::iter(pending).map(|(record, output)| async move {
            let mut written = self.write_new(&record).await;
            if written.is_ok() && !(output.stdout.is_empty() && output.stderr.is_empty()) {
                written = self.write_logs(&record.id, format_attempt(&output, record.attempt)).await;
            }
            if let Err(error) = written {
                tracing::warn!(%error, execution = %record.id, "cannot record an execution");
            }
        });
        writes.buffer_unordered(WRITES_IN_FLIGHT).collect::<()>().await;
        self.changed.notify_waiters();
    }

    /// Stop the background tasks and write what waits: at once on a multi-threaded runtime, else
    /// by a task of the current runtime (outside any, of the runtime the writer ran on, if it
    /// still runs: blocking on it could hang on a runtime shutting down).
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_one();
        for task in [&self.task, &self.watcher] {
            if let Some(task) = task.lock().unwrap().take() {
                task.abort();
            }
        }
        let Some(me) = self.me.upgrade() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(current) if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| current.block_on(me.write_pending()));
            }
            Ok(current) => drop(current.spawn(async move { me.write_pending().await })),
            Err(_) => {
                if let Some(runtime) = self.runtime.get() {
                    drop(runtime.spawn(async move { me.write_pending().await }));
                }
            }
        }
    }

    /// Delete the final records the retention does not keep (by age, then beyond the count of
    /// each app), the expired claims and old outbox entries: how many records went.
    pub(super) async fn prune_now(&self) -> Result<usize, ExecutionsError> {
        let keys = self.buckets().await?.index.keys().await.map_err(nats_error("prune executions"))?;
        let cutoff = now_ms().saturating_sub(u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX));
        let keep = usize::try_from(self.retention.max_count).unwrap_or(usize::MAX);
        let mut finals: Vec<records::Entry> = keys
            .iter()
            .filter_map(|key| records::entry(key))
            .filter(|entry| entry.status.parse::<Status>().is_ok_and(Status::is_final))
            .collect();
        finals.sort_unstable_by(|a, b| (a.app, b.id).cmp(&(b.app, a.id)));
        finals.dedup_by(|a, b| a.id == b.id);
        let mut deleted = 0;
        let mut app = ("", 0);
        for entry in finals {
            app = if app.0 == entry.app { (app.0, app.1 + 1) } else { (entry.app, 1) };
            // A record finishes after it was created: only those created before the cutoff may
            // have finished before it.
            let old = id_time(entry.id).is_some_and(|created| created < cutoff);
            if app.1 <= keep && !old {
                continue;
            }
            let Some(record) = self.read(entry.id).await? else { continue };
            let finished = record.finished_ms.unwrap_or(record.queued_ms);
            if record.status.is_final() && (app.1 > keep || finished < cutoff) {
                self.delete(&record).await?;
                deleted += 1;
            }
        }
        self.prune_claims().await?;
        self.prune_outbox().await?;
        if deleted > 0 {
            tracing::debug!(deleted, "pruned execution records");
        }
        Ok(deleted)
    }
}
