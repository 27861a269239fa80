//! Accepting an item or topic event into queued executions, exactly once across nodes, without
//! a transaction over the event log and the buckets: an outbox.
//!
//! The `accepted` bucket holds one entry per event (`LOG/APP/KEY`), taken by compare-and-swap,
//! so among nodes accepting the same event at the same moment one wins. Its value names the
//! winner's execution ids and whether they are all written. The winner writes its records
//! (with their `once` claims and queue entries), marks the entry written, then removes the
//! event from its log. A node that loses waits for the entry to be marked written, then removes
//! the event too (removing it twice is fine). If the winner dies (or fails) before marking it,
//! the entry stays unwritten: after [`OUTBOX_GRACE`] another node (the winner itself at once)
//! writes the same records under the winner's ids, creating only those not written yet (so a
//! record already running is never set back to queued), and carries on. Entries are kept for [`OUTBOX_KEEP`] after the event went,
//! so a node that read the event just before it went cannot accept it again.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{NatsExecutions, nats_error, pieces};
use crate::storage::executions::{EventLog, EventRef, Execution, ExecutionsError, now_ms, storage};
use crate::storage::nats::event_sequence;

/// How long an unwritten outbox entry is left to the node that took it before another node
/// writes its records.
pub(super) const OUTBOX_GRACE: Duration = Duration::from_secs(10);

/// How long an outbox entry is kept after it was taken.
const OUTBOX_KEEP: Duration = Duration::from_secs(3600);

/// An entry of the `accepted` bucket.
#[derive(Serialize, Deserialize)]
struct Outbox {
    /// The ids of the executions the event turned into, in the order of the records.
    ids: Vec<String>,
    /// Whether they are all written.
    written: bool,
    /// The node that took it.
    #[serde(default)]
    node: u32,
    /// When the entry was taken, ms since the epoch.
    taken_ms: u64,
}

impl Outbox {
    fn bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("an outbox entry serializes"))
    }
}

/// The stream name of an event log.
fn kind(log: EventLog) -> &'static str {
    match log {
        EventLog::Items => "ITEMS",
        EventLog::Topics => "TOPICS",
    }
}

impl NatsExecutions {
    /// Accept one event (see [`crate::storage::executions::ExecutionBackend::accept_events`]).
    pub(super) async fn accept_event_now(
        &self,
        event: EventRef<'_>,
        records: &[Execution],
    ) -> Result<(), ExecutionsError> {
        let key = String::from_utf8_lossy(event.key);
        let sequence =
            event_sequence(event.key).ok_or_else(|| storage(format!("event key `{key}`: not a sequence")))?;
        let log = self.event_log(kind(event.log), event.app).await?;
        let accepted = &self.buckets().await?.accepted;
        let failed = nats_error("accept an event");
        let entry = format!("{}/{}/{key}", kind(event.log), event.app);
        let ids = records.iter().map(|r| r.id.clone()).collect();
        let mine = Outbox { ids, written: false, taken_ms: now_ms(), node: self.node };
        let mut current = match accepted.put_if(&entry, None, mine.bytes()).await.map_err(&failed)? {
            Ok(revision) => {
                self.write_accepted(records, false).await?;
                // Lost only to a node that took it for dead and wrote the same records.
                let _ = accepted.put_if(&entry, Some(revision), Outbox { written: true, ..mine }.bytes()).await;
                None
            }
            Err(theirs) => theirs,
        };
        let mut pause = Duration::from_millis(2);
        while let Some((value, revision)) = current {
            let theirs: Outbox = serde_json::from_slice(&value).map_err(storage)?;
            if theirs.written {
                break;
            }
            // Taken by this node (an earlier try that failed), or by a node that died writing:
            // write the same executions, under its ids.
            if theirs.node == self.node || now_ms().saturating_sub(theirs.taken_ms) > OUTBOX_GRACE.as_millis() as u64 {
                let replayed: Vec<Execution> = records
                    .iter()
                    .zip(&theirs.ids)
                    .map(|(record, id)| Execution { id: id.clone(), ..record.clone() })
                    .collect();
                self.write_accepted(&replayed, true).await?;
                let written = Outbox { written: true, ..theirs };
                let _ = accepted.put_if(&entry, Some(revision), written.bytes()).await;
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            current = accepted.get(&entry).await.map_err(&failed)?;
        }
        log.accept(sequence).await.map_err(nats_error("remove an accepted event"))
    }

    /// Write the records of an accepted event with their queue entries, leaving out those whose
    /// `once` claim another execution holds. `replay`: another node may have written some of
    /// them already, and they may have moved on since: write only the missing ones.
    async fn write_accepted(&self, records: &[Execution], replay: bool) -> Result<(), ExecutionsError> {
        let buckets = self.buckets().await?;
        for record in records {
            if let Some(claim) = &record.claim
                && !self.take_once(claim, &record.id).await?
            {
                continue;
            }
            if replay {
                let bytes = Bytes::from(serde_json::to_vec(record).map_err(storage)?);
                let index = super::records::index_key(record);
                buckets.index.put(&index, Bytes::new()).await.map_err(nats_error("index an execution"))?;
                let failed = nats_error("write an execution");
                let head = pieces::store(&buckets.records, &record.id, bytes).await.map_err(&failed)?;
                if let Err(Some((head, _))) = buckets.records.put_if(&record.id, None, head).await.map_err(&failed)? {
                    // Written already (and maybe changed since): keep only its own entry.
                    let written = pieces::load(&buckets.records, &record.id, &head).await.map_err(&failed)?;
                    let written: Execution = serde_json::from_slice(&written).map_err(storage)?;
                    if super::records::index_key(&written) != index {
                        buckets.index.delete(&index).await.map_err(nats_error("index an execution"))?;
                    }
                    continue;
                }
            } else {
                self.write_new(record).await?;
            }
            buckets.queue.put(&record.id, Bytes::new()).await.map_err(nats_error("queue an execution"))?;
        }
        Ok(())
    }

    /// Delete the outbox entries older than [`OUTBOX_KEEP`]: how many went.
    pub(super) async fn prune_outbox(&self) -> Result<usize, ExecutionsError> {
        let accepted = &self.buckets().await?.accepted;
        let failed = nats_error("prune accepted events");
        let mut deleted = 0;
        for entry in accepted.keys().await.map_err(&failed)? {
            let Some((value, revision)) = accepted.get(&entry).await.map_err(&failed)? else { continue };
            let old = serde_json::from_slice::<Outbox>(&value)
                .is_ok_and(|o| now_ms().saturating_sub(o.taken_ms) > OUTBOX_KEEP.as_millis() as u64);
            if old && accepted.delete_if(&entry, revision).await.map_err(&failed)? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
