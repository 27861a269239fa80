//! `host.toml`: an app, its functions (components), their limits, grants and config values, its
//! triggers, models and queues.
//!
//! Each section is read as written (a `Raw*` type whose serde errors name the key and the line),
//! then checked on its own (a `check` that names the key path), in this order: models, functions
//! (whose grants name models), variables (which config templates name), triggers and HTTP routes
//! (which name functions), site, queues, access.
//! `golden.rs` pins the exact text of every error class (`tests/manifest/*.toml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `impl Deserialize` for a type parsed from a TOML string by `$parse`, whose error text becomes
/// serde's message (so it comes with the key and the line).
macro_rules! deserialize_from_str {
    ($ty:ty, $parse:expr) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                $parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

mod access;
mod function;
#[cfg(test)]
mod golden;
mod grants;
mod http;
mod models;
mod outbound;
mod queues;
mod triggers;
mod units;
mod variables;

pub use self::access::{AccessSpec, ORIGIN_EXPECTED, Public, RateLimit, valid_origin};
pub use self::function::{FunctionSpec, Limits, MAX_MEMORY, RecordMode};
pub use self::grants::{BucketsGrant, DatasetsGrant, Grants, KvGrant, ModelsGrant, QueuesGrant, TopicsGrant};
pub use self::http::{HttpRoute, RESERVED_ROUTES, Site};
pub use self::models::{ModelEngine, ModelSource, ModelSpec};
pub use self::outbound::{
    AllowedHost, HostPattern, HttpGrant, OutboundSpec, PortPattern, default_port, is_internal, parse_ip,
};
pub use self::queues::QueueSpec;
pub use self::triggers::{ItemTrigger, QueueTrigger, ScheduleTrigger, TopicTrigger};
pub use self::units::{MAX_TIMEOUT, parse_bytes};
pub use self::variables::VariableSpec;
pub(crate) use self::variables::render;
pub use crate::names::{DEAD_LETTER_SUFFIX, ResourceName};

/// A manifest could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {source}")]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the manifest format.
    #[error("invalid manifest {path}: {message}")]
    Invalid {
        /// The manifest path.
        path: PathBuf,
        /// What is wrong, with the line and the key.
        message: String,
    },
}

/// A parsed and validated `host.toml`.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// The app's name; every store, bucket and record is namespaced by it.
    pub app: String,
    /// Functions by name, in name order.
    pub functions: BTreeMap<String, FunctionSpec>,
    /// `[[trigger.http]]` routes, in manifest order.
    pub http_routes: Vec<HttpRoute>,
    /// `[site]`: static files served by `host serve`.
    pub site: Option<Site>,
    /// `[[trigger.item]]` entries, in manifest order.
    pub item_triggers: Vec<ItemTrigger>,
    /// `[model.NAME]`: ONNX models the host runs for the app's functions (`wasi:nn`).
    pub models: BTreeMap<String, ModelSpec>,
    /// `[queue.NAME]`: settings of the app's queues (queues not listed use the defaults).
    pub queues: BTreeMap<String, QueueSpec>,
    /// `[[trigger.queue]]` consumers, in manifest order.
    pub queue_triggers: Vec<QueueTrigger>,
    /// `[[trigger.topic]]` subscriptions, in manifest order.
    pub topic_triggers: Vec<TopicTrigger>,
    /// `[[trigger.schedule]]` entries, in manifest order.
    pub schedule_triggers: Vec<ScheduleTrigger>,
    /// `[outbound]`: how functions reach the hosts their `grants.http` lists.
    pub outbound: OutboundSpec,
    /// `[variables]`: values given at load time that config values name as `{{ name }}`.
    pub variables: BTreeMap<String, VariableSpec>,
    /// `[access]`: the rate limit of calls without a token, and the app's CORS origins.
    pub access: AccessSpec,
}

/// The whole file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    app: RawApp,
    #[serde(default)]
    function: BTreeMap<ResourceName, function::RawFunction>,
    #[serde(default)]
    trigger: triggers::RawTriggers,
    site: Option<http::RawSite>,
    #[serde(default)]
    model: BTreeMap<ResourceName, models::RawModel>,
    #[serde(default)]
    queue: BTreeMap<ResourceName, queues::RawQueue>,
    outbound: Option<outbound::RawOutbound>,
    #[serde(default)]
    variables: BTreeMap<variables::VariableName, variables::RawVariable>,
    #[serde(default)]
    access: access::RawAccess,
}

/// `[app]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: ResourceName,
}

impl Manifest {
    /// Read and validate a manifest file.
    pub fn load(path: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.to_path_buf(), source })?;
        Manifest::parse(path, &text)
    }

    /// Validate manifest text as if read from `path` (relative sources resolve against its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid { path: path.to_path_buf(), message };
        let raw: RawManifest = toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_string()))?;
        Manifest::check(path, raw).map_err(invalid)
    }

    /// Check every section of `raw`, read from `path`.
    fn check(path: &Path, raw: RawManifest) -> Result<Manifest, String> {
        let base = path.parent().unwrap_or(Path::new("."));
        let mut models = BTreeMap::new();
        for (name, m) in raw.model {
            let spec = m.check(&name.0, base)?;
            models.insert(name.0, spec);
        }
        let mut functions = BTreeMap::new();
        for (name, f) in raw.function {
            let spec = f.check(&name.0, base, &models)?;
            functions.insert(name.0, spec);
        }
        if functions.is_empty() {
            return Err("no functions: add a `[function.NAME]` table with a `source`".into());
        }
        let variables = variables::check(raw.variables)?;
        variables::check_config(&functions, &variables)?;
        let triggers = raw.trigger.check(&functions)?;
        let queues = raw.queue.into_iter().map(|(n, q)| (n.0, QueueSpec::from(q))).collect();
        let outbound = raw.outbound.map(|o| o.check(base)).transpose()?.unwrap_or_default();
        let access = raw.access.check()?;
        Ok(Manifest {
            path: path.to_path_buf(),
            app: raw.app.name.0,
            functions,
            http_routes: triggers.http,
            site: raw.site.map(|s| s.resolve(base)),
            item_triggers: triggers.item,
            models,
            queues,
            queue_triggers: triggers.queue,
            topic_triggers: triggers.topic,
            schedule_triggers: triggers.schedule,
            outbound,
            variables,
            access,
        })
    }

    /// Names of one kind of resource (`|g| &g.kv`, `&g.buckets`, `&g.datasets`) granted to any
    /// function of the app, sorted and without repeats.
    pub fn granted<G: AsRef<[ResourceName]>>(&self, kind: impl Fn(&Grants) -> &G) -> Vec<String> {
        let mut names: Vec<String> =
            self.functions.values().flat_map(|f| kind(&f.grants).as_ref()).map(|n| n.0.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// The folder the manifest is in; build commands run there.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("/apps/x/host.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn full_manifest_parses_with_defaults_and_resolved_paths() {
        let m = parse(
            r#"
[app]
name = "demo"

[function.counter]
source = "../out/counter.wasm"
build = "make"
build-inputs = ["src", "../wit"]
limits = { memory = "16MiB", timeout = "250ms" }
grants = { kv = ["default"], buckets = ["notes"] }
config = { greeting = "hi" }

[function.plain]
source = "plain.wasm"
"#,
        )
        .unwrap();
        assert_eq!(m.app, "demo");
        let c = &m.functions["counter"];
        assert_eq!(c.source, Path::new("/apps/x/../out/counter.wasm"));
        assert_eq!(c.build_inputs, [Path::new("/apps/x/src"), Path::new("/apps/x/../wit")]);
        assert_eq!(c.limits.memory, 16 << 20);
        assert_eq!(c.limits.timeout, Duration::from_millis(250));
        assert_eq!(c.limits.output, Limits::default().output);
        assert!(c.grants.kv("default") && !c.grants.kv("other") && c.grants.bucket("notes"));
        assert_eq!(c.config["greeting"], "hi");
        assert_eq!(m.functions["plain"].grants, Grants::default());
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Manifest::load("/nonexistent/host.toml").unwrap_err();
        assert!(matches!(err, ManifestError::Read { .. }), "{err:?}");
        assert!(err.to_string().starts_with("cannot read manifest /nonexistent/host.toml: "), "{err}");
    }

    #[test]
    fn granted_lists_each_name_once_across_functions() {
        let m = parse(
            "[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\ngrants = { kv = [\"b\", \"a\"], queues = [\"q\"] }\n\
             [function.g]\nsource = \"g.wasm\"\ngrants = { kv = [\"a\"] }\n",
        )
        .unwrap();
        assert_eq!(m.granted(|g| &g.kv), ["a", "b"]);
        assert_eq!(m.granted(|g| &g.queues), ["q"]);
        assert!(m.granted(|g| &g.models).is_empty());
    }

    #[test]
    fn record_says_which_direct_calls_are_recorded() {
        let m = parse("[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\nrecord = \"errors\"\n").unwrap();
        assert_eq!(m.functions["f"].record, RecordMode::Errors);
        assert!(m.functions["f"].record.records(true) && !m.functions["f"].record.records(false));
        let m = parse("[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\n").unwrap();
        assert_eq!(m.functions["f"].record, RecordMode::All, "the default");
        let err = parse("[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\nrecord = \"some\"\n").unwrap_err();
        assert!(err.contains("line 5") && err.contains("`all`, `errors`, `none`"), "{err}");
    }

    #[test]
    fn build_inputs_need_a_build_command() {
        let err =
            parse("[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\nbuild-inputs = [\"src\"]\n").unwrap_err();
        assert!(err.contains("function.f.build-inputs") && err.contains("no `build` command"), "{err}");
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = parse("[app]\nname = \"a\"\n\n[function.f]\nsource = \"f.wasm\"\nsorce = \"x\"\n").unwrap_err();
        assert!(err.contains("line 6") && err.contains("sorce"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let err =
            parse("[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\nlimits = { memory = \"64 lizards\" }\n")
                .unwrap_err();
        assert!(err.contains("line 5") && err.contains("64 lizards"), "{err}");
        let err = parse("[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\nlimits = { timeout = \"soon\" }\n")
            .unwrap_err();
        assert!(err.contains("line 5") && err.contains("soon"), "{err}");
        let err = parse("[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\nlimits = { timeout = \"2days\" }\n")
            .unwrap_err();
        assert!(err.contains("line 5") && err.contains("at most 24h"), "{err}");
        let err = parse("[app]\nname = \"Bad/Name\"\n[function.f]\nsource = \"f.wasm\"\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("Bad/Name"), "{err}");
        let err =
            parse("[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\ngrants = { buckets = [\"../etc\"] }\n")
                .unwrap_err();
        assert!(err.contains("line 5") && err.contains("../etc"), "{err}");
        let err = parse("[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\nlimits = { memory = \"8GiB\" }\n")
            .unwrap_err();
        assert!(err.contains("function.f.limits.memory"), "{err}");
    }

    #[test]
    fn schedule_intervals_out_of_range_name_the_trigger_and_field() {
        let manifest = |every: &str| {
            parse(&format!(
                "[app]\nname = \"a\"\n[function.f]\nsource = \"f.wasm\"\n[[trigger.schedule]]\nname = \"t\"\nfunction = \"f.tick\"\nevery = \"{every}\"\n"
            ))
        };
        assert!(manifest("1h").is_ok());
        for every in ["18446744073709551s 616ms", "400days", "500ms"] {
            let err = manifest(every).unwrap_err();
            assert!(
                err.contains("trigger.schedule[0] (`t`)") && err.contains(&format!("`every = \"{every}\"`")),
                "{err}"
            );
        }
    }
}
