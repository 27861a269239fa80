//! `host:api/queues`: the guest's view of [`crate::storage::queues`], limited to granted queues.

use std::sync::Arc;
use std::time::Duration;

use super::host::api::queues::{Error, Host, Message};
use crate::call::CallState;
use crate::manifest::QueueSpec;
use crate::storage::queues::{Queue, QueueError, parse_lease};

type QueueResult<T> = wasmtime::Result<Result<T, Error>>;

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Error {
        match e {
            QueueError::LeaseExpired(_) => Error::LeaseExpired,
            QueueError::Invalid(message) => Error::Invalid(message),
            QueueError::Storage(message) => Error::Other(message),
        }
    }
}

impl CallState {
    /// Queue `name`, when granted.
    fn queue(&self, name: &str) -> Result<Arc<Queue>, Error> {
        let caps = &self.caps;
        if !caps.grants.queue(name) {
            return Err(Error::AccessDenied);
        }
        Ok(caps.queues.open(&caps.app, name, &QueueSpec::of(&caps.queue_specs, name))?)
    }

    /// The queue a lease is for, when granted.
    fn lease_queue(&self, lease: &str) -> Result<Arc<Queue>, Error> {
        let (queue, ..) = parse_lease(lease)?;
        self.queue(queue)
    }
}

impl Host for CallState {
    async fn send(&mut self, queue: String, body: Vec<u8>, delay_ms: u64) -> QueueResult<String> {
        let queue = match self.queue(&queue) {
            Ok(queue) => queue,
            Err(e) => return Ok(Err(e)),
        };
        Ok(queue.send(body, Duration::from_millis(delay_ms)).await.map_err(Error::from))
    }

    async fn receive(&mut self, queue: String, max: u32, visibility_ms: u64) -> QueueResult<Vec<Message>> {
        let queue = match self.queue(&queue) {
            Ok(queue) => queue,
            Err(e) => return Ok(Err(e)),
        };
        // Bodies are read into host memory for the guest: no more than fits in its memory.
        let budget = self.value_budget();
        let visibility = Duration::from_millis(visibility_ms);
        let messages = match queue.receive_within(&self.caps.queues, max, visibility, budget).await {
            Ok(messages) => messages,
            Err(e) => return Ok(Err(e.into())),
        };
        let bytes: u64 = messages.iter().map(|m| m.body.len() as u64).sum();
        if bytes > budget {
            return Err(self.too_big(&format!("receiving from queue `{}`", queue.name()), bytes));
        }
        Ok(Ok(messages
            .into_iter()
            .map(|m| Message { id: m.id, body: m.body, attempt: m.attempt, lease: m.lease })
            .collect()))
    }

    async fn complete(&mut self, lease: String) -> QueueResult<()> {
        match self.lease_queue(&lease) {
            Ok(queue) => Ok(queue.complete(&lease).await.map_err(Error::from)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn retry(&mut self, lease: String, delay_ms: u64) -> QueueResult<()> {
        match self.lease_queue(&lease) {
            Ok(queue) => {
                Ok(queue.retry(&self.caps.queues, &lease, Duration::from_millis(delay_ms)).await.map_err(Error::from))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}
