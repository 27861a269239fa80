//! What a store of executions provides, shaped for a networked store as much as for the embedded
//! one: records by id, lists by app, function and status with a cursor, the execution queue, and
//! claims for work that exactly one node may run. Only durable things: what runs in this process
//! (live output, cancel switches, serial lines) is kept by [`super::Executions`].

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Execution, ExecutionFilter, ExecutionsError};
use crate::outcome::Logs;

/// An event of an app's event log, as [`ExecutionBackend::accept_events`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Which log: item events or published topic events.
    pub log: EventLog,
    /// The app whose log it is.
    pub app: &'a str,
    /// The event's key in its log, as the log's backend gave it.
    pub key: &'a [u8],
}

/// The event logs that triggers turn into executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLog {
    /// Item events of an app's datasets (`[[trigger.item]]`).
    Items,
    /// Events published to an app's topics (`[[trigger.topic]]`).
    Topics,
}

/// What takes the cancel requests of other nodes (see [`ExecutionBackend::on_cancel_request`]).
pub type CancelRequests = Box<dyn Fn(&str) + Send + Sync>;

/// A store of execution records and of the queue of executions still to run.
#[async_trait]
pub trait ExecutionBackend: Send + Sync {
    /// A new, unused execution id; ids sort in creation order. Called on every recorded call, so
    /// it must not wait for the network or the disk (a networked store makes ids locally).
    fn new_id(&self) -> Result<String, ExecutionsError>;

    /// The record with this id.
    async fn get(&self, id: &str) -> Result<Option<Execution>, ExecutionsError>;

    /// Store a record (created or changed), and with `logs` append that attempt's output.
    async fn put(&self, record: &Execution, logs: Option<(&Logs, u32)>) -> Result<(), ExecutionsError>;

    /// Keep the final record of a call that ran at once, with its output, without waiting for
    /// it to be written: it is readable (through every other method) soon after. Called on every
    /// direct call, so it only hands the record to a batch (a failed write is logged).
    fn record(&self, record: Execution, logs: Logs);

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

    /// Accept `events` (read from apps' item or topic event logs), in order: remove each and
    /// queue its records, so that an event turns into its executions exactly once. A record
    /// whose `once` claim ([`Execution::claim`]) is held already (or taken by an earlier event
    /// of the same call) is left out, and the claims of the others are taken. The embedded store
    /// does it in one transaction over the log and the queue per run of events of one log; a
    /// networked store must give the same guarantee another way (an outbox: write the records
    /// and claims idempotently by event, then acknowledge the event, so that a crash in between
    /// repeats the event without duplicating its executions).
    async fn accept_events(&self, events: &[(EventRef<'_>, Vec<Execution>)]) -> Result<(), ExecutionsError>;

    /// Ids of every execution in the queue, oldest first.
    async fn queued_ids(&self) -> Result<Vec<String>, ExecutionsError>;

    /// Claim `key` for the caller: true when no one holds it (a second claim of a held key is
    /// refused, even from the holder). Exactly one claimant at a time runs the work `key` names
    /// (a queued execution, a schedule tick). A claim lasts until [`ExecutionBackend::release`]
    /// or until `ttl` passes without a [`ExecutionBackend::renew`], so that the work of a node
    /// that died is picked up by another.
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, ExecutionsError>;

    /// Extend the caller's claim on `key` to `ttl` from now: false when the caller no longer
    /// holds it (it expired and another claimant took it, or it was released). Renewal is apart
    /// from [`ExecutionBackend::claim`] so that a holder never mistakes a second claimant of its
    /// own process for itself.
    async fn renew(&self, key: &str, ttl: Duration) -> Result<bool, ExecutionsError>;

    /// Give up the claim on `key`.
    async fn release(&self, key: &str) -> Result<(), ExecutionsError>;

    /// When schedule `schedule` (`APP/NAME`) last fired, ms since the Unix epoch.
    async fn last_fire(&self, schedule: &str) -> Result<Option<u64>, ExecutionsError>;

    /// Keep `fire_ms` as the last fire time of `schedule`, unless a later one is kept already.
    async fn save_fire(&self, schedule: &str, fire_ms: u64) -> Result<(), ExecutionsError>;

    /// Ask whichever node runs execution `id` to stop it: the handler that every node sharing
    /// the store set with [`ExecutionBackend::on_cancel_request`] gets `id`, at most once (a node
    /// cut off at that moment misses it). Where one process runs everything there is no one else
    /// to ask.
    async fn request_cancel(&self, id: &str) -> Result<(), ExecutionsError>;

    /// Hand the id of every cancel request made by any node to `handler`, from now on.
    fn on_cancel_request(&self, handler: CancelRequests);

    /// Woken when an item or topic event is written (by this node, or by any node where a
    /// shared store announces it), so that triggers see it at once; triggers poll for the rest.
    fn new_events(&self) -> &Notify;

    /// Wait until everything written so far survives a crash.
    async fn durable(&self) -> Result<(), ExecutionsError>;

    /// Start making everything written so far survive a crash, without waiting: a later
    /// [`ExecutionBackend::durable`] covers it too. Nothing by default (a backend whose writes
    /// are durable when they return).
    fn commit_soon(&self) {}

    /// Delete the final records the retention does not keep: how many went.
    async fn prune(&self) -> Result<usize, ExecutionsError>;

    /// Stop background work and write what waits (records handed to [`ExecutionBackend::record`]).
    /// The host calls this once, as it is dropped.
    fn close(&self);
}
