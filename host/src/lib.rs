//! A sandboxed WebAssembly function host.
//!
//! Load an app's `host.toml`, then call any function its components export, with JSON, in a fresh
//! sandboxed instance per call:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
//! # let data = tempfile::tempdir()?;
//! # host::build::build(&host::manifest::Manifest::load(examples.join("hello/host.toml"))?)?;
//! let host = host::Host::builder().data_dir(data.path()).build()?;
//! let app = host.load(examples.join("hello/host.toml"))?;
//! let greet = app.function("hello.greet")?;
//!
//! let runtime = tokio::runtime::Runtime::new()?;
//! let greeting = runtime.block_on(greet.call(serde_json::json!({ "who": { "name": "Ada", "age": 36 } })))?;
//! assert_eq!(greeting, "Hello, Ada! You are 36.");
//! # Ok(()) }
//! ```
//!
//! Guests import key-value stores (`wasi:keyvalue`), buckets, and config values
//! (`wasi:config`), each limited to what the manifest grants the function.

#![warn(missing_docs)]

pub mod build;
pub mod call;
pub mod capabilities;
pub mod client;
pub mod clock;
pub mod deploy;
pub mod engine;
pub mod exports;
mod files;
mod function;
mod host;
mod invocation;
pub mod manifest;
mod map;
pub mod metrics;
pub mod mimetype;
pub mod models;
pub mod names;
mod outcome;
mod runner;
pub mod schedules;
pub mod server;
pub mod storage;
pub mod store;
pub mod triggers;
pub mod values;
pub mod watch;

use std::path::PathBuf;

pub use crate::call::Guest;
pub use crate::function::Function;
pub use crate::host::{App, DEFAULT_DATA_DIR, Host, HostBuilder, VariableError};
pub use crate::invocation::CallReport;
pub use crate::map::{MapCalls, MapInputs, MapOutcome, outcome_json};
pub use crate::outcome::{CallError, Logs};
/// The execution records, at the path the API has always had.
pub use crate::storage::executions;
pub use crate::values::ArgumentError;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest could not be read or is invalid.
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    /// A component could not be loaded.
    #[error(transparent)]
    Load(#[from] engine::LoadError),
    /// A build command failed.
    #[error(transparent)]
    Build(#[from] build::BuildError),
    /// No such function in the app.
    #[error("no function `{name}` in app `{app}`; available: {}", available.join(", "))]
    UnknownFunction {
        /// The app searched.
        app: String,
        /// The name asked for.
        name: String,
        /// Every callable name.
        available: Vec<String>,
    },
    /// The JSON arguments do not match the function's parameters.
    #[error(transparent)]
    Argument(#[from] ArgumentError),
    /// The call ran and failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The data dir cannot be used.
    #[error("cannot use data dir {path}: {message}")]
    DataDir {
        /// The data dir.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A `[model.NAME]` of the manifest could not be loaded.
    #[error("manifest {path}: {message}")]
    Model {
        /// The manifest.
        path: PathBuf,
        /// Which model and why.
        message: String,
    },
    /// A queue operation failed.
    #[error(transparent)]
    Queue(#[from] storage::queues::QueueError),
    /// Publishing to a topic failed.
    #[error(transparent)]
    Publish(#[from] storage::topics::PublishError),
    /// An execution record could not be written.
    #[error("cannot record the execution: {0}")]
    Record(String),
    /// The wasmtime engine could not be created.
    #[error("cannot start the engine: {0}")]
    Engine(String),
    /// The networked backend cannot be reached.
    #[error(transparent)]
    Backend(#[from] storage::nats::NatsError),
    /// An app's `[variables]` cannot be given values, or the secrets file cannot be used.
    #[error(transparent)]
    Variable(#[from] VariableError),
}

/// The callable exports of a component file, read from its own type information. `cache_dir`
/// holds compiled components (the same cache a [`Host`] uses, under its data dir).
pub fn inspect(component: &std::path::Path, cache_dir: &std::path::Path) -> Result<Vec<exports::Export>, Error> {
    let runtime = engine::Runtime::new(cache_dir.to_path_buf()).map_err(|e| Error::Engine(format!("{e:#}")))?;
    Ok(exports::exports(runtime.load(component)?.component()))
}
