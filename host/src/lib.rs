//! A sandboxed WebAssembly function host.
//!
//! Load an app's `host.toml`, then call any function its components export, with JSON, in a fresh
//! sandboxed instance per call:
//!
//! ```no_run
//! # async fn demo() -> Result<(), host::Error> {
//! let host = host::Host::builder().data_dir(".host").build()?;
//! let app = host.load("examples/hello/host.toml")?;
//! let greeting = app
//!     .function("hello.greet")?
//!     .call(serde_json::json!({ "who": { "name": "Ada", "age": 36 } }))
//!     .await?;
//! assert_eq!(greeting, "Hello, Ada! You are 36.");
//! # Ok(()) }
//! ```
//!
//! Guests import key-value stores (`wasi:keyvalue`), buckets, and config values
//! (`wasi:config`), each limited to what the manifest grants the function.

pub mod build;
pub mod call;
pub mod capabilities;
pub mod engine;
pub mod exports;
mod host;
pub mod manifest;
pub mod store;
pub mod values;

use std::path::PathBuf;

pub use crate::call::{CallError, Logs};
pub use crate::host::{App, CallReport, DEFAULT_DATA_DIR, Function, Host, HostBuilder};
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
    /// The wasmtime engine could not be created.
    #[error("cannot start the engine: {0}")]
    Engine(String),
}
