//! `host:api/queues`: the guest's view of [`crate::storage::queues`], limited to granted queues.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use super::host::api::queues::{self, Error, Host, Message};
use super::{CallParts, Capability, Limiter, Parts, Setup};
use crate::manifest::{Grants, QueueSpec};
use crate::storage::queues::{Queue, QueueError, lease_queue};

/// The queues a function is granted.
pub struct Queues {
    app: String,
    grants: Arc<Grants>,
    specs: Arc<BTreeMap<String, QueueSpec>>,
    queues: Arc<crate::storage::queues::Queues>,
}

impl Capability for Queues {
    fn build(setup: &Setup<'_>) -> Option<Queues> {
        (!setup.grants.queues.is_empty()).then(|| Queues {
            app: setup.app.to_string(),
            grants: setup.grants.clone(),
            specs: setup.queue_specs.clone(),
            queues: setup.services.queues.clone(),
        })
    }

    fn add_to_linker<T: CallParts>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        queues::add_to_linker::<T, Queues>(linker, |state| state.parts().into())
    }
}

impl HasData for Queues {
    type Data<'a> = View<'a>;
}

/// What the `host:api/queues` host calls of one call work on.
pub struct View<'a> {
    queues: Option<&'a Queues>,
    memory: &'a mut Limiter,
}

impl<'a> From<Parts<'a>> for View<'a> {
    fn from(Parts { contexts, memory, .. }: Parts<'a>) -> View<'a> {
        View { queues: contexts.get(), memory }
    }
}

type QueueResult<T> = wasmtime::Result<Result<T, Error>>;

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Error {
        match e {
            QueueError::LeaseExpired(_) => Error::LeaseExpired,
            QueueError::Invalid(message) => Error::Invalid(message),
            error @ QueueError::NoMessage(..) => Error::Invalid(error.to_string()),
            QueueError::Storage(message) => Error::Other(message),
        }
    }
}

impl<'a> View<'a> {
    /// Queue `name`, when granted, and the function's queues.
    fn queue(&self, name: &str) -> Result<(Arc<Queue>, &'a Queues), Error> {
        let Some(granted) = self.queues.filter(|q| q.grants.queue(name)) else {
            return Err(Error::AccessDenied);
        };
        let spec = QueueSpec::of(&granted.specs, name);
        Ok((granted.queues.open(&granted.app, name, &spec)?, granted))
    }

    /// The queue a lease is for, when granted.
    fn lease_queue(&self, lease: &str) -> Result<(Arc<Queue>, &'a Queues), Error> {
        self.queue(lease_queue(lease)?)
    }
}

impl Host for View<'_> {
    async fn send(&mut self, queue: String, body: Vec<u8>, delay_ms: u64) -> QueueResult<String> {
        let queue = match self.queue(&queue) {
            Ok((queue, _)) => queue,
            Err(e) => return Ok(Err(e)),
        };
        Ok(queue.send(body, Duration::from_millis(delay_ms)).await.map_err(Error::from))
    }

    async fn receive(&mut self, queue: String, max: u32, visibility_ms: u64) -> QueueResult<Vec<Message>> {
        let (queue, granted) = match self.queue(&queue) {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        // Bodies are read into host memory for the guest: no more than fits in its memory.
        let budget = self.memory.value_budget();
        let visibility = Duration::from_millis(visibility_ms);
        let messages = match queue.receive_within(&granted.queues, max, visibility, budget).await {
            Ok(messages) => messages,
            Err(e) => return Ok(Err(e.into())),
        };
        let bytes: u64 = messages.iter().map(|m| m.body.len() as u64).sum();
        if bytes > budget {
            return Err(self.memory.too_big(&format!("receiving from queue `{}`", queue.name()), bytes));
        }
        Ok(Ok(messages
            .into_iter()
            .map(|m| Message { id: m.id, body: m.body, attempt: m.attempt, lease: m.lease })
            .collect()))
    }

    async fn complete(&mut self, lease: String) -> QueueResult<()> {
        match self.lease_queue(&lease) {
            Ok((queue, _)) => Ok(queue.complete(&lease).await.map_err(Error::from)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn retry(&mut self, lease: String, delay_ms: u64) -> QueueResult<()> {
        match self.lease_queue(&lease) {
            Ok((queue, granted)) => {
                let delay = Duration::from_millis(delay_ms);
                Ok(queue.retry(&granted.queues, &lease, delay).await.map_err(Error::from))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}
