//! `host.toml`: an app, its functions (components), their limits, grants and config values.
//!
//! Unknown keys and bad values are errors that name the key, the file and the line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

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
}

/// The dead-letter queue of queue `q` is `q.dead`.
pub use crate::storage::queues::DEAD_LETTER_SUFFIX;

/// One `[queue.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Deliveries of a message before it moves to the dead-letter queue `NAME.dead`.
    pub max_attempts: u32,
}

impl QueueSpec {
    /// Settings of queue `name` among an app's `[queue.NAME]` entries (a dead-letter queue
    /// `NAME.dead` never dead-letters).
    pub fn of(specs: &BTreeMap<String, QueueSpec>, name: &str) -> QueueSpec {
        match name.strip_suffix(DEAD_LETTER_SUFFIX) {
            Some(_) => QueueSpec { max_attempts: u32::MAX },
            None => specs.get(name).cloned().unwrap_or_default(),
        }
    }
}

impl From<&QueueSpec> for crate::storage::queues::QueueSettings {
    fn from(spec: &QueueSpec) -> Self {
        crate::storage::queues::QueueSettings { max_attempts: spec.max_attempts }
    }
}

impl Default for QueueSpec {
    fn default() -> Self {
        QueueSpec { max_attempts: 5 }
    }
}

/// One `[[trigger.queue]]`: a function consumes a queue, one message per call.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueTrigger {
    /// Unique in the app; names its executions' `trigger`.
    pub name: String,
    /// The queue consumed.
    pub queue: String,
    /// `function.export`, taking one `message` argument.
    pub function: String,
    /// Wait before the second delivery after a failure; doubled before each next one.
    pub backoff: Duration,
}

/// One `[[trigger.topic]]`: a subscription calling a function for every message of a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicTrigger {
    /// Unique in the app; names its executions' `trigger`.
    pub name: String,
    /// The topic subscribed to.
    pub topic: String,
    /// `function.export`, taking one `event` argument.
    pub function: String,
    /// Attempts per message (1: no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each next one.
    pub backoff: Duration,
}

/// One `[[trigger.schedule]]`: a function called at fixed times.
#[derive(Debug, Clone)]
pub struct ScheduleTrigger {
    /// Unique in the app; names its executions' `trigger` and keys its last fire time.
    pub name: String,
    /// When it fires.
    pub schedule: crate::schedule::Schedule,
    /// `function.export`, taking `scheduled-ms: u64` and `missed: u64`.
    pub function: String,
    /// Attempts per fire (1: no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each next one.
    pub backoff: Duration,
}

/// One `[model.NAME]`: an ONNX model functions granted it load with `wasi:nn` `load-by-name`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Where the model's bytes are.
    pub source: ModelSource,
    /// Concrete input shapes by input name, for models whose declared shapes are symbolic or wrong.
    pub inputs: BTreeMap<String, Vec<usize>>,
    /// Load (parse, type, optimize) when the app loads instead of on first use.
    pub warm: bool,
    /// Computations of this model running at once; more wait their turn.
    pub concurrency: u32,
}

/// Where a model's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A file, resolved against the manifest's folder.
    Path(PathBuf),
    /// An object in one of the app's buckets (e.g. written by a training function); reloaded when
    /// it changes.
    Bucket {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
    },
}

/// One `[[trigger.item]]`: changes of items in a dataset start executions of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemTrigger {
    /// Unique in the app; names its executions' `trigger`.
    pub name: String,
    /// The dataset watched.
    pub dataset: String,
    /// Which changes fire it.
    pub on: Vec<crate::storage::datasets::Action>,
    /// Which items fire it.
    pub filter: crate::storage::datasets::ItemFilter,
    /// `once`: at most one successful execution per item; `always`: one per event.
    pub once: bool,
    /// `function.export`, taking one `item` argument.
    pub function: String,
    /// Attempts per execution (1: no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each next one.
    pub backoff: Duration,
}

/// One `[[trigger.http]]`: requests to `route` go to a component exporting
/// `wasi:http/incoming-handler`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// `/hello` matches exactly that path; `/hello/...` matches `/hello` and everything under it.
    pub route: String,
    /// The `[function.NAME]` handling the requests.
    pub function: String,
    /// Whether requests need no bearer token when the server has one.
    pub public: bool,
}

impl HttpRoute {
    /// The path prefix of a `/...` route, or `None` for an exact route.
    pub fn prefix(&self) -> Option<&str> {
        self.route.strip_suffix("/...")
    }

    /// Whether `path` is handled by this route.
    pub fn matches(&self, path: &str) -> bool {
        match self.prefix() {
            Some(prefix) => {
                path == prefix
                    || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/') || prefix.is_empty())
            }
            None => path == self.route,
        }
    }
}

/// `[site]`: a folder of static files served under `route` (always public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The folder, resolved against the manifest's folder.
    pub dir: PathBuf,
    /// The path prefix it is served under, e.g. `/` or `/docs-site`.
    pub route: String,
}

/// Path prefixes `host serve` keeps for itself; routes and sites may not use them.
pub const RESERVED_ROUTES: [&str; 5] = ["/v1", "/ui", "/docs", "/metrics", "/healthz"];

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

/// A model's default `concurrency`: one computation per CPU.
fn default_model_concurrency() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// A trigger's wait before its second attempt when it sets none.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// The longest `timeout` a function may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The largest memory limit a function may ask for.
pub const MAX_MEMORY: u64 = 4 << 30;

/// Resources a function may open, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Key-value stores (`wasi:keyvalue/store.open`).
    #[serde(default)]
    pub kv: Vec<ResourceName>,
    /// Buckets (`host:api/buckets.open`).
    #[serde(default)]
    pub buckets: Vec<ResourceName>,
    /// Datasets of items (`host:api/items.open`).
    #[serde(default)]
    pub datasets: Vec<ResourceName>,
    /// `[model.NAME]` models (`wasi:nn/graph.load-by-name`).
    #[serde(default)]
    pub models: Vec<ResourceName>,
    /// Whether the function may hand the host model bytes of its own (`wasi:nn/graph.load`). The
    /// host parses and runs them outside the guest's memory limit, so this is off by default.
    #[serde(default, rename = "models-from-bytes")]
    pub models_from_bytes: bool,
    /// Queues (`host:api/queues`); a queue's grant covers its dead-letter queue `NAME.dead`.
    #[serde(default)]
    pub queues: Vec<ResourceName>,
    /// Topics to publish to (`host:api/topics.publish`).
    #[serde(default)]
    pub topics: Vec<ResourceName>,
}

impl Grants {
    /// Whether the KV store `name` is granted.
    pub fn kv(&self, name: &str) -> bool {
        self.kv.iter().any(|g| g.0 == name)
    }

    /// Whether the dataset `name` is granted.
    pub fn dataset(&self, name: &str) -> bool {
        self.datasets.iter().any(|g| g.0 == name)
    }

    /// Whether the bucket `name` is granted.
    pub fn bucket(&self, name: &str) -> bool {
        self.buckets.iter().any(|g| g.0 == name)
    }

    /// Whether the model `name` is granted.
    pub fn model(&self, name: &str) -> bool {
        self.models.iter().any(|g| g.0 == name)
    }

    /// Whether the queue `name` (or the queue whose dead-letter queue it is) is granted.
    pub fn queue(&self, name: &str) -> bool {
        let name = name.strip_suffix(DEAD_LETTER_SUFFIX).unwrap_or(name);
        self.queues.iter().any(|g| g.0 == name)
    }

    /// Whether the topic `name` is granted.
    pub fn topic(&self, name: &str) -> bool {
        self.topics.iter().any(|g| g.0 == name)
    }
}

/// A name of an app, function, store or bucket: 1-64 of `a-z`, `0-9`, `-`, `_`, starting with a
/// letter or digit. Names become parts of file paths and tree names, so nothing else is allowed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceName(pub String);

impl FromStr for ResourceName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::storage::check_name(s).map(|()| ResourceName(s.to_string()))
    }
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parse a byte size such as `64MiB`, `512KiB`, `1GiB`, `1000000` or `10MB`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => {
            return Err(format!(
                "invalid size `{text}`: expected a number with an optional unit B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    digits.parse::<u64>().ok().and_then(|n| n.checked_mul(factor)).ok_or_else(|| {
        format!("invalid size `{text}`: expected a number with an optional unit B, KiB, MiB, GiB, KB, MB or GB")
    })
}

macro_rules! deserialize_from_str {
    ($ty:ty, $parse:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

deserialize_from_str!(ResourceName, ResourceName::from_str);

struct ByteSize(u64);
deserialize_from_str!(ByteSize, |t: &str| parse_bytes(t).map(ByteSize));

struct Timeout(Duration);
deserialize_from_str!(Timeout, |t: &str| humantime::parse_duration(t)
    .map_err(|e| format!("invalid duration `{t}`: {e} (expected e.g. `500ms`, `10s`, `2m`)"))
    .and_then(|d| match d {
        d if d.is_zero() => Err(format!("invalid duration `{t}`: must be more than zero")),
        d if d > MAX_TIMEOUT => Err(format!("invalid duration `{t}`: at most 24h")),
        d => Ok(Timeout(d)),
    }));

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    app: RawApp,
    #[serde(default)]
    function: BTreeMap<ResourceName, RawFunction>,
    #[serde(default)]
    trigger: RawTriggers,
    site: Option<RawSite>,
    #[serde(default)]
    model: BTreeMap<ResourceName, RawModel>,
    #[serde(default)]
    queue: BTreeMap<ResourceName, RawQueue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawQueue {
    max_attempts: std::num::NonZeroU32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    path: Option<PathBuf>,
    bucket: Option<ResourceName>,
    key: Option<String>,
    #[serde(default)]
    inputs: BTreeMap<String, Vec<std::num::NonZeroUsize>>,
    #[serde(default)]
    warm: bool,
    concurrency: Option<std::num::NonZeroU32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpRoute>,
    #[serde(default)]
    item: Vec<RawItemTrigger>,
    #[serde(default)]
    queue: Vec<RawQueueTrigger>,
    #[serde(default)]
    topic: Vec<RawTopicTrigger>,
    #[serde(default)]
    schedule: Vec<RawScheduleTrigger>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueueTrigger {
    name: ResourceName,
    queue: ResourceName,
    function: String,
    backoff: Option<Timeout>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopicTrigger {
    name: ResourceName,
    topic: ResourceName,
    function: String,
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduleTrigger {
    name: ResourceName,
    function: String,
    every: Option<String>,
    cron: Option<String>,
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItemTrigger {
    name: ResourceName,
    dataset: ResourceName,
    on: Vec<ItemAction>,
    #[serde(default)]
    filter: RawItemFilter,
    #[serde(default)]
    mode: TriggerMode,
    function: String,
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum TriggerMode {
    Once,
    #[default]
    Always,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawItemFilter {
    dir: Option<String>,
    mimetype: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default = "one")]
    attempts: std::num::NonZeroU32,
    backoff: Option<Timeout>,
}

impl Default for RawRetry {
    fn default() -> RawRetry {
        RawRetry { attempts: one(), backoff: None }
    }
}

fn one() -> std::num::NonZeroU32 {
    std::num::NonZeroU32::MIN
}

struct ItemAction(crate::storage::datasets::Action);
deserialize_from_str!(ItemAction, |t: &str| t.parse().map(ItemAction));

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpRoute {
    route: RoutePath,
    function: ResourceName,
    #[serde(default)]
    public: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    dir: PathBuf,
    #[serde(default = "root_route")]
    route: RoutePath,
}

fn root_route() -> RoutePath {
    RoutePath("/".into())
}

/// A route: `/`, `/...`, or `/` and segments of URL-safe characters, optionally ending in `/...`.
struct RoutePath(String);
deserialize_from_str!(RoutePath, |t: &str| {
    let path = t.strip_suffix("/...").unwrap_or(t);
    let valid = t == "/"
        || path.is_empty()
        || path.starts_with('/')
            && path.split('/').skip(1).all(|seg| {
                !seg.chars().all(|c| c == '.') && seg.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
            });
    if !valid {
        return Err(format!(
            "invalid route `{t}`: expected `/` or a path like `/hello` (letters, digits and `-._~` between slashes), optionally ending in `/...`"
        ));
    }
    match RESERVED_ROUTES.iter().find(|r| path == **r || path.starts_with(&format!("{r}/"))) {
        Some(r) => Err(format!("invalid route `{t}`: `{r}` is reserved for the host's own API and pages")),
        None => Ok(RoutePath(t.to_string())),
    }
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: ResourceName,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    source: PathBuf,
    build: Option<String>,
    #[serde(default, rename = "build-inputs")]
    build_inputs: Vec<PathBuf>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    grants: Grants,
    #[serde(default)]
    config: BTreeMap<String, String>,
    #[serde(default)]
    record: RecordMode,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    memory: Option<ByteSize>,
    timeout: Option<Timeout>,
    concurrency: Option<std::num::NonZeroU32>,
    output: Option<ByteSize>,
    table_entries: Option<std::num::NonZeroU32>,
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
        let base = path.parent().unwrap_or(Path::new("."));
        let defaults = Limits::default();
        let mut models = BTreeMap::new();
        for (name, m) in raw.model {
            let source = match (m.path, m.bucket, m.key) {
                (Some(path), None, None) => ModelSource::Path(base.join(path)),
                (None, Some(bucket), Some(key)) => {
                    if let Err(reason) = crate::capabilities::buckets::validate_key(&key) {
                        return Err(invalid(format!("model.{name}.key: {reason}")));
                    }
                    ModelSource::Bucket { bucket: bucket.0, key }
                }
                _ => {
                    return Err(invalid(format!(
                        "model.{name}: expected either `path` (an .onnx file) or both `bucket` and `key`"
                    )));
                }
            };
            let inputs =
                m.inputs.into_iter().map(|(n, dims)| (n, dims.into_iter().map(|d| d.get()).collect())).collect();
            let concurrency = m.concurrency.map_or_else(default_model_concurrency, |n| n.get());
            models.insert(name.0, ModelSpec { source, inputs, warm: m.warm, concurrency });
        }
        let mut functions = BTreeMap::new();
        for (name, f) in raw.function {
            let limits = Limits {
                memory: f.limits.memory.map_or(defaults.memory, |b| b.0),
                timeout: f.limits.timeout.map_or(defaults.timeout, |t| t.0),
                concurrency: f.limits.concurrency.map_or(defaults.concurrency, |n| n.get()),
                output: f.limits.output.map_or(defaults.output, |b| b.0),
                table_entries: f.limits.table_entries.map_or(defaults.table_entries, |n| n.get()),
            };
            if limits.memory > MAX_MEMORY || limits.memory < 64 << 10 {
                return Err(invalid(format!(
                    "function.{name}.limits.memory: {} bytes is out of range (64KiB to 4GiB)",
                    limits.memory
                )));
            }
            if let Some(model) = f.grants.models.iter().find(|m| !models.contains_key(&m.0)) {
                return Err(invalid(format!("function.{name}.grants.models: no `[model.{model}]` in this manifest")));
            }
            if let Some(key) = f.config.keys().find(|k| k.is_empty()) {
                return Err(invalid(format!("function.{name}.config: empty key `{key}`")));
            }
            if f.build.is_none() && !f.build_inputs.is_empty() {
                return Err(invalid(format!("function.{name}.build-inputs: there is no `build` command to run")));
            }
            let spec = FunctionSpec {
                source: base.join(&f.source),
                build: f.build,
                build_inputs: f.build_inputs.iter().map(|input| base.join(input)).collect(),
                limits,
                grants: f.grants,
                config: f.config,
                record: f.record,
            };
            functions.insert(name.0, spec);
        }
        if functions.is_empty() {
            return Err(invalid("no functions: add a `[function.NAME]` table with a `source`".into()));
        }
        let mut http_routes: Vec<HttpRoute> = Vec::new();
        for (i, r) in raw.trigger.http.into_iter().enumerate() {
            if !functions.contains_key(&r.function.0) {
                return Err(invalid(format!(
                    "trigger.http[{i}].function: no `[function.{}]` in this manifest",
                    r.function
                )));
            }
            if http_routes.iter().any(|other| other.route == r.route.0) {
                return Err(invalid(format!("trigger.http[{i}].route: `{}` is used twice", r.route.0)));
            }
            http_routes.push(HttpRoute { route: r.route.0, function: r.function.0, public: r.public });
        }
        let site = raw.site.map(|s| Site {
            dir: base.join(s.dir),
            route: match s.route.0.strip_suffix("/...") {
                Some("") => "/".into(),
                Some(prefix) => prefix.into(),
                None => s.route.0,
            },
        });
        // Every trigger's name is unique in the app (it names executions) and its function exists.
        let mut trigger_names = std::collections::BTreeSet::new();
        let mut check_trigger = |at: &str, name: &ResourceName, function: &str| {
            if !trigger_names.insert(name.0.clone()) {
                return Err(invalid(format!("{at}.name: `{name}` names another trigger too")));
            }
            let component = function.split_once('.').map_or(function, |(c, _)| c);
            match functions.contains_key(component) {
                true => Ok(()),
                false => Err(invalid(format!("{at}.function: no `[function.{component}]` in this manifest"))),
            }
        };
        let mut item_triggers: Vec<ItemTrigger> = Vec::new();
        for (i, t) in raw.trigger.item.into_iter().enumerate() {
            let at = format!("trigger.item[{i}] (`{}`)", t.name);
            check_trigger(&at, &t.name, &t.function)?;
            if t.on.is_empty() {
                return Err(invalid(format!("{at}.on: expected at least one of `created`, `updated`, `deleted`")));
            }
            let mut metadata = Vec::new();
            for (path, value) in t.filter.metadata {
                let value =
                    serde_json::to_value(value).map_err(|e| invalid(format!("{at}.filter.metadata.{path}: {e}")))?;
                metadata.push((path, value));
            }
            item_triggers.push(ItemTrigger {
                name: t.name.0,
                dataset: t.dataset.0,
                on: t.on.into_iter().map(|a| a.0).collect(),
                filter: crate::storage::datasets::ItemFilter {
                    dir: t.filter.dir,
                    mimetype: t.filter.mimetype,
                    metadata,
                },
                once: matches!(t.mode, TriggerMode::Once),
                function: t.function,
                attempts: t.retry.attempts.get(),
                backoff: t.retry.backoff.map_or(DEFAULT_BACKOFF, |b| b.0),
            });
        }
        let mut queue_triggers = Vec::new();
        for (i, t) in raw.trigger.queue.into_iter().enumerate() {
            check_trigger(&format!("trigger.queue[{i}] (`{}`)", t.name), &t.name, &t.function)?;
            let backoff = t.backoff.map_or(DEFAULT_BACKOFF, |b| b.0);
            queue_triggers.push(QueueTrigger { name: t.name.0, queue: t.queue.0, function: t.function, backoff });
        }
        let mut topic_triggers = Vec::new();
        for (i, t) in raw.trigger.topic.into_iter().enumerate() {
            check_trigger(&format!("trigger.topic[{i}] (`{}`)", t.name), &t.name, &t.function)?;
            topic_triggers.push(TopicTrigger {
                name: t.name.0,
                topic: t.topic.0,
                function: t.function,
                attempts: t.retry.attempts.get(),
                backoff: t.retry.backoff.map_or(DEFAULT_BACKOFF, |b| b.0),
            });
        }
        let mut schedule_triggers = Vec::new();
        for (i, t) in raw.trigger.schedule.into_iter().enumerate() {
            let at = format!("trigger.schedule[{i}] (`{}`)", t.name);
            check_trigger(&at, &t.name, &t.function)?;
            let schedule = match (t.every, t.cron) {
                (Some(every), None) => crate::schedule::Schedule::every(&every),
                (None, Some(cron)) => crate::schedule::Schedule::cron(&cron),
                _ => Err("expected either `every` (e.g. \"10s\") or `cron` (e.g. \"0 */5 * * * *\")".into()),
            }
            .map_err(|e| invalid(format!("{at}: {e}")))?;
            schedule_triggers.push(ScheduleTrigger {
                name: t.name.0,
                schedule,
                function: t.function,
                attempts: t.retry.attempts.get(),
                backoff: t.retry.backoff.map_or(DEFAULT_BACKOFF, |b| b.0),
            });
        }
        let queues =
            raw.queue.into_iter().map(|(n, q)| (n.0, QueueSpec { max_attempts: q.max_attempts.get() })).collect();
        Ok(Manifest {
            path: path.to_path_buf(),
            app: raw.app.name.0,
            functions,
            http_routes,
            site,
            item_triggers,
            models,
            queues,
            queue_triggers,
            topic_triggers,
            schedule_triggers,
        })
    }

    /// Names of one kind of resource (`|g| &g.kv`, `&g.buckets`, `&g.datasets`) granted to any
    /// function of the app, sorted and without repeats.
    pub fn granted(&self, kind: impl Fn(&Grants) -> &Vec<ResourceName>) -> Vec<String> {
        let mut names: Vec<String> =
            self.functions.values().flat_map(|f| kind(&f.grants)).map(|n| n.0.clone()).collect();
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

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("10 KB"), Ok(10_000));
        assert_eq!(parse_bytes("123"), Ok(123));
        assert!(
            parse_bytes("MiB").is_err() && parse_bytes("1 parsec").is_err() && parse_bytes("99999999999GiB").is_err()
        );
    }
}
