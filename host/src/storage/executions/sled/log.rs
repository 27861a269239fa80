//! The record log: final records of direct calls, appended in batches.
//!
//! A sled insert costs several microseconds here whatever its size, so one insert per record
//! (plus one per index entry) cost a direct call more than the call itself. The writer thread
//! instead appends each batch as two values: tree `execution-log` holds the batch's bytes (every
//! record's JSON and its logs, back to back), tree `execution-log-index` its summary (per
//! record: id, app, function, trigger, status, times, and where its bytes are). Summaries are
//! kept in memory, so gets find a record's batch, and lists filter, without reading any record;
//! a record is decoded on its own, only when it is returned.
//!
//! Records leave the log when retention prunes them, or when a record with the same id is
//! written to the `executions` tree: the batch's summary is rewritten without them, and a batch
//! with no record left is deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::SledExecutions;
use crate::outcome::Logs;
use crate::storage::executions::{Execution, ExecutionFilter, ExecutionsError, Status, format_attempt, storage};

/// Records per batch at most, and bytes per batch (a batch holding more is closed early).
const BATCH_RECORDS: usize = 1024;
const BATCH_BYTES: usize = 1 << 20;

/// Where a logged record is, and what lists filter on.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The batch (its key in both trees).
    batch: u64,
    pub(super) app: Arc<str>,
    function: Arc<str>,
    trigger: Arc<str>,
    status: Status,
    pub(super) queued_ms: u64,
    pub(super) finished_ms: u64,
    /// The record's JSON and its logs' text in the batch's bytes.
    record: Range<u32>,
    logs: Range<u32>,
}

impl Entry {
    /// Whether the record passes `filter` (every record in the log is final, and none is an item
    /// trigger's: those are queued executions, kept in the `executions` tree).
    fn passes(&self, filter: &ExecutionFilter) -> bool {
        filter.app.as_deref().is_none_or(|a| a == &*self.app)
            && filter.function.as_deref().is_none_or(|f| f == &*self.function)
            && filter.trigger.as_deref().is_none_or(|t| t == &*self.trigger)
            && filter.status.is_none_or(|s| s == self.status)
            && filter.queued_in_range(self.queued_ms)
            && filter.item.is_none()
    }
}

/// One record in a stored summary: id, [app, function, trigger] as indexes into the names,
/// status, queued ms, finished ms, record bytes [start, end], log bytes [start, end].
type SummaryEntry = (String, [u32; 3], Status, u64, u64, [u32; 2], [u32; 2]);

/// A batch's summary as stored: names once in a table, entries pointing into it.
#[derive(Default, Serialize, Deserialize)]
struct Summary {
    names: Vec<String>,
    entries: Vec<SummaryEntry>,
    /// Where each name is in `names`, while the summary is built.
    #[serde(skip)]
    index: HashMap<String, u32>,
}

impl Summary {
    /// Add the entry of record `id`: its app, function and trigger go to the name table once.
    fn push(&mut self, id: &str, [app, function, trigger]: [&str; 3], e: (Status, u64, u64, [u32; 2], [u32; 2])) {
        let names = [app, function, trigger].map(|name| match self.index.get(name) {
            Some(at) => *at,
            None => {
                self.names.push(name.to_string());
                self.index.insert(name.to_string(), self.names.len() as u32 - 1);
                self.names.len() as u32 - 1
            }
        });
        let (status, queued_ms, finished_ms, record, logs) = e;
        self.entries.push((id.to_string(), names, status, queued_ms, finished_ms, record, logs));
    }
}

/// The summaries of every batch, in memory.
#[derive(Default)]
pub(super) struct RecordLog {
    /// Every logged record by id (ids sort in creation order).
    pub(super) entries: BTreeMap<String, Entry>,
    /// One copy of each app, function and trigger name.
    names: HashSet<Arc<str>>,
    /// Records per batch, and per app.
    batch_sizes: HashMap<u64, usize>,
    pub(super) app_sizes: HashMap<Arc<str>, usize>,
}

impl RecordLog {
    fn name(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.names.get(name) {
            return known.clone();
        }
        let name: Arc<str> = name.into();
        self.names.insert(name.clone());
        name
    }

    /// Take in the summary of `batch`.
    fn add(&mut self, batch: u64, summary: Summary) {
        let names: Vec<Arc<str>> = summary.names.iter().map(|n| self.name(n)).collect();
        let name = |i: u32| names.get(i as usize).cloned().unwrap_or_else(|| "".into());
        for (id, [app, function, trigger], status, queued_ms, finished_ms, record, logs) in summary.entries {
            let entry = Entry {
                batch,
                app: name(app),
                function: name(function),
                trigger: name(trigger),
                status,
                queued_ms,
                finished_ms,
                record: record[0]..record[1],
                logs: logs[0]..logs[1],
            };
            *self.batch_sizes.entry(batch).or_default() += 1;
            *self.app_sizes.entry(entry.app.clone()).or_default() += 1;
            if let Some(replaced) = self.entries.insert(id, entry) {
                self.removed(&replaced);
            }
        }
    }

    /// Take out `id`: its entry, and whether its batch has no record left.
    fn remove(&mut self, id: &str) -> Option<(Entry, bool)> {
        let entry = self.entries.remove(id)?;
        let emptied = self.removed(&entry);
        Some((entry, emptied))
    }

    /// Count an entry out: whether its batch has no record left.
    fn removed(&mut self, entry: &Entry) -> bool {
        if let Some(size) = self.app_sizes.get_mut(&entry.app) {
            *size -= 1;
            if *size == 0 {
                self.app_sizes.remove(&entry.app);
            }
        }
        let size = self.batch_sizes.entry(entry.batch).or_default();
        *size = size.saturating_sub(1);
        let emptied = *size == 0;
        if emptied {
            self.batch_sizes.remove(&entry.batch);
        }
        emptied
    }

    /// The summary of `batch` as it is now (for rewriting it after records left).
    fn summary(&self, batch: u64) -> Summary {
        let mut summary = Summary::default();
        for (id, e) in self.entries.iter().filter(|(_, e)| e.batch == batch) {
            let (record, logs) = ([e.record.start, e.record.end], [e.logs.start, e.logs.end]);
            summary.push(id, [&e.app, &e.function, &e.trigger], (e.status, e.queued_ms, e.finished_ms, record, logs));
        }
        summary
    }

    /// Ids of logged records passing `filter`, newest first, older than `before`.
    pub(super) fn ids<'a>(
        &'a self,
        filter: &'a ExecutionFilter,
        before: Option<&str>,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        let end = before.map_or(std::ops::Bound::Unbounded, |b| std::ops::Bound::Excluded(b.to_string()));
        self.entries.range((std::ops::Bound::Unbounded, end)).rev().filter(move |(_, e)| e.passes(filter))
    }
}

/// Two sequences of (id, _), each newest first, merged newest first.
pub(super) fn newest_first<T>(
    a: impl Iterator<Item = (String, T)>,
    b: impl Iterator<Item = (String, T)>,
) -> impl Iterator<Item = (String, T)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((x, _)), Some((y, _))) if x < y => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// A batch's key in both trees.
fn key(batch: u64) -> [u8; 8] {
    batch.to_be_bytes()
}

impl SledExecutions {
    /// Read every batch summary into memory, dropping the bytes of a batch whose summary was
    /// never written (the host stopped between the two).
    pub(super) fn load_log(&self) -> Result<(), sled::Error> {
        let mut log = self.log.write().unwrap();
        for entry in self.log_index.iter() {
            let (key, bytes) = entry?;
            let Ok(batch) = <[u8; 8]>::try_from(key.as_ref()).map(u64::from_be_bytes) else { continue };
            match serde_json::from_slice::<Summary>(&bytes) {
                Ok(summary) => log.add(batch, summary),
                Err(error) => tracing::warn!(%error, batch, "skipping an unreadable batch of execution records"),
            }
        }
        for key in self.log_batches.iter().keys() {
            let key = key?;
            if !self.log_index.contains_key(&key)? {
                self.log_batches.remove(key)?;
            }
        }
        Ok(())
    }

    /// Append `records` to the log, in batches of at most [`BATCH_RECORDS`] records.
    pub(super) fn append(&self, records: &[(Execution, Logs)]) -> Result<(), ExecutionsError> {
        let mut rest = records;
        while !rest.is_empty() {
            let batch = self.store.next_id().map_err(storage)?;
            let (mut bytes, mut summary) = (Vec::new(), Summary::default());
            let mut taken = 0;
            for (record, logs) in rest.iter().take(BATCH_RECORDS) {
                taken += 1;
                let start = bytes.len() as u32;
                serde_json::to_writer(&mut bytes, record).map_err(storage)?;
                let end = bytes.len() as u32;
                if !(logs.stdout.is_empty() && logs.stderr.is_empty()) {
                    bytes.extend_from_slice(format_attempt(logs, record.attempt).as_bytes());
                }
                let names = [record.app.as_str(), &record.function, &record.trigger];
                let finished = record.finished_ms.unwrap_or(record.queued_ms);
                let ranges = ([start, end], [end, bytes.len() as u32]);
                summary.push(&record.id, names, (record.status, record.queued_ms, finished, ranges.0, ranges.1));
                if bytes.len() >= BATCH_BYTES {
                    break;
                }
            }
            rest = &rest[taken..];
            // The bytes first: a host stopping between the two leaves bytes that no summary
            // points to, which the next start deletes, never a summary without its records.
            self.log_batches.insert(key(batch), bytes).map_err(storage)?;
            self.log_index.insert(key(batch), serde_json::to_vec(&summary).map_err(storage)?).map_err(storage)?;
            self.log.write().unwrap().add(batch, summary);
        }
        Ok(())
    }

    /// The bytes of `entry`'s batch, from `cache` when it holds them.
    fn batch_bytes(&self, entry: &Entry, cache: &mut Option<(u64, sled::IVec)>) -> Option<sled::IVec> {
        if let Some((_, bytes)) = cache.as_ref().filter(|(batch, _)| *batch == entry.batch) {
            return Some(bytes.clone());
        }
        let bytes = self.log_batches.get(key(entry.batch)).ok()??;
        *cache = Some((entry.batch, bytes.clone()));
        Some(bytes)
    }

    /// The logged record of `entry`, read from its batch (`cache` keeps the last batch read).
    pub(super) fn logged(&self, entry: &Entry, cache: &mut Option<(u64, sled::IVec)>) -> Option<Execution> {
        let bytes = self.batch_bytes(entry, cache)?;
        self.decode(bytes.get(entry.record.start as usize..entry.record.end as usize)?)
    }

    /// The logs of logged record `id`: `None` when it is not in the log, or printed nothing.
    pub(super) fn logged_logs(&self, id: &str) -> Option<Option<String>> {
        let entry = self.log.read().unwrap().entries.get(id)?.clone();
        if entry.logs.is_empty() {
            return Some(None);
        }
        let bytes = self.batch_bytes(&entry, &mut None)?;
        let text = bytes.get(entry.logs.start as usize..entry.logs.end as usize)?;
        Some(Some(String::from_utf8_lossy(text).into_owned()))
    }

    /// Take `ids` out of the log: their batches' summaries are rewritten without them, and a
    /// batch left empty is deleted.
    pub(super) fn forget(&self, ids: &[String]) -> Result<(), ExecutionsError> {
        let mut log = self.log.write().unwrap();
        let (mut emptied, mut shrunk) = (HashSet::new(), HashSet::new());
        for (entry, empty) in ids.iter().filter_map(|id| log.remove(id)) {
            if empty {
                emptied.insert(entry.batch)
            } else {
                shrunk.insert(entry.batch)
            };
        }
        for batch in &emptied {
            self.log_index.remove(key(*batch)).map_err(storage)?;
            self.log_batches.remove(key(*batch)).map_err(storage)?;
        }
        // Pruning takes the oldest records: most batches go whole, at most one is rewritten.
        for batch in shrunk.difference(&emptied) {
            let summary = serde_json::to_vec(&log.summary(*batch)).map_err(storage)?;
            self.log_index.insert(key(*batch), summary).map_err(storage)?;
        }
        Ok(())
    }
}
