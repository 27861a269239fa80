//! `[[trigger.item]]`, `[[trigger.queue]]`, `[[trigger.topic]]` and `[[trigger.schedule]]`: what
//! starts executions of a function besides direct calls; `[[trigger.http]]` routes are checked
//! here too, by the rules in `http.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use super::function::FunctionSpec;
use super::http::{HttpRoute, RawHttpRoute, check_routes};
use super::units::Timeout;
use crate::names::ResourceName;
use crate::schedules::Schedule;
use crate::storage::datasets::{Action, ItemFilter};

/// A trigger's wait before its second attempt when it sets none.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// One `[[trigger.item]]`: changes of items in a dataset start executions of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemTrigger {
    /// Unique in the app; names its executions' `trigger`.
    pub name: String,
    /// The dataset watched.
    pub dataset: String,
    /// Which changes fire it.
    pub on: Vec<Action>,
    /// Which items fire it.
    pub filter: ItemFilter,
    /// `once`: at most one successful execution per item; `always`: one per event.
    pub once: bool,
    /// `function.export`, taking one `item` argument.
    pub function: String,
    /// Attempts per execution (1: no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each next one.
    pub backoff: Duration,
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
    pub schedule: Schedule,
    /// `function.export`, taking `scheduled-ms: u64` and `missed: u64`.
    pub function: String,
    /// Attempts per fire (1: no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each next one.
    pub backoff: Duration,
}

/// Every trigger of an app, checked.
pub(super) struct Triggers {
    pub(super) http: Vec<HttpRoute>,
    pub(super) item: Vec<ItemTrigger>,
    pub(super) queue: Vec<QueueTrigger>,
    pub(super) topic: Vec<TopicTrigger>,
    pub(super) schedule: Vec<ScheduleTrigger>,
}

/// The `[[trigger.*]]` arrays as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTriggers {
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

/// A `[[trigger.queue]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueueTrigger {
    name: ResourceName,
    queue: ResourceName,
    function: String,
    backoff: Option<Timeout>,
}

/// A `[[trigger.topic]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopicTrigger {
    name: ResourceName,
    topic: ResourceName,
    function: String,
    #[serde(default)]
    retry: RawRetry,
}

/// A `[[trigger.schedule]]` entry as written.
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

/// A `[[trigger.item]]` entry as written.
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

/// `mode` of an item trigger.
#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
enum TriggerMode {
    Once,
    #[default]
    Always,
}

/// `filter = { ... }` of an item trigger as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawItemFilter {
    dir: Option<String>,
    mimetype: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, toml::Value>,
}

/// `retry = { attempts, backoff }` of a trigger.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default = "one")]
    attempts: NonZeroU32,
    backoff: Option<Timeout>,
}

impl Default for RawRetry {
    fn default() -> RawRetry {
        RawRetry { attempts: one(), backoff: None }
    }
}

impl RawRetry {
    /// Attempts and the first backoff.
    fn resolve(self) -> (u32, Duration) {
        (self.attempts.get(), backoff(self.backoff))
    }
}

/// Serde's default `attempts`: no retry.
fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

/// A backoff as written, or the default.
fn backoff(written: Option<Timeout>) -> Duration {
    written.map_or(DEFAULT_BACKOFF, |b| b.0)
}

/// One of `on = [...]`, parsed by [`Action`]'s own rules.
struct ItemAction(Action);
deserialize_from_str!(ItemAction, |t: &str| t.parse().map(ItemAction));

/// The rules every trigger follows: its name is unique in the app (it names executions) and its
/// function exists.
struct TriggerNames<'a> {
    seen: BTreeSet<String>,
    functions: &'a BTreeMap<String, FunctionSpec>,
}

impl TriggerNames<'_> {
    /// Check the trigger at key path `at` (e.g. ``trigger.queue[0] (`jobs`)``).
    fn check(&mut self, at: &str, name: &ResourceName, function: &str) -> Result<(), String> {
        if !self.seen.insert(name.0.clone()) {
            return Err(format!("{at}.name: `{name}` names another trigger too"));
        }
        let component = function.split_once('.').map_or(function, |(c, _)| c);
        match self.functions.contains_key(component) {
            true => Ok(()),
            false => Err(format!("{at}.function: no `[function.{component}]` in this manifest")),
        }
    }
}

impl RawTriggers {
    /// Every trigger, checked against the app's `functions`.
    pub(super) fn check(self, functions: &BTreeMap<String, FunctionSpec>) -> Result<Triggers, String> {
        let http = check_routes(self.http, functions)?;
        let mut names = TriggerNames { seen: BTreeSet::new(), functions };
        let mut item = Vec::new();
        for (i, t) in self.item.into_iter().enumerate() {
            let at = format!("trigger.item[{i}] (`{}`)", t.name);
            item.push(t.check(&at, &mut names)?);
        }
        let mut queue = Vec::new();
        for (i, t) in self.queue.into_iter().enumerate() {
            names.check(&format!("trigger.queue[{i}] (`{}`)", t.name), &t.name, &t.function)?;
            queue.push(QueueTrigger {
                name: t.name.0,
                queue: t.queue.0,
                function: t.function,
                backoff: backoff(t.backoff),
            });
        }
        let mut topic = Vec::new();
        for (i, t) in self.topic.into_iter().enumerate() {
            names.check(&format!("trigger.topic[{i}] (`{}`)", t.name), &t.name, &t.function)?;
            let (attempts, backoff) = t.retry.resolve();
            topic.push(TopicTrigger { name: t.name.0, topic: t.topic.0, function: t.function, attempts, backoff });
        }
        let mut schedule = Vec::new();
        for (i, t) in self.schedule.into_iter().enumerate() {
            let at = format!("trigger.schedule[{i}] (`{}`)", t.name);
            schedule.push(t.check(&at, &mut names)?);
        }
        Ok(Triggers { http, item, queue, topic, schedule })
    }
}

impl RawItemTrigger {
    /// The trigger at key path `at`, checked: a known function, a unique name, at least one action.
    fn check(self, at: &str, names: &mut TriggerNames) -> Result<ItemTrigger, String> {
        names.check(at, &self.name, &self.function)?;
        if self.on.is_empty() {
            return Err(format!("{at}.on: expected at least one of `created`, `updated`, `deleted`"));
        }
        let mut metadata = Vec::new();
        for (path, value) in self.filter.metadata {
            let value = serde_json::to_value(value).map_err(|e| format!("{at}.filter.metadata.{path}: {e}"))?;
            metadata.push((path, value));
        }
        let (attempts, backoff) = self.retry.resolve();
        Ok(ItemTrigger {
            name: self.name.0,
            dataset: self.dataset.0,
            on: self.on.into_iter().map(|a| a.0).collect(),
            filter: ItemFilter { dir: self.filter.dir, mimetype: self.filter.mimetype, metadata },
            once: matches!(self.mode, TriggerMode::Once),
            function: self.function,
            attempts,
            backoff,
        })
    }
}

impl RawScheduleTrigger {
    /// The trigger at key path `at`, checked: a known function, a unique name, one valid schedule.
    fn check(self, at: &str, names: &mut TriggerNames) -> Result<ScheduleTrigger, String> {
        names.check(at, &self.name, &self.function)?;
        let schedule = match (self.every, self.cron) {
            (Some(every), None) => Schedule::every(&every),
            (None, Some(cron)) => Schedule::cron(&cron),
            _ => Err("expected either `every` (e.g. \"10s\") or `cron` (e.g. \"0 */5 * * * *\")".into()),
        }
        .map_err(|e| format!("{at}: {e}"))?;
        let (attempts, backoff) = self.retry.resolve();
        Ok(ScheduleTrigger { name: self.name.0, schedule, function: self.function, attempts, backoff })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The triggers of `toml` (the `[[trigger.*]]` arrays without their `trigger.` prefix) for an
    /// app with the one function `f`.
    fn triggers(toml: &str) -> Result<Triggers, String> {
        let raw: RawTriggers = toml::from_str(toml).map_err(|e| e.to_string())?;
        let spec = FunctionSpec {
            source: "f.wasm".into(),
            build: None,
            build_inputs: Vec::new(),
            limits: Default::default(),
            grants: Default::default(),
            config: BTreeMap::new(),
            record: Default::default(),
            public: Default::default(),
        };
        raw.check(&BTreeMap::from([("f".to_string(), spec)]))
    }

    #[test]
    fn retries_default_to_one_attempt_and_a_one_second_backoff() {
        let t = triggers(
            "[[topic]]\nname = \"a\"\ntopic = \"news\"\nfunction = \"f.read\"\n\
             [[topic]]\nname = \"b\"\ntopic = \"news\"\nfunction = \"f.read\"\nretry = { attempts = 3, backoff = \"2s\" }\n\
             [[queue]]\nname = \"c\"\nqueue = \"jobs\"\nfunction = \"f.run\"\n",
        )
        .unwrap();
        assert_eq!((t.topic[0].attempts, t.topic[0].backoff), (1, DEFAULT_BACKOFF));
        assert_eq!((t.topic[1].attempts, t.topic[1].backoff), (3, Duration::from_secs(2)));
        assert_eq!(
            t.queue[0],
            QueueTrigger { name: "c".into(), queue: "jobs".into(), function: "f.run".into(), backoff: DEFAULT_BACKOFF }
        );
    }

    #[test]
    fn item_triggers_carry_their_actions_filter_and_mode() {
        let t = triggers(
            "[[item]]\nname = \"i\"\ndataset = \"photos\"\non = [\"created\", \"deleted\"]\nmode = \"once\"\n\
             function = \"f.process\"\nfilter = { mimetype = \"image/*\", metadata = { \"exif.camera\" = \"x\" } }\n",
        )
        .unwrap();
        let item = &t.item[0];
        assert_eq!(item.on, [Action::Created, Action::Deleted]);
        assert!(item.once && item.filter.mimetype.as_deref() == Some("image/*"));
        assert_eq!(item.filter.metadata, [("exif.camera".to_string(), serde_json::json!("x"))]);
    }

    #[test]
    fn names_are_unique_across_kinds_and_functions_must_exist() {
        let err = triggers(
            "[[queue]]\nname = \"t\"\nqueue = \"q\"\nfunction = \"f.run\"\n\
             [[schedule]]\nname = \"t\"\nfunction = \"f.tick\"\nevery = \"1m\"\n",
        )
        .err();
        assert_eq!(err.as_deref(), Some("trigger.schedule[0] (`t`).name: `t` names another trigger too"));
        let err = triggers("[[schedule]]\nname = \"s\"\nfunction = \"g.tick\"\nevery = \"1m\"\n").err();
        assert_eq!(err.as_deref(), Some("trigger.schedule[0] (`s`).function: no `[function.g]` in this manifest"));
        let err = triggers("[[http]]\nroute = \"/a\"\nfunction = \"g\"\n").err();
        assert_eq!(err.as_deref(), Some("trigger.http[0].function: no `[function.g]` in this manifest"));
    }

    #[test]
    fn a_schedule_has_every_or_cron() {
        let t = triggers("[[schedule]]\nname = \"s\"\nfunction = \"f.tick\"\ncron = \"0 */5 * * * *\"\n").unwrap();
        assert!(matches!(t.schedule[0].schedule, Schedule::Cron(_)));
        let err = triggers("[[schedule]]\nname = \"s\"\nfunction = \"f.tick\"\n").err().unwrap();
        assert!(err.starts_with("trigger.schedule[0] (`s`): expected either `every`"), "{err}");
    }
}
