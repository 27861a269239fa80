//! Retention: final execution records older than an age, and beyond a count per app, are
//! deleted with their logs by a background thread. Queued and running ones are never deleted.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::SledExecutions;
use super::log::newest_first;
use crate::storage::executions::{ExecutionsError, now_ms};

/// How long and how many final execution records a host keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Records that finished longer ago than this are deleted.
    pub max_age: Duration,
    /// Records of one app beyond this many, newest first, are deleted.
    pub max_count: u64,
}

impl Default for Retention {
    /// A week, and 100,000 records per app: about a week of the history people look back on when
    /// something went wrong, and (at about 1 KB a record with its logs) about 100 MB per app.
    fn default() -> Retention {
        Retention { max_age: Duration::from_secs(7 * 24 * 3600), max_count: 100_000 }
    }
}

/// How often the background thread prunes (its first run is [`PRUNE_FIRST`] after the start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// When the background thread first prunes after the host starts.
pub const PRUNE_FIRST: Duration = Duration::from_secs(5);

impl SledExecutions {
    /// Delete the final records the retention does not keep, with their logs; how many went.
    /// The host does this in the background every [`PRUNE_EVERY`]; records of direct calls still
    /// waiting in memory are written first.
    pub(super) fn prune_now(&self) -> Result<usize, ExecutionsError> {
        self.write_pending();
        Ok(self.prune_old()? + self.prune_many()?)
    }

    /// Final records that finished before the age limit. Records are created in id order, so
    /// each walk ends at the first one queued after the limit.
    fn prune_old(&self) -> Result<usize, ExecutionsError> {
        let cutoff = now_ms().saturating_sub(u64::try_from(self.retention.max_age.as_millis()).unwrap_or(u64::MAX));
        let mut deleted = 0;
        for entry in self.records.iter().values() {
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            let Some(record) = entry.ok().and_then(|bytes| self.decode(&bytes)) else { continue };
            if record.queued_ms >= cutoff {
                break;
            }
            if record.status.is_final() && record.finished_ms.unwrap_or(record.queued_ms) < cutoff {
                self.delete(&record)?;
                deleted += 1;
            }
        }
        let old: Vec<String> = {
            let log = self.log.read().unwrap();
            let entries = log.entries.iter().take_while(|(_, e)| e.queued_ms < cutoff);
            entries.filter(|(_, e)| e.finished_ms < cutoff).map(|(id, _)| id.clone()).collect()
        };
        self.forget(&old)?;
        Ok(deleted + old.len())
    }

    /// The oldest final records of each app beyond the count limit, from the `executions` tree
    /// and the record log together.
    fn prune_many(&self) -> Result<usize, ExecutionsError> {
        let keep = usize::try_from(self.retention.max_count).unwrap_or(usize::MAX);
        let mut apps = self.indexed_apps();
        apps.extend(self.log.read().unwrap().app_sizes.keys().map(|app| app.to_string()));
        apps.sort();
        apps.dedup();
        let mut deleted = 0;
        for app in apps {
            let (mut stored, mut logged) = (Vec::new(), Vec::new());
            {
                let log = self.log.read().unwrap();
                let in_tree: Vec<String> = self.final_ids(&app).collect();
                if log.app_sizes.get(app.as_str()).copied().unwrap_or(0) + in_tree.len() <= keep {
                    continue;
                }
                let in_log = log.entries.iter().rev().filter(|(_, e)| *e.app == *app).map(|(id, _)| (id.clone(), true));
                let in_tree = in_tree.into_iter().map(|id| (id, false));
                for (id, is_logged) in newest_first(in_tree, in_log).skip(keep) {
                    if is_logged { logged.push(id) } else { stored.push(id) }
                }
            }
            if self.stopping.load(Ordering::Acquire) {
                return Ok(deleted);
            }
            self.forget(&logged)?;
            deleted += logged.len();
            for id in stored {
                if self.stopping.load(Ordering::Acquire) {
                    return Ok(deleted);
                }
                let Some(record) = self.records.get(id.as_bytes()).ok().flatten().and_then(|b| self.decode(&b)) else {
                    continue;
                };
                if record.status.is_final() {
                    self.delete(&record)?;
                    deleted += 1;
                }
            }
        }
        if deleted > 0 {
            tracing::debug!(deleted, "pruned execution records over the count limit");
        }
        Ok(deleted)
    }
}
