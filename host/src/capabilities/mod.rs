//! Host side of the WIT interfaces guests import: one module per capability, all of one shape.
//!
//! A capability is a context type implementing [`Capability`]: built once per function from its
//! grants ([`Capability::build`]; `None` when the function is granted nothing of it), and linked
//! through its own view type (its context, the call's resource table and memory [`Limiter`]), on
//! which its WIT host traits are implemented. A function without the context gets the
//! capability's refusals (`access-denied`, ...). The call's state only lends its parts
//! ([`CallParts`]); nothing here knows the call machinery. Adding one is a module here and one
//! line in the `capabilities!` list.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::{Linker, ResourceTable};

use crate::manifest::{Grants, ModelSpec, QueueSpec};
use crate::metrics::Metrics;
use crate::models::Models;
use crate::storage::blobs::BlobBackend;
use crate::storage::datasets::{Cause, DatasetBackend};
use crate::storage::kv::KvBackend;
use crate::storage::topics::Topics;

pub mod memory;

/// Declares every capability's module and [`each`], the list of their context types in link
/// order, from one line per capability: `module::Context`.
macro_rules! capabilities {
    ($($module:ident :: $context:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every capability, in link order.
        fn each(visit: &mut impl Visit) {
            $(visit.visit::<$module::$context>();)*
        }
    };
}

// Adding a capability is one line here (and its module).
capabilities! {
    kv::Kv,
    config::Config,
    buckets::Buckets,
    items::Items,
    queues::Queues,
    topics::Topics,
    nn::Nn,
    http::Outbound,
}

use memory::Limiter;

/// Host bindings generated from `wit/` for the `host:api/imports` world.
#[allow(missing_docs)]
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "host:api/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::kv::KvBucket,
            "wasi:keyvalue/atomics.cas": super::kv::KvCas,
            "host:api/buckets.bucket": super::buckets::OpenBucket,
            "host:api/items.dataset": crate::storage::datasets::Dataset,
            "wasi:nn/tensor.tensor": super::nn::Tensor,
            "wasi:nn/graph.graph": super::nn::Graph,
            "wasi:nn/inference.graph-execution-context": super::nn::ExecutionContext,
            "wasi:nn/errors.error": super::nn::NnError,
        },
    });
}

pub(crate) use generated::{host, wasi};

/// One capability: its per-function context (this type) and how it links its interfaces.
pub trait Capability: Sized + Send + Sync + 'static {
    /// Its context for the function `setup` describes; `None` when the function is granted none
    /// of it.
    fn build(setup: &Setup<'_>) -> Option<Self>;

    /// Link its interfaces; each host call reaches its view through [`CallParts::parts`].
    fn add_to_linker<T: CallParts>(linker: &mut Linker<T>) -> wasmtime::Result<()>;
}

/// Something that is told every capability type, see [`each`].
trait Visit {
    fn visit<C: Capability>(&mut self);
}

/// The host's shared services that capability contexts are built from.
pub struct Services {
    /// Key-value stores.
    pub kv: Arc<dyn KvBackend>,
    /// Buckets.
    pub blobs: Arc<dyn BlobBackend>,
    /// The folder holding every app's buckets (model files in buckets are read from it).
    pub buckets_root: PathBuf,
    /// Datasets of items.
    pub datasets: Arc<dyn DatasetBackend>,
    /// Topics.
    pub topics: Topics,
    /// The host's loaded models.
    pub models: Arc<Models>,
    /// The host's open queues.
    pub queues: Arc<crate::storage::queues::Queues>,
}

/// What a capability's context is built from: one function of one app.
pub struct Setup<'a> {
    /// The app the function belongs to (the namespace of its stores and buckets).
    pub app: &'a str,
    /// The function's name.
    pub function: &'a str,
    /// The function's grants from the manifest.
    pub grants: &'a Arc<Grants>,
    /// The function's `wasi:config` values from the manifest.
    pub config: &'a BTreeMap<String, String>,
    /// The app's `[model.NAME]` entries.
    pub model_specs: &'a Arc<BTreeMap<String, ModelSpec>>,
    /// The app's `[queue.NAME]` entries.
    pub queue_specs: &'a Arc<BTreeMap<String, QueueSpec>>,
    /// The app's `[outbound]` settings.
    pub outbound: &'a Arc<http::AppOutbound>,
    /// Where the function's calls are counted.
    pub metrics: &'a Arc<Metrics>,
    /// The host's services.
    pub services: &'a Services,
}

/// The contexts of the capabilities one function is granted, shared by all its calls.
pub struct Contexts {
    app: String,
    granted: Vec<Box<dyn Any + Send + Sync>>,
}

impl Contexts {
    /// Build every capability's context for the function `setup` describes.
    pub fn build(setup: &Setup<'_>) -> Contexts {
        struct Build<'s, 'a> {
            setup: &'s Setup<'a>,
            granted: Vec<Box<dyn Any + Send + Sync>>,
        }
        impl Visit for Build<'_, '_> {
            fn visit<C: Capability>(&mut self) {
                if let Some(context) = C::build(self.setup) {
                    self.granted.push(Box::new(context));
                }
            }
        }
        let mut build = Build { setup, granted: Vec::new() };
        each(&mut build);
        Contexts { app: setup.app.to_string(), granted: build.granted }
    }

    /// The context of capability `C`, when the function is granted it.
    pub fn get<C: Capability>(&self) -> Option<&C> {
        self.granted.iter().find_map(|c| c.downcast_ref())
    }

    /// The app the function belongs to.
    pub fn app(&self) -> &str {
        &self.app
    }
}

/// What a call's state lends to capability views for one host call.
pub struct Parts<'a> {
    /// The function's capability contexts.
    pub contexts: &'a Contexts,
    /// The call's resource table.
    pub table: &'a mut ResourceTable,
    /// The call's memory accounting.
    pub memory: &'a mut Limiter,
    /// The trigger that started the call, if one did: changes it makes carry it.
    pub cause: Option<&'a Cause>,
}

/// A call's state, as capabilities see it.
pub trait CallParts: Send + 'static {
    /// Its parts, borrowed for one host call.
    fn parts(&mut self) -> Parts<'_>;
}

/// Add every capability's interfaces to the linker.
pub fn add_to_linker<T: CallParts>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    struct Link<'l, T: 'static> {
        linker: &'l mut Linker<T>,
        result: wasmtime::Result<()>,
    }
    impl<T: CallParts> Visit for Link<'_, T> {
        fn visit<C: Capability>(&mut self) {
            if self.result.is_ok() {
                self.result = C::add_to_linker(self.linker);
            }
        }
    }
    let mut link = Link { linker, result: Ok(()) };
    each(&mut link);
    link.result
}

#[cfg(test)]
mod tests;
