//! `[function.NAME]`: a component, how it is built, its limits, grants, config and record mode.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::access::Public;
use super::grants::{Grants, RawGrants};
use super::models::ModelSpec;
use super::units::{ByteSize, Timeout};

/// The largest memory limit a function may ask for.
pub const MAX_MEMORY: u64 = 4 << 30;

/// The smallest memory limit a function may ask for (one Wasm page).
const MIN_MEMORY: u64 = 64 << 10;

/// One `[function.NAME]` table: a component and what it may do.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The component file, resolved against the manifest's folder.
    pub source: PathBuf,
    /// Shell command that builds `source`, run in the manifest's folder by `host build`.
    pub build: Option<String>,
    /// Files and folders `source` is built from (`build-inputs`), resolved against the manifest's
    /// folder: when given, `host build` skips the command while `source` is newer than all of them.
    pub build_inputs: Vec<PathBuf>,
    /// Per-call limits.
    pub limits: Limits,
    /// What the function may touch.
    pub grants: Grants,
    /// Values answered by `wasi:config/store`.
    pub config: BTreeMap<String, String>,
    /// Which direct calls get an execution record (`record`).
    pub record: RecordMode,
    /// Which exports may be called without a token (`public`).
    pub public: Public,
}

/// Which direct calls of a function (`call`, `map`, `http`) get an execution record: `record =
/// "all"` (the default), `"errors"` (failed calls only) or `"none"`. Jobs, enqueued calls and
/// triggered executions are always recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordMode {
    /// Every call.
    #[default]
    All,
    /// Failed calls only.
    Errors,
    /// No direct call.
    #[serde(rename = "none")]
    Nothing,
}

impl RecordMode {
    /// Whether a direct call that `failed` (or not) is recorded.
    pub fn records(self, failed: bool) -> bool {
        match self {
            RecordMode::All => true,
            RecordMode::Errors => failed,
            RecordMode::Nothing => false,
        }
    }
}

/// Per-call limits of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory per instance, in bytes.
    pub memory: u64,
    /// Wall-clock time per call.
    pub timeout: Duration,
    /// Calls of this function running at once; more wait their turn.
    pub concurrency: u32,
    /// Bytes kept of each of stdout and stderr per call; the rest is counted and reported.
    pub output: u64,
    /// Entries in the call's resource table (open buckets, stores, streams...).
    pub table_entries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 256 << 20,
            timeout: Duration::from_secs(30),
            concurrency: 64,
            output: 1 << 20,
            table_entries: 10_000,
        }
    }
}

/// A `[function.NAME]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFunction {
    source: PathBuf,
    build: Option<String>,
    #[serde(default, rename = "build-inputs")]
    build_inputs: Vec<PathBuf>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    record: RecordMode,
    #[serde(default)]
    public: Public,
}

/// `limits = { ... }` as written; unset limits take the defaults.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    memory: Option<ByteSize>,
    timeout: Option<Timeout>,
    concurrency: Option<NonZeroU32>,
    output: Option<ByteSize>,
    table_entries: Option<NonZeroU32>,
}

impl RawLimits {
    /// The limits, checked; `at` is the table's key path (`function.NAME.limits`).
    fn check(self, at: &str) -> Result<Limits, String> {
        let defaults = Limits::default();
        let limits = Limits {
            memory: self.memory.map_or(defaults.memory, |b| b.0),
            timeout: self.timeout.map_or(defaults.timeout, |t| t.0),
            concurrency: self.concurrency.map_or(defaults.concurrency, NonZeroU32::get),
            output: self.output.map_or(defaults.output, |b| b.0),
            table_entries: self.table_entries.map_or(defaults.table_entries, NonZeroU32::get),
        };
        if !(MIN_MEMORY..=MAX_MEMORY).contains(&limits.memory) {
            return Err(format!("{at}.memory: {} bytes is out of range (64KiB to 4GiB)", limits.memory));
        }
        Ok(limits)
    }
}

impl RawFunction {
    /// The function `name`, checked, with paths resolved against `base` (the manifest's folder);
    /// `models` are the app's `[model.NAME]` entries its grants may name.
    pub(super) fn check(
        self,
        name: &str,
        base: &Path,
        models: &BTreeMap<String, ModelSpec>,
    ) -> Result<FunctionSpec, String> {
        let at = format!("function.{name}");
        let limits = self.limits.check(&format!("{at}.limits"))?;
        let grants = self.grants.check(&format!("{at}.grants"), models)?;
        if let Some(key) = self.config.keys().find(|k| k.is_empty()) {
            return Err(format!("{at}.config: empty key `{key}`"));
        }
        if self.build.is_none() && !self.build_inputs.is_empty() {
            return Err(format!("{at}.build-inputs: there is no `build` command to run"));
        }
        let public = self.public.check(&format!("{at}.public"))?;
        Ok(FunctionSpec {
            source: base.join(&self.source),
            build: self.build,
            build_inputs: self.build_inputs.iter().map(|input| base.join(input)).collect(),
            limits,
            grants,
            config: self.config,
            record: self.record,
            public,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(toml: &str) -> Result<FunctionSpec, String> {
        let raw: RawFunction = toml::from_str(toml).map_err(|e| e.to_string())?;
        raw.check("f", Path::new("/apps/x"), &BTreeMap::new())
    }

    #[test]
    fn unset_limits_take_the_defaults_and_paths_resolve_against_the_manifest_folder() {
        let f = function("source = \"f.wasm\"\nlimits = { timeout = \"250ms\" }\n").unwrap();
        assert_eq!(f.source, Path::new("/apps/x/f.wasm"));
        assert_eq!(f.limits, Limits { timeout: Duration::from_millis(250), ..Limits::default() });
        assert_eq!((f.record, f.build, f.grants), (RecordMode::All, None, Grants::default()));
    }

    #[test]
    fn memory_must_be_between_one_page_and_4gib() {
        assert_eq!(function("source = \"f.wasm\"\nlimits = { memory = \"64KiB\" }\n").unwrap().limits.memory, 64 << 10);
        assert!(function("source = \"f.wasm\"\nlimits = { memory = \"4GiB\" }\n").is_ok());
        let err = function("source = \"f.wasm\"\nlimits = { memory = \"1KiB\" }\n").unwrap_err();
        assert_eq!(err, "function.f.limits.memory: 1024 bytes is out of range (64KiB to 4GiB)");
    }

    #[test]
    fn config_keys_and_build_inputs_are_checked() {
        let err = function("source = \"f.wasm\"\nconfig = { \"\" = \"x\" }\n").unwrap_err();
        assert_eq!(err, "function.f.config: empty key ``");
        let err = function("source = \"f.wasm\"\nbuild-inputs = [\"src\"]\n").unwrap_err();
        assert_eq!(err, "function.f.build-inputs: there is no `build` command to run");
        let f = function("source = \"f.wasm\"\nbuild = \"make\"\nbuild-inputs = [\"src\"]\n").unwrap();
        assert_eq!(f.build_inputs, [Path::new("/apps/x/src")]);
    }

    #[test]
    fn record_modes() {
        assert!(RecordMode::All.records(false) && RecordMode::Errors.records(true));
        assert!(!RecordMode::Errors.records(false) && !RecordMode::Nothing.records(true));
    }
}
