//! The networked [`ExecutionBackend`]: execution records on NATS JetStream, shared by every node
//! connected to the same cluster. Key-value buckets (see [`crate::storage::nats::Bucket`]):
//! `records` (id → record), `logs` (id → text), `index` (one key per record:
//! `APP \0 ID \0 FUNCTION \0 TRIGGER \0 STATUS`, so lists filter on keys and read only the records
//! they answer with), `queue` (id of every queued execution not final yet), `once` (`once`
//! claims of item triggers → the id of the execution holding it), `claims` (claims with an
//! expiry), `accepted` (the outbox of accepted events) and `fires` (last schedule fire times).
//!
//! Records and logs over a message's size are kept in pieces (see [`pieces`]). Lists and
//! pruning scan every key of the index (O(records) per page): a JetStream bucket lists its keys
//! only whole, in no order.

mod accept;
mod claims;
mod pieces;
mod records;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, OnceCell};

use super::{EventRef, Execution, ExecutionBackend, ExecutionFilter, ExecutionsError, Retention, now_ms, storage};
use crate::outcome::Logs;
use crate::storage::nats::{Bucket, EventLog, Nats, NatsError};

/// The buckets of the execution store, opened on first use.
struct Buckets {
    records: Bucket,
    logs: Bucket,
    index: Bucket,
    queue: Bucket,
    once: Bucket,
    claims: Bucket,
    accepted: Bucket,
    fires: Bucket,
}

/// Execution records, the execution queue and claims in NATS JetStream buckets.
pub struct NatsExecutions {
    /// This backend, for its background task.
    me: Weak<NatsExecutions>,
    nats: Nats,
    buckets: OnceCell<Buckets>,
    retention: Retention,
    /// This node, in claims and in the ids it makes: random, so nodes never need to agree.
    node: u32,
    /// The last id made here: ms since the epoch shifted left by [`ID_COUNTER_BITS`], plus a
    /// counter (see [`NatsExecutions::new_id`]).
    last_id: AtomicU64,
    /// The event logs opened so far, by (kind, app).
    logs: tokio::sync::Mutex<HashMap<(&'static str, String), EventLog>>,
    /// Woken whenever a record is written by this node (other nodes' writes are polled).
    changed: Notify,
    /// Woken when any node appends to an event log of this namespace (see
    /// [`NatsExecutions::watch`]).
    new_events: Notify,
    /// Takes the cancel requests of every node.
    cancel_requests: std::sync::OnceLock<super::CancelRequests>,
    /// The subscriptions to what other nodes announce (see [`NatsExecutions::watch`]).
    watcher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Records of finished direct calls not written yet, written in batches by a task.
    pending: std::sync::Mutex<Vec<(Execution, Logs)>>,
    /// Held while a batch is written, so that a reader that wrote what was pending never misses
    /// a batch another task took but has not written yet.
    writing: tokio::sync::Mutex<()>,
    /// Woken when many records wait, or to stop.
    wake: Notify,
    /// The batch writer and pruner, started by the first record handed over.
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The runtime it runs on.
    runtime: std::sync::OnceLock<tokio::runtime::Handle>,
    stopping: AtomicBool,
}

/// Bits of an id's time part that count the ids made in one millisecond.
const ID_COUNTER_BITS: u32 = 20;

impl NatsExecutions {
    /// The execution store of `nats`, keeping final records by `retention`. Nothing is read or
    /// written until it is used.
    pub fn new(nats: Nats, retention: Retention) -> Arc<NatsExecutions> {
        let mut node = [0u8; 4];
        getrandom::fill(&mut node).expect("the OS random source works");
        Arc::new_cyclic(|me| NatsExecutions {
            me: me.clone(),
            nats,
            buckets: OnceCell::new(),
            retention,
            node: u32::from_le_bytes(node),
            last_id: AtomicU64::new(0),
            logs: Default::default(),
            changed: Notify::new(),
            new_events: Notify::new(),
            cancel_requests: Default::default(),
            watcher: Default::default(),
            pending: Default::default(),
            writing: Default::default(),
            wake: Notify::new(),
            task: Default::default(),
            runtime: Default::default(),
            stopping: Default::default(),
        })
    }

    /// The buckets, created on first use.
    async fn buckets(&self) -> Result<&Buckets, ExecutionsError> {
        self.buckets
            .get_or_try_init(|| async {
                let open = |name: &str| {
                    let name = self.nats.name("EXEC", &[name]);
                    async move { Bucket::open(&self.nats, &name).await }
                };
                Ok::<_, NatsError>(Buckets {
                    records: open("records").await?,
                    logs: open("logs").await?,
                    index: open("index").await?,
                    queue: open("queue").await?,
                    once: open("once").await?,
                    claims: open("claims").await?,
                    accepted: open("accepted").await?,
                    fires: open("fires").await?,
                })
            })
            .await
            .map_err(nats_error("open the execution buckets"))
    }

    /// The event log of `kind` (`ITEMS` or `TOPICS`) of `app`, opened once.
    async fn event_log(&self, kind: &'static str, app: &str) -> Result<EventLog, ExecutionsError> {
        let mut logs = self.logs.lock().await;
        if let Some(log) = logs.get(&(kind, app.to_string())) {
            return Ok(log.clone());
        }
        let log = EventLog::open(&self.nats, kind, app).await.map_err(nats_error("open an event log"))?;
        logs.insert((kind, app.to_string()), log.clone());
        Ok(log)
    }
}

impl NatsExecutions {
    /// Start watching what other nodes announce, once, on the current runtime: appends to the
    /// item and topic logs of this namespace ring `new_events` (JetStream publishes are core NATS
    /// messages too, so a plain subscription sees them, and triggers start at once rather than at
    /// their next poll), and cancel requests go to the handler of `on_cancel_request`.
    fn watch(&self) {
        let mut watcher = self.watcher.lock().unwrap();
        if watcher.is_some() || self.stopping.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let logs = [self.nats.name("ITEMS", &[]) + "_", self.nats.name("TOPICS", &[]) + "_"];
        let cancels = self.cancel_subject();
        let (client, me) = (self.nats.client.clone(), self.me.clone());
        *watcher = Some(runtime.spawn(async move {
            use futures_util::StreamExt;
            // Event logs' subjects are `STREAM.events` (see `EventLog`).
            let subscribed =
                futures_util::future::try_join(client.subscribe("*.events"), client.subscribe(cancels.clone()));
            let mut heard = match subscribed.await {
                Ok((appended, cancelled)) => futures_util::stream::select(appended, cancelled),
                Err(error) => {
                    return tracing::warn!(%error, "cannot watch other nodes: triggers poll, cancels stay here");
                }
            };
            while let Some(message) = heard.next().await {
                let Some(executions) = me.upgrade() else { return };
                if message.subject.as_str() == cancels {
                    if let Some(handler) = executions.cancel_requests.get() {
                        handler(&String::from_utf8_lossy(&message.payload));
                    }
                } else if logs.iter().any(|log| message.subject.starts_with(log.as_str())) {
                    executions.new_events.notify_waiters();
                }
            }
        }));
    }

    /// The subject of cancel requests.
    fn cancel_subject(&self) -> String {
        self.nats.name("EXEC", &["cancel"])
    }
}

/// When the id `id` (made by [`NatsExecutions::new_id`]) was made, ms since the epoch.
fn id_time(id: &str) -> Option<u64> {
    Some(u64::from_str_radix(id.get(..16)?, 16).ok()? >> ID_COUNTER_BITS)
}

/// A NATS failure as a store error naming what failed.
fn nats_error(what: &'static str) -> impl Fn(NatsError) -> ExecutionsError {
    move |e| storage(format!("{what}: {e}"))
}

#[async_trait]
impl ExecutionBackend for NatsExecutions {
    /// Made here without I/O: 16 hex digits of time (ms, then a counter of the ids made here
    /// in that ms, never going back) and 8 of this node's random number, so that ids sort in
    /// creation order across nodes (to the ms) and never collide.
    fn new_id(&self) -> Result<String, ExecutionsError> {
        let now = now_ms() << ID_COUNTER_BITS;
        let next = |last: u64| (last + 1).max(now);
        let last = self.last_id.fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| Some(next(last)));
        let id = next(last.unwrap_or_else(|last| last));
        Ok(format!("{id:016x}{:08x}", self.node))
    }

    async fn get(&self, id: &str) -> Result<Option<Execution>, ExecutionsError> {
        self.write_pending().await;
        self.read(id).await
    }

    async fn put(&self, record: &Execution, logs: Option<(&Logs, u32)>) -> Result<(), ExecutionsError> {
        self.write(record, logs).await?;
        self.changed.notify_waiters();
        Ok(())
    }

    fn record(&self, record: Execution, logs: Logs) {
        self.hand_over(record, logs);
    }

    async fn logs(&self, id: &str) -> Result<Option<String>, ExecutionsError> {
        self.write_pending().await;
        self.read_logs(id).await
    }

    async fn list(
        &self,
        filter: &ExecutionFilter,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Execution>, ExecutionsError> {
        self.write_pending().await;
        self.list_now(filter, before, limit).await
    }

    /// Polls the record (with backoff up to 200 ms), woken early by writes of this node.
    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<Execution>, ExecutionsError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            let changed = self.changed.notified();
            let Some(record) = self.get(id).await? else { return Ok(None) };
            if record.status.is_final() || tokio::time::Instant::now() >= deadline {
                return Ok(Some(record));
            }
            let _ = tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + pause), changed).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    async fn enqueue(&self, record: &Execution) -> Result<(), ExecutionsError> {
        self.put(record, None).await?;
        let queue = &self.buckets().await?.queue;
        queue.put(&record.id, bytes::Bytes::new()).await.map_err(nats_error("queue an execution"))?;
        Ok(())
    }

    async fn dequeue(&self, record: &Execution) -> Result<(), ExecutionsError> {
        let buckets = self.buckets().await?;
        buckets.queue.delete(&record.id).await.map_err(nats_error("take an execution off the queue"))?;
        if let Some(claim) = record.claim.as_ref().filter(|_| record.status != super::Status::Succeeded) {
            self.release_once(claim, &record.id).await?;
        }
        Ok(())
    }

    async fn accept_events(&self, events: &[(EventRef<'_>, Vec<Execution>)]) -> Result<(), ExecutionsError> {
        for (event, records) in events {
            self.accept_event_now(*event, records).await?;
        }
        Ok(())
    }

    async fn queued_ids(&self) -> Result<Vec<String>, ExecutionsError> {
        self.buckets().await?.queue.keys().await.map_err(nats_error("read the execution queue"))
    }

    /// Also starts listening to cancel requests: a node that claims work may run it.
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, ExecutionsError> {
        self.watch();
        self.claim_now(key, ttl).await
    }

    async fn renew(&self, key: &str, ttl: Duration) -> Result<bool, ExecutionsError> {
        self.renew_now(key, ttl).await
    }

    async fn release(&self, key: &str) -> Result<(), ExecutionsError> {
        self.release_now(key).await
    }

    async fn last_fire(&self, schedule: &str) -> Result<Option<u64>, ExecutionsError> {
        self.last_fire_now(schedule).await
    }

    async fn save_fire(&self, schedule: &str, fire_ms: u64) -> Result<(), ExecutionsError> {
        self.save_fire_now(schedule, fire_ms).await
    }

    /// Sent to every node (core NATS: a node cut off at that moment misses it).
    async fn request_cancel(&self, id: &str) -> Result<(), ExecutionsError> {
        let subject = self.cancel_subject();
        let payload = bytes::Bytes::copy_from_slice(id.as_bytes());
        self.nats.client.publish(subject, payload).await.map_err(|e| storage(format!("request a cancel: {e}")))
    }

    fn on_cancel_request(&self, handler: super::CancelRequests) {
        let _ = self.cancel_requests.set(handler);
    }

    /// Rung by every append to an item or topic log of this namespace, by any node: a
    /// subscription to the logs' subjects, started by the first call.
    fn new_events(&self) -> &Notify {
        self.watch();
        &self.new_events
    }

    /// Nothing to wait for: a write is acknowledged once a quorum of the cluster stored it.
    async fn durable(&self) -> Result<(), ExecutionsError> {
        Ok(())
    }

    async fn prune(&self) -> Result<usize, ExecutionsError> {
        self.write_pending().await;
        self.prune_now().await
    }

    fn close(&self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
