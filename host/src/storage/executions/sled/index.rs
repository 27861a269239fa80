//! The index of execution records by what lists filter on, so that a filter reads only the
//! records it answers with.
//!
//! Tree `execution-index` holds one entry per record: key `APP \0 ID`, value
//! `FUNCTION \0 TRIGGER \0 STATUS`. One entry (not one per field) keeps recording cheap: it is
//! one more sled insert on the hot path of direct calls. Ids have a fixed width, so an app's
//! entries sort by id like the records do; lists over several apps merge the apps' entries.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use super::SledExecutions;
use super::log::{Entry, newest_first};
use crate::storage::executions::{Execution, ExecutionFilter, ExecutionsError, Status, storage};

/// Marks an index built over every record (absent in data dirs written before the index). App
/// names never start with this byte.
const BUILT: &[u8] = b"\xffbuilt";

/// The start of every entry of `app`.
fn prefix(app: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(app.len() + 17);
    key.extend_from_slice(app.as_bytes());
    key.push(0);
    key
}

/// The index entry (key, value) of `record`.
pub(crate) fn entry(record: &Execution) -> (Vec<u8>, Vec<u8>) {
    let mut key = prefix(&record.app);
    key.extend_from_slice(record.id.as_bytes());
    let value = [record.function.as_str(), record.trigger.as_str(), record.status.as_str()].join("\0");
    (key, value.into_bytes())
}

/// What an entry's value says: function, trigger, status.
fn fields(value: &[u8]) -> Option<(&str, &str, &str)> {
    let mut parts = std::str::from_utf8(value).ok()?.split('\0');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Whether an entry's value passes the filter's function, trigger and status.
fn passes(filter: &ExecutionFilter, value: &[u8]) -> bool {
    fields(value).is_some_and(|(function, trigger, status)| {
        filter.function.as_deref().is_none_or(|f| f == function)
            && filter.trigger.as_deref().is_none_or(|t| t == trigger)
            && filter.status.is_none_or(|s| s.as_str() == status)
    })
}

/// Entries of one app newest first, older than `before`: (id, value).
type Entries<'a> = Box<dyn Iterator<Item = (Vec<u8>, sled::IVec)> + 'a>;

/// Where a listed record is read from.
enum Source<'a> {
    /// Its bytes, read already from the `executions` tree.
    Bytes(sled::IVec),
    /// The `executions` tree, by id.
    Tree,
    /// The record log.
    Log(&'a Entry),
}

/// The entries of several apps, newest first across them: always the largest id at the head of
/// a source.
fn merged(sources: Vec<Entries<'_>>) -> impl Iterator<Item = (Vec<u8>, sled::IVec)> + '_ {
    let mut sources: Vec<_> = sources.into_iter().map(Iterator::peekable).collect();
    std::iter::from_fn(move || {
        let newest = sources
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.peek().map(|(id, _)| (i, id.clone())))
            .max_by(|a, b| a.1.cmp(&b.1))?
            .0;
        sources[newest].next()
    })
}

impl SledExecutions {
    /// Build the index over every record if this data dir has none yet.
    pub(super) fn build_index(&self) -> Result<(), sled::Error> {
        if self.index.contains_key(BUILT)? {
            return Ok(());
        }
        if !self.records.is_empty() {
            tracing::info!(records = self.records.len(), "indexing the execution records (once)");
        }
        for entry in self.records.iter() {
            let (_, bytes) = entry?;
            if let Some(record) = self.decode(&bytes) {
                self.index_put(&record)?;
            }
        }
        self.index.insert(BUILT, b"".as_slice())?;
        Ok(())
    }

    /// Add or update the entry of `record`.
    pub(super) fn index_put(&self, record: &Execution) -> Result<(), sled::Error> {
        let (key, value) = entry(record);
        self.index.insert(key, value)?;
        Ok(())
    }

    /// A record from its stored bytes (counted, see [`SledExecutions::decoded`]).
    pub(super) fn decode(&self, bytes: &[u8]) -> Option<Execution> {
        self.decoded.fetch_add(1, Ordering::Relaxed);
        serde_json::from_slice(bytes).ok()
    }

    /// How many records were read from their bytes since the host started: lists and pruning
    /// read only the records they need.
    pub fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    /// The entries of `app`, newest first, older than `before`.
    fn app_entries(&self, app: &str, before: Option<&str>) -> Entries<'_> {
        let start = prefix(app);
        let end = match before {
            Some(id) => Bound::Excluded([start.as_slice(), id.as_bytes()].concat()),
            None => Bound::Excluded([&start[..start.len() - 1], &[1]].concat()),
        };
        let at = start.len();
        Box::new(
            self.index
                .range((Bound::Included(start), end))
                .rev()
                .filter_map(Result::ok)
                .map(move |(key, value)| (key[at..].to_vec(), value)),
        )
    }

    /// Records matching `filter`, newest first, at most `limit`, older than `before` (an id), from
    /// the `executions` tree and the record log merged. With a filter, the index entries of the
    /// filtered app (or of every app, merged by id) and the log's summaries are checked first:
    /// only records that match are read.
    pub(super) fn list_now(&self, filter: &ExecutionFilter, before: Option<&str>, limit: usize) -> Vec<Execution> {
        self.write_pending();
        let log = self.log.read().unwrap();
        let logged = log.ids(filter, before).map(|(id, entry)| (id.clone(), Source::Log(entry)));
        let text = |id: &[u8]| String::from_utf8_lossy(id).into_owned();
        let stored: Box<dyn Iterator<Item = (String, Source<'_>)>> = if filter == &ExecutionFilter::default() {
            let end = before.map_or(Bound::Unbounded, |id| Bound::Excluded(id.as_bytes().to_vec()));
            let records = self.records.range((Bound::Unbounded, end)).rev().filter_map(Result::ok);
            Box::new(records.map(move |(id, bytes)| (text(&id), Source::Bytes(bytes))))
        } else {
            let apps = match &filter.app {
                Some(app) => vec![app.clone()],
                None => self.indexed_apps(),
            };
            let sources = apps.iter().map(|app| self.app_entries(app, before)).collect();
            let entries = merged(sources).filter(|(_, value)| passes(filter, value));
            Box::new(entries.map(move |(id, _)| (text(&id), Source::Tree)))
        };
        let mut batch = None;
        newest_first(stored, logged)
            .filter_map(|(id, source)| match source {
                Source::Bytes(bytes) => self.decode(&bytes),
                Source::Tree => self.decode(&self.records.get(id.as_bytes()).ok()??),
                Source::Log(entry) => self.logged(entry, &mut batch),
            })
            .filter(|record| filter.matches(record))
            .take(limit)
            .collect()
    }

    /// Every app with records, by name.
    pub(super) fn indexed_apps(&self) -> Vec<String> {
        let mut apps = Vec::new();
        let mut from = Vec::new();
        while let Some(Ok(key)) = self.index.range(from.clone()..BUILT.to_vec()).keys().next() {
            let Some(end) = key.iter().position(|b| *b == 0) else { break };
            apps.push(String::from_utf8_lossy(&key[..end]).into_owned());
            // The first key after every entry of this app.
            from = [&key[..end], &[1]].concat();
        }
        apps
    }

    /// Ids of `app`'s records that are final, newest first.
    pub(super) fn final_ids(&self, app: &str) -> impl Iterator<Item = String> + '_ {
        self.app_entries(app, None).filter_map(|(id, value)| {
            let status = fields(&value)?.2.parse::<Status>().ok()?;
            status.is_final().then(|| String::from_utf8_lossy(&id).into_owned())
        })
    }

    /// Delete a record with its logs and index entry.
    pub(super) fn delete(&self, record: &Execution) -> Result<(), ExecutionsError> {
        self.records.remove(record.id.as_bytes()).map_err(storage)?;
        self.logs.remove(record.id.as_bytes()).map_err(storage)?;
        self.index.remove(entry(record).0).map_err(storage)?;
        Ok(())
    }
}
