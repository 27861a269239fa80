//! The wasmtime engine: pooling allocator (on-demand when the address space cannot be reserved),
//! one epoch ticker thread, the linker with every host interface, and the on-disk cache of
//! compiled components keyed by content hash.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::call::{CallState, EPOCH_TICK};
use crate::manifest::MAX_MEMORY;

/// Calls that may be in flight at once across the host (pool size).
const POOL_INSTANCES: u32 = 1000;

/// Engine-wide state shared by every app of a host.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<CallState>,
    cache_dir: PathBuf,
    /// One `InstancePre` per distinct component (by content hash), shared by every function using it.
    loaded: Mutex<HashMap<[u8; 32], InstancePre<CallState>>>,
    /// Components compiled from Wasm (not found in memory or in the on-disk cache).
    pub(crate) compilations: AtomicU64,
    /// Whether the pooling allocator is in use (false: on-demand fallback).
    pub pooling: bool,
}

/// A component could not be read or compiled.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read component {path}: {source} (build it with `host build`?)")]
    Read {
        /// The component path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid component, or it imports something the host does not provide.
    #[error("cannot load component {path}: {message}")]
    Invalid {
        /// The component path.
        path: PathBuf,
        /// What wasmtime said.
        message: String,
    },
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true).memory_init_cow(true);
    config
}

fn pooling_config() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 4)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 4)
        .total_stacks(POOL_INSTANCES)
        .max_core_instances_per_component(50)
        .max_memories_per_component(10)
        .max_tables_per_component(20)
        .max_memory_size(MAX_MEMORY as usize)
        // Keep the first pages of each slot resident and reset them with memset/pagemap instead
        // of madvise: a fresh instance then costs a few microseconds instead of tens.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        // Return memory beyond the resident part to the OS in batches, not one syscall per call.
        .decommit_batch_size(32)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

impl Runtime {
    /// Build the engine and linker; `cache_dir` keeps compiled components between runs.
    pub fn new(cache_dir: PathBuf) -> wasmtime::Result<Runtime> {
        let mut config = base_config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config()));
        let (engine, pooling) = match Engine::new(&config) {
            Ok(engine) => (engine, true),
            Err(error) => {
                tracing::warn!(%error, "pooling allocator unavailable (address space reservation failed?); using on-demand allocation");
                (Engine::new(&base_config())?, false)
            }
        };
        start_ticker(&engine);
        let mut linker = Linker::new(&engine);
        crate::call::add_to_linker(&mut linker)?;
        Ok(Runtime {
            engine,
            linker,
            cache_dir,
            loaded: Mutex::new(HashMap::new()),
            compilations: AtomicU64::new(0),
            pooling,
        })
    }

    /// Load a component ready to instantiate: from memory when these exact bytes were loaded
    /// before, else from the on-disk cache when an engine with the same settings compiled them,
    /// else compile it and cache the result. Fails when it imports what the host does not provide.
    pub fn load(&self, path: &Path) -> Result<InstancePre<CallState>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.into(), source })?;
        let key: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(pre) = self.loaded.lock().unwrap().get(&key) {
            return Ok(pre.clone());
        }
        let invalid = |e: wasmtime::Error| LoadError::Invalid { path: path.into(), message: format!("{e:#}") };
        let cached = self.cache_dir.join(format!("{}-{:016x}.cwasm", hex(&key), self.engine_hash()));
        // SAFETY: the cache only holds files this function wrote with `Component::serialize` for an
        // engine with the same compatibility hash (part of the file name); files are written to a
        // temporary name and renamed into place, so a torn write is never deserialized.
        let component = match unsafe { Component::deserialize_file(&self.engine, &cached) } {
            Ok(component) => component,
            Err(_) => {
                let started = std::time::Instant::now();
                let component = Component::new(&self.engine, &bytes).map_err(invalid)?;
                self.compilations.fetch_add(1, Ordering::Relaxed);
                tracing::info!(path = %path.display(), elapsed = ?started.elapsed(), "compiled component");
                if let Err(error) = self.store_compiled(&component, &cached) {
                    tracing::warn!(%error, path = %cached.display(), "cannot cache compiled component");
                }
                component
            }
        };
        let pre = self.linker.instantiate_pre(&component).map_err(invalid)?;
        self.loaded.lock().unwrap().insert(key, pre.clone());
        Ok(pre)
    }

    fn store_compiled(&self, component: &Component, cached: &Path) -> anyhow::Result<()> {
        static STAGED: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(&self.cache_dir)?;
        let unique = format!("tmp-{}-{}", std::process::id(), STAGED.fetch_add(1, Ordering::Relaxed));
        let tmp = cached.with_extension(unique);
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, &component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, cached)?;
        Ok(())
    }

    fn engine_hash(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One thread per engine advances the epoch every [`EPOCH_TICK`]; it ends with the engine.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn epoch ticker thread");
}
