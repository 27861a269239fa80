//! `host:api/topics`: publishing through [`crate::storage::topics`], limited to granted topics.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::host::api::topics::{self, Error, Host};
use super::{CallParts, Capability, Parts, Setup};
use crate::manifest::Grants;
use crate::storage::topics::{self as storage, PublishError};

/// The topics a function may publish to.
pub struct Topics {
    app: String,
    grants: Arc<Grants>,
    topics: storage::Topics,
}

impl Capability for Topics {
    fn build(setup: &Setup<'_>) -> Option<Topics> {
        (!setup.grants.topics.is_empty()).then(|| Topics {
            app: setup.app.to_string(),
            grants: setup.grants.clone(),
            topics: setup.services.topics.clone(),
        })
    }

    fn add_to_linker<T: CallParts>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        topics::add_to_linker::<T, Topics>(linker, |state| state.parts().into())
    }
}

impl HasData for Topics {
    type Data<'a> = View<'a>;
}

/// What the `host:api/topics` host calls of one call work on.
pub struct View<'a>(Option<&'a Topics>);

impl<'a> From<Parts<'a>> for View<'a> {
    fn from(parts: Parts<'a>) -> View<'a> {
        View(parts.contexts.get())
    }
}

impl Host for View<'_> {
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        attributes: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<String, Error>> {
        let Some(topics) = self.0.filter(|t| t.grants.topic(&topic)) else {
            return Ok(Err(Error::AccessDenied));
        };
        let published = topics.topics.publish(&topics.app, &topic, payload, attributes).await;
        Ok(published.map_err(|e| match e {
            PublishError::Invalid(message) => Error::Invalid(message),
            PublishError::Storage(message) => Error::Other(message),
        }))
    }
}
