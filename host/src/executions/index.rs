//! The index of execution records by what lists filter on, so that a filter reads only the
//! records it answers with.
//!
//! Tree `execution-index` holds one empty entry per record and field: `FIELD \0 VALUE \0 ID`, with
//! `FIELD` one of `a` (app), `f` (function), `t` (trigger) and `s` (status). Ids have a fixed
//! width, so the entries of one value sort by id like the records do.

use std::ops::Bound;
use std::sync::atomic::Ordering;

use super::{Execution, ExecutionFilter, Executions, Status, storage};

/// The fields indexed, by their key letter.
const APP: u8 = b'a';
const FUNCTION: u8 = b'f';
const TRIGGER: u8 = b't';
const STATUS: u8 = b's';

/// Marks an index built over every record (absent in data dirs written before the index).
const BUILT: &[u8] = b"\xffbuilt";

/// The start of every entry of `value` of `field`.
pub(super) fn prefix(field: u8, value: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(value.len() + 19);
    key.extend_from_slice(&[field, 0]);
    key.extend_from_slice(value.as_bytes());
    key.push(0);
    key
}

fn entry(field: u8, value: &str, id: &str) -> Vec<u8> {
    let mut key = prefix(field, value);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The index entries of `record`.
pub(crate) fn entries(record: &Execution) -> [Vec<u8>; 4] {
    [
        entry(APP, &record.app, &record.id),
        entry(FUNCTION, &record.function, &record.id),
        entry(TRIGGER, &record.trigger, &record.id),
        entry(STATUS, record.status.as_str(), &record.id),
    ]
}

/// The app-index entry of `app` that sorts right after `app`'s, for walking the apps.
fn after_app(app: &[u8]) -> Vec<u8> {
    let mut key = vec![APP, 0];
    key.extend_from_slice(app);
    key.push(1);
    key
}

impl Executions {
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
                self.index_insert(&record)?;
            }
        }
        self.index.insert(BUILT, b"".as_slice())?;
        Ok(())
    }

    /// Add the entries of a new `record`.
    pub(super) fn index_insert(&self, record: &Execution) -> Result<(), sled::Error> {
        for key in entries(record) {
            self.index.insert(key, b"".as_slice())?;
        }
        Ok(())
    }

    /// Add `record`'s entries, and drop those of its other statuses (it may have changed).
    pub(super) fn index_update(&self, record: &Execution) -> Result<(), sled::Error> {
        for status in Status::ALL.into_iter().filter(|s| *s != record.status) {
            self.index.remove(entry(STATUS, status.as_str(), &record.id))?;
        }
        self.index_insert(record)
    }

    /// Drop `record`'s entries.
    pub(super) fn index_remove(&self, record: &Execution) -> Result<(), sled::Error> {
        for key in entries(record) {
            self.index.remove(key)?;
        }
        Ok(())
    }

    /// A record from its stored bytes (counted, see [`Executions::decoded`]).
    pub(super) fn decode(&self, bytes: &[u8]) -> Option<Execution> {
        self.decoded.fetch_add(1, Ordering::Relaxed);
        serde_json::from_slice(bytes).ok()
    }

    /// How many records were read from their bytes since the host started: lists and pruning
    /// read only the records they need.
    pub fn decoded(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
    }

    /// Records matching `filter`, newest first, at most `limit`, older than `before` (an id).
    /// With a filter, the index of one filtered field gives the candidates and the others are
    /// checked in the index too: only records that match are read.
    pub fn list(&self, filter: &ExecutionFilter, before: Option<&str>, limit: usize) -> Vec<Execution> {
        self.write_pending();
        let status = filter.status.map(Status::as_str);
        let conditions: Vec<Vec<u8>> = [
            (STATUS, status),
            (FUNCTION, filter.function.as_deref()),
            (TRIGGER, filter.trigger.as_deref()),
            (APP, filter.app.as_deref()),
        ]
        .into_iter()
        .filter_map(|(field, value)| Some(prefix(field, value?)))
        .collect();
        let Some((first, others)) = conditions.split_first() else {
            let end = before.map_or(Bound::Unbounded, |id| Bound::Excluded(id.as_bytes().to_vec()));
            let records = self.records.range((Bound::Unbounded, end)).rev().filter_map(Result::ok);
            return records.filter_map(|(_, bytes)| self.decode(&bytes)).take(limit).collect();
        };
        let end = match before {
            Some(id) => [first.as_slice(), id.as_bytes()].concat(),
            None => [&first[..first.len() - 1], &[1]].concat(),
        };
        let ids = self.index.range(first.clone()..end).keys().rev().filter_map(Result::ok);
        ids.map(|key| key[first.len()..].to_vec())
            .filter(|id| {
                others.iter().all(|other| self.index.contains_key([other.as_slice(), id].concat()).unwrap_or(false))
            })
            .filter_map(|id| self.decode(&self.records.get(&id).ok()??))
            .filter(|record| filter.matches(record))
            .take(limit)
            .collect()
    }

    /// Every app with records, by name.
    pub(super) fn indexed_apps(&self) -> Vec<String> {
        let mut apps = Vec::new();
        let mut from = vec![APP, 0];
        while let Some(Ok(key)) = self.index.range(from.clone()..vec![APP, 1]).keys().next() {
            let app = &key[2..];
            let Some(end) = app.iter().position(|b| *b == 0) else { break };
            apps.push(String::from_utf8_lossy(&app[..end]).into_owned());
            from = after_app(&app[..end]);
        }
        apps
    }

    /// Ids of `app`'s records that are final, newest first.
    pub(super) fn final_ids(&self, app: &str) -> impl Iterator<Item = String> + '_ {
        let start = prefix(APP, app);
        let end = [&start[..start.len() - 1], &[1]].concat();
        let running = [prefix(STATUS, Status::Queued.as_str()), prefix(STATUS, Status::Running.as_str())];
        self.index.range(start.clone()..end).keys().rev().filter_map(Result::ok).filter_map(move |key| {
            let id = &key[start.len()..];
            let busy = running.iter().any(|p| self.index.contains_key([p.as_slice(), id].concat()).unwrap_or(false));
            (!busy).then(|| String::from_utf8_lossy(id).into_owned())
        })
    }

    /// Delete a record with its logs and index entries.
    pub(super) fn delete(&self, record: &Execution) -> Result<(), String> {
        self.records.remove(record.id.as_bytes()).map_err(storage)?;
        self.logs.remove(record.id.as_bytes()).map_err(storage)?;
        self.index_remove(record).map_err(storage)
    }
}
