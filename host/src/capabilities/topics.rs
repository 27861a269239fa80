//! `host:api/topics`: publishing through [`crate::storage::topics`], limited to granted topics.

use super::host::api::topics::{Error, Host};
use crate::call::CallState;
use crate::storage::topics::{PublishError, Topics};

impl Host for CallState {
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        attributes: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<String, Error>> {
        if !self.caps.grants.topic(&topic) {
            return Ok(Err(Error::AccessDenied));
        }
        let published = Topics::embedded(&self.caps.store).publish(&self.caps.app, &topic, payload, attributes).await;
        Ok(published.map_err(|e| match e {
            PublishError::Invalid(message) => Error::Invalid(message),
            PublishError::Storage(message) => Error::Other(message),
        }))
    }
}
