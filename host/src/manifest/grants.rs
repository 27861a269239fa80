//! `grants = { ... }` of a `[function.NAME]`: one type per capability, each checked on its own,
//! so each can later move next to the capability that enforces it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::models::ModelSpec;
use super::outbound::HttpGrant;
use crate::names::{ResourceName, dead_letters_of};

/// Resources a function may open, by capability.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Key-value stores (`wasi:keyvalue/store.open`).
    pub kv: KvGrant,
    /// Buckets (`host:api/buckets.open`).
    pub buckets: BucketsGrant,
    /// Datasets of items (`host:api/items.open`).
    pub datasets: DatasetsGrant,
    /// `[model.NAME]` models and models from bytes (`wasi:nn`).
    pub models: ModelsGrant,
    /// Queues (`host:api/queues`).
    pub queues: QueuesGrant,
    /// Topics to publish to (`host:api/topics.publish`).
    pub topics: TopicsGrant,
    /// Hosts to send HTTP requests to (`wasi:http/outgoing-handler`).
    pub http: HttpGrant,
}

impl Grants {
    /// Whether the KV store `name` is granted.
    pub fn kv(&self, name: &str) -> bool {
        self.kv.allows(name)
    }

    /// Whether the dataset `name` is granted.
    pub fn dataset(&self, name: &str) -> bool {
        self.datasets.allows(name)
    }

    /// Whether the bucket `name` is granted.
    pub fn bucket(&self, name: &str) -> bool {
        self.buckets.allows(name)
    }

    /// Whether the model `name` is granted.
    pub fn model(&self, name: &str) -> bool {
        self.models.allows(name)
    }

    /// Whether the queue `name` (or the queue whose dead-letter queue it is) is granted.
    pub fn queue(&self, name: &str) -> bool {
        self.queues.covers(name)
    }

    /// Whether the topic `name` is granted.
    pub fn topic(&self, name: &str) -> bool {
        self.topics.allows(name)
    }
}

/// A grant that is a plain list of names: the capability opens exactly the names listed.
macro_rules! names_grant {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Vec<ResourceName>);

        impl $name {
            /// Whether `name` is granted.
            pub fn allows(&self, name: &str) -> bool {
                self.0.iter().any(|g| g.0 == name)
            }

            /// Whether nothing is granted.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl AsRef<[ResourceName]> for $name {
            fn as_ref(&self) -> &[ResourceName] {
                &self.0
            }
        }
    };
}

names_grant!(
    /// `kv = [...]`: the key-value stores a function may open.
    KvGrant
);
names_grant!(
    /// `buckets = [...]`: the buckets a function may open.
    BucketsGrant
);
names_grant!(
    /// `datasets = [...]`: the datasets of items a function may open.
    DatasetsGrant
);
names_grant!(
    /// `topics = [...]`: the topics a function may publish to.
    TopicsGrant
);
names_grant!(
    /// `queues = [...]`: the queues a function may use; a queue's grant covers its dead-letter
    /// queue `NAME.dead` (see [`QueuesGrant::covers`]).
    QueuesGrant
);

impl QueuesGrant {
    /// Whether the queue `name`, or the queue whose dead-letter queue `name` is, is granted.
    pub fn covers(&self, name: &str) -> bool {
        self.allows(dead_letters_of(name).unwrap_or(name))
    }
}

/// `models = [...]` and `models-from-bytes`: the models a function may load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelsGrant {
    /// `[model.NAME]` models it may load by name (`wasi:nn/graph.load-by-name`).
    pub names: Vec<ResourceName>,
    /// Whether the function may hand the host model bytes of its own (`wasi:nn/graph.load`). The
    /// host parses and runs them outside the guest's memory limit, so this is off by default.
    pub from_bytes: bool,
}

impl ModelsGrant {
    /// Whether the model `name` may be loaded by name.
    pub fn allows(&self, name: &str) -> bool {
        self.names.iter().any(|g| g.0 == name)
    }

    /// The grant, checked: every model named is declared in `models`; `at` is the key path of
    /// `models` (`function.NAME.grants.models`).
    fn check(
        names: Vec<ResourceName>,
        from_bytes: bool,
        at: &str,
        models: &BTreeMap<String, ModelSpec>,
    ) -> Result<ModelsGrant, String> {
        match names.iter().find(|m| !models.contains_key(&m.0)) {
            Some(model) => Err(format!("{at}: no `[model.{model}]` in this manifest")),
            None => Ok(ModelsGrant { names, from_bytes }),
        }
    }
}

impl AsRef<[ResourceName]> for ModelsGrant {
    fn as_ref(&self) -> &[ResourceName] {
        &self.names
    }
}

/// `grants = { ... }` as written. The keys keep their order: serde lists them in this order in
/// its "expected one of" errors.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrants {
    #[serde(default)]
    kv: KvGrant,
    #[serde(default)]
    buckets: BucketsGrant,
    #[serde(default)]
    datasets: DatasetsGrant,
    #[serde(default)]
    models: Vec<ResourceName>,
    #[serde(default, rename = "models-from-bytes")]
    models_from_bytes: bool,
    #[serde(default)]
    queues: QueuesGrant,
    #[serde(default)]
    topics: TopicsGrant,
    #[serde(default)]
    http: HttpGrant,
}

impl RawGrants {
    /// The grants, each checked by its capability's rules; `at` is the key path of the table
    /// (`function.NAME.grants`) and `models` the app's `[model.NAME]` entries.
    pub(super) fn check(self, at: &str, models: &BTreeMap<String, ModelSpec>) -> Result<Grants, String> {
        Ok(Grants {
            kv: self.kv,
            buckets: self.buckets,
            datasets: self.datasets,
            models: ModelsGrant::check(self.models, self.models_from_bytes, &format!("{at}.models"), models)?,
            queues: self.queues,
            topics: self.topics,
            http: self.http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ModelSource;

    fn grants(toml: &str, declared: &[&str]) -> Result<Grants, String> {
        let raw: RawGrants = toml::from_str(toml).map_err(|e| e.to_string())?;
        let spec = ModelSpec {
            source: ModelSource::Path("m.onnx".into()),
            inputs: BTreeMap::new(),
            warm: false,
            concurrency: 1,
            engine: Default::default(),
        };
        let models = declared.iter().map(|m| (m.to_string(), spec.clone())).collect();
        raw.check("function.f.grants", &models)
    }

    #[test]
    fn each_capability_allows_only_its_own_names() {
        let g = grants("kv = [\"a\"]\nbuckets = [\"b\"]\ndatasets = [\"c\"]\ntopics = [\"d\"]\n", &[]).unwrap();
        assert!(g.kv("a") && !g.kv("b") && g.bucket("b") && !g.bucket("a"));
        assert!(g.dataset("c") && g.topic("d") && !g.topic("c") && !g.queue("a"));
        assert_eq!(g.kv.as_ref(), ["a".parse::<ResourceName>().unwrap()]);
    }

    #[test]
    fn a_queue_grant_covers_its_dead_letter_queue() {
        let g = grants("queues = [\"jobs\"]\n", &[]).unwrap();
        assert!(g.queue("jobs") && g.queue("jobs.dead") && !g.queue("other.dead") && !g.queue("jobs.x"));
    }

    #[test]
    fn models_must_be_declared_and_bytes_are_off_by_default() {
        let g = grants("models = [\"face\"]\n", &["face"]).unwrap();
        assert!(g.model("face") && !g.models.from_bytes);
        assert!(grants("models-from-bytes = true\n", &[]).unwrap().models.from_bytes);
        let err = grants("models = [\"face\"]\n", &["other"]).unwrap_err();
        assert_eq!(err, "function.f.grants.models: no `[model.face]` in this manifest");
    }

    #[test]
    fn unknown_capabilities_and_bad_names_are_refused() {
        let err = grants("files = [\"x\"]\n", &[]).unwrap_err();
        assert!(err.contains("unknown field `files`") && err.contains("`models-from-bytes`"), "{err}");
        let err = grants("buckets = [\"../etc\"]\n", &[]).unwrap_err();
        assert!(err.contains("invalid name `../etc`"), "{err}");
    }
}
