//! `[queue.NAME]`: settings of an app's queues (queues not listed use the defaults).

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use serde::Deserialize;

use crate::names::dead_letters_of;

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
        match dead_letters_of(name) {
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

/// A `[queue.NAME]` table as written; serde's checks (a positive `max-attempts`) are all it needs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawQueue {
    max_attempts: NonZeroU32,
}

impl From<RawQueue> for QueueSpec {
    fn from(raw: RawQueue) -> QueueSpec {
        QueueSpec { max_attempts: raw.max_attempts.get() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_queues_take_the_defaults_and_dead_letter_queues_never_dead_letter() {
        let raw: RawQueue = toml::from_str("max-attempts = 2\n").unwrap();
        let specs = BTreeMap::from([("jobs".to_string(), QueueSpec::from(raw))]);
        assert_eq!(QueueSpec::of(&specs, "jobs").max_attempts, 2);
        assert_eq!(QueueSpec::of(&specs, "other"), QueueSpec::default());
        assert_eq!(QueueSpec::of(&specs, "jobs.dead").max_attempts, u32::MAX);
        assert!(toml::from_str::<RawQueue>("max-attempts = 0\n").is_err());
    }
}
