//! Host side of the WIT interfaces guests import: one module per capability.
//!
//! Every capability checks the calling function's grants from its manifest entry; nothing is
//! reachable without one. Adding an interface = one WIT file in `wit/`, one line in the
//! `imports` world, one module here and one line in [`add_to_linker`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::call::CallState;
use crate::manifest::{Grants, ModelSpec, QueueSpec};
use crate::models::Models;
use crate::store::Store;

pub mod buckets;
pub mod config;
pub mod http;
pub mod items;
pub mod kv;
pub mod nn;
pub mod queues;
pub mod topics;

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
            "host:api/buckets.bucket": super::buckets::BucketDir,
            "host:api/items.dataset": crate::storage::datasets::Dataset,
            "wasi:nn/tensor.tensor": super::nn::Tensor,
            "wasi:nn/graph.graph": super::nn::Graph,
            "wasi:nn/inference.graph-execution-context": super::nn::ExecutionContext,
            "wasi:nn/errors.error": super::nn::NnError,
        },
    });
}

pub(crate) use generated::{host, wasi};

/// What one function may reach, shared by all its calls.
pub struct Capabilities {
    /// The app the function belongs to (the namespace of its stores and buckets).
    pub app: String,
    /// Resources granted by the manifest.
    pub grants: Grants,
    /// `wasi:config` values from the manifest.
    pub config: BTreeMap<String, String>,
    /// The host's embedded store.
    pub store: Arc<Store>,
    /// The folder holding this app's buckets.
    pub buckets_dir: PathBuf,
    /// The folder holding the bytes of every app's items.
    pub items_dir: PathBuf,
    /// The app's `[model.NAME]` entries.
    pub model_specs: Arc<BTreeMap<String, ModelSpec>>,
    /// The host's loaded models.
    pub models: Arc<Models>,
    /// The app's `[queue.NAME]` entries.
    pub queue_specs: Arc<BTreeMap<String, QueueSpec>>,
    /// The host's open queues.
    pub queues: Arc<crate::storage::queues::Queues>,
}

/// Add every capability interface to the linker.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    fn state(s: &mut CallState) -> &mut CallState {
        s
    }
    wasi::keyvalue::store::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    wasi::keyvalue::atomics::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    wasi::keyvalue::batch::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    host::api::kv_ext::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    wasi::config::store::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    host::api::buckets::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    host::api::items::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    host::api::queues::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    host::api::topics::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    wasi::nn::tensor::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    wasi::nn::graph::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    wasi::nn::inference::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    wasi::nn::errors::add_to_linker::<_, HasSelf<CallState>>(linker, state)?;
    Ok(())
}
