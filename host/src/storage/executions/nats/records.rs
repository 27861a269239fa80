//! Records, their logs and their index entries in the `records`, `logs` and `index` buckets.
//!
//! A record is the truth; an index entry says where to look. A write puts the new entry first,
//! then the record, then removes the entry of its old status, so a crash between them leaves an
//! extra entry (lists check every record they answer with against the filter), never a record
//! that a filtered list cannot find.

use bytes::Bytes;

use super::{NatsExecutions, nats_error, pieces};
use crate::outcome::Logs;
use crate::storage::executions::{Execution, ExecutionFilter, ExecutionsError, format_attempt, storage};

/// The index key of `record`: every field lists filter on, so that they filter on keys.
pub(super) fn index_key(record: &Execution) -> String {
    [record.app.as_str(), &record.id, &record.function, &record.trigger, record.status.as_str()].join("\0")
}

/// What an index key says.
pub(super) struct Entry<'a> {
    pub(super) app: &'a str,
    pub(super) id: &'a str,
    function: &'a str,
    trigger: &'a str,
    pub(super) status: &'a str,
}

/// The fields of an index key, if it is one.
pub(super) fn entry(key: &str) -> Option<Entry<'_>> {
    let mut parts = key.split('\0');
    let entry = Entry {
        app: parts.next()?,
        id: parts.next()?,
        function: parts.next()?,
        trigger: parts.next()?,
        status: parts.next()?,
    };
    parts.next().is_none().then_some(entry)
}

impl Entry<'_> {
    fn passes(&self, filter: &ExecutionFilter) -> bool {
        filter.app.as_deref().is_none_or(|a| a == self.app)
            && filter.function.as_deref().is_none_or(|f| f == self.function)
            && filter.trigger.as_deref().is_none_or(|t| t == self.trigger)
            && filter.status.is_none_or(|s| s.as_str() == self.status)
    }
}

impl NatsExecutions {
    /// The record with this id, as stored (records waiting in the batch are not looked at).
    pub(super) async fn read(&self, id: &str) -> Result<Option<Execution>, ExecutionsError> {
        let found = pieces::get(&self.buckets().await?.records, id).await.map_err(nats_error("read an execution"))?;
        found.map(|bytes| serde_json::from_slice(&bytes).map_err(storage)).transpose()
    }

    /// The stored logs of execution `id`.
    pub(super) async fn read_logs(&self, id: &str) -> Result<Option<String>, ExecutionsError> {
        let found = pieces::get(&self.buckets().await?.logs, id).await.map_err(nats_error("read execution logs"))?;
        Ok(found.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Store a record with its index entry (and optionally append an attempt's logs). Only the
    /// claimant of an execution writes its record, so the record read to find its old index
    /// entry is not changed meanwhile.
    pub(super) async fn write(&self, record: &Execution, logs: Option<(&Logs, u32)>) -> Result<(), ExecutionsError> {
        let old = self.read(&record.id).await?;
        self.write_new(record).await?;
        if let Some(old) = old.filter(|old| index_key(old) != index_key(record)) {
            let index = &self.buckets().await?.index;
            index.delete(&index_key(&old)).await.map_err(nats_error("update the execution index"))?;
        }
        if let Some((logs, attempt)) = logs {
            let mut text = self.read_logs(&record.id).await?.unwrap_or_default();
            text.push_str(&format_attempt(logs, attempt));
            self.write_logs(&record.id, text).await?;
        }
        Ok(())
    }

    /// Store a record not written before, with its index entry.
    pub(super) async fn write_new(&self, record: &Execution) -> Result<(), ExecutionsError> {
        let buckets = self.buckets().await?;
        let bytes = Bytes::from(serde_json::to_vec(record).map_err(storage)?);
        buckets.index.put(&index_key(record), Bytes::new()).await.map_err(nats_error("index an execution"))?;
        pieces::put(&buckets.records, &record.id, bytes).await.map_err(nats_error("write an execution"))?;
        Ok(())
    }

    /// Replace the logs of execution `id`.
    pub(super) async fn write_logs(&self, id: &str, text: String) -> Result<(), ExecutionsError> {
        let logs = &self.buckets().await?.logs;
        pieces::put(logs, id, Bytes::from(text)).await.map_err(nats_error("write execution logs"))?;
        Ok(())
    }

    /// Records matching `filter`, newest first, at most `limit`, older than `before`.
    pub(super) async fn list_now(
        &self,
        filter: &ExecutionFilter,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Execution>, ExecutionsError> {
        let keys = self.buckets().await?.index.keys().await.map_err(nats_error("list executions"))?;
        let mut ids: Vec<&str> = keys
            .iter()
            .filter_map(|key| entry(key))
            .filter(|entry| entry.passes(filter) && before.is_none_or(|before| entry.id < before))
            .map(|entry| entry.id)
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        let mut found = Vec::new();
        for id in ids {
            if found.len() >= limit {
                break;
            }
            // An entry of a status the record has left (a write cut short) is skipped here.
            if let Some(record) = self.read(id).await?.filter(|record| filter.matches(record)) {
                found.push(record);
            }
        }
        Ok(found)
    }

    /// Delete a record with its logs and index entry.
    pub(super) async fn delete(&self, record: &Execution) -> Result<(), ExecutionsError> {
        let buckets = self.buckets().await?;
        let failed = nats_error("delete an execution");
        pieces::delete(&buckets.records, &record.id).await.map_err(&failed)?;
        pieces::delete(&buckets.logs, &record.id).await.map_err(&failed)?;
        buckets.index.delete(&index_key(record)).await.map_err(&failed)?;
        Ok(())
    }
}
