//! Publish/subscribe topics (`host:api/topics`): every `[[trigger.topic]]` subscription of the
//! topic gets each message (at least once).
//!
//! ```ignore
//! guest_sdk::topics::publish("new-model", br#"{"id": "7"}"#, &[("worker", "0")])?;
//! ```

use crate::bindings::host::api::topics;

pub use topics::Error;

/// Publish `payload` with `attributes` to `topic`; returns the event id once it is on disk.
pub fn publish(topic: &str, payload: &[u8], attributes: &[(&str, &str)]) -> Result<String, Error> {
    let attributes: Vec<(String, String)> = attributes.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    topics::publish(topic, payload, &attributes)
}
