//! Durable work queues with leases (`host:api/queues`).
//!
//! ```ignore
//! use guest_sdk::queues::Queue;
//! let tasks = Queue::new("training-queue");
//! tasks.send(b"{\"id\": 7}")?;
//! for task in tasks.receive(1, std::time::Duration::from_secs(600))? {
//!     // ... work ...
//!     task.complete()?;
//! }
//! ```

use std::time::Duration;

use crate::bindings::host::api::queues;

pub use queues::Error;

/// A queue the function has been granted (a grant also covers its dead-letter queue `NAME.dead`).
#[derive(Debug, Clone)]
pub struct Queue {
    name: String,
}

/// A leased message: finish it with [`Message::complete`] or [`Message::retry`] before the
/// lease ends, or it is delivered again.
#[derive(Debug, Clone)]
pub struct Message {
    /// Unique; ids sort in sending order.
    pub id: String,
    /// What the sender sent.
    pub body: Vec<u8>,
    /// Which delivery this is, from 1.
    pub attempt: u32,
    /// This delivery's lease.
    pub lease: String,
}

impl From<queues::Message> for Message {
    fn from(m: queues::Message) -> Message {
        Message { id: m.id, body: m.body, attempt: m.attempt, lease: m.lease }
    }
}

impl Queue {
    /// The queue named `name` (nothing is checked until it is used).
    pub fn new(name: &str) -> Queue {
        Queue { name: name.to_string() }
    }

    /// Send a message, visible at once; returns its id once it is on disk.
    pub fn send(&self, body: &[u8]) -> Result<String, Error> {
        queues::send(&self.name, body, 0)
    }

    /// Send a message that becomes visible after `delay`.
    pub fn send_after(&self, body: &[u8], delay: Duration) -> Result<String, Error> {
        queues::send(&self.name, body, delay.as_millis() as u64)
    }

    /// Lease up to `max` (1 to 100) visible messages, oldest first, for `visibility`.
    pub fn receive(&self, max: u32, visibility: Duration) -> Result<Vec<Message>, Error> {
        Ok(queues::receive(&self.name, max, visibility.as_millis() as u64)?.into_iter().map(Message::from).collect())
    }
}

impl Message {
    /// Done: remove the message from its queue.
    pub fn complete(&self) -> Result<(), Error> {
        queues::complete(&self.lease)
    }

    /// Give the message back, visible again after `delay`.
    pub fn retry(&self, delay: Duration) -> Result<(), Error> {
        queues::retry(&self.lease, delay.as_millis() as u64)
    }
}
