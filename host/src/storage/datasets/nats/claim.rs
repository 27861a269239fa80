//! The lock of a dataset across nodes, and changes written through an outbox.
//!
//! The lock is a claim: key [`LOCK`] of the dataset's bucket names its holder and when it
//! expires, taken by a compare-and-swap when absent or expired. The holder then chains every
//! write it makes to the bucket on the bucket's last sequence ([`Bucket::write_after`]): waiting
//! nodes only read, so the chain holds until the claim is released, or until a node takes over
//! an expired claim, whose write breaks the chain and fences the former holder out (its next
//! write fails). A holder renews its claim as it writes.
//!
//! A change of several keys and its item event is first written whole as an [`Intent`] under
//! key [`OUTBOX`], then applied key by key, the event appended under the intent's id (so that
//! appending it twice writes it once), and the outbox cleared. Whoever takes the lock next
//! finishes an intent left behind, so a change is either not there or there with its event.

use std::sync::Arc;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::object_store::ObjectStore;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::super::{ItemEvent, ItemsError, storage};
use crate::clock::now_ms;
use crate::storage::nats::{Bucket, EventLog, random_id};

/// The key of the dataset's claim.
pub(super) const LOCK: &str = "lock";
/// The key of the change being applied.
pub(super) const OUTBOX: &str = "outbox";
/// How long a claim lasts unless renewed: a node that dies holding it blocks the dataset's
/// changes this long.
const TTL_MS: u64 = 10_000;

/// The value under [`LOCK`].
#[derive(Serialize, Deserialize)]
struct Lock {
    owner: String,
    expires_ms: u64,
}

/// A claim held: the sequence of the holder's last write, which its next write expects.
pub(super) struct Claim {
    owner: String,
    last: u64,
    expires_ms: u64,
}

/// A change of a dataset: writes (a value, or `None` to remove the key), the item event it
/// emits, and objects to delete once it is applied.
#[derive(Serialize, Deserialize)]
pub(super) struct Intent {
    /// Message id of the event: appending it again is a no-op.
    pub id: String,
    /// Keys and their new values, `None` to remove the key.
    pub writes: Vec<(String, Option<String>)>,
    /// The item event the change emits, if any.
    pub event: Option<ItemEvent>,
    /// Objects no record names any more.
    pub retired: Vec<String>,
}

/// What a change writes to: the bucket, the objects and the app's event log.
#[derive(Clone)]
pub(super) struct Writer {
    /// The dataset's name, for errors.
    pub dataset: String,
    /// Records, paths, annotations, the lock and the outbox.
    pub bucket: Bucket,
    /// Item bytes.
    pub objects: ObjectStore,
    /// The app's item events.
    pub events: EventLog,
    /// The claim while this handle holds it.
    pub claim: Arc<tokio::sync::Mutex<Option<Claim>>>,
}

/// The lock held: the local turn, and the claim (released when dropped).
struct Held {
    writer: Writer,
    turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let (writer, turn) = (self.writer.clone(), self.turn.take());
        // Releasing is a write: done in a task (without a runtime, the claim expires instead).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(claim) = writer.claim.lock().await.take()
                    && let Err(e) = writer.bucket.write_after(LOCK, None, claim.last).await
                {
                    tracing::warn!(dataset = %writer.dataset, error = %e, "releasing a dataset's lock failed");
                }
                drop(turn);
            });
        }
    }
}

impl Writer {
    /// Take the dataset's claim (after `turn`, this node's turn), finishing a change a former
    /// holder left behind.
    pub async fn lock(&self, turn: tokio::sync::OwnedMutexGuard<()>) -> Result<Box<dyn Send>, ItemsError> {
        let owner = random_id();
        let mut pause = std::time::Duration::from_millis(2);
        let mut claim = loop {
            let current = self.bucket.get(LOCK).await.map_err(storage)?;
            let expires = |(value, _): &(Bytes, u64)| serde_json::from_slice::<Lock>(value).map_or(0, |l| l.expires_ms);
            if current.as_ref().is_none_or(|c| expires(c) <= now_ms()) {
                let expires_ms = now_ms() + TTL_MS;
                let value = serde_json::to_vec(&Lock { owner: owner.clone(), expires_ms }).map_err(storage)?;
                let taken = self.bucket.put_if(LOCK, current.map(|(_, r)| r), value.into()).await.map_err(storage)?;
                if let Ok(last) = taken {
                    break Claim { owner, last, expires_ms };
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
        };
        if let Some((intent, _)) = self.bucket.get(OUTBOX).await.map_err(storage)? {
            let intent: Intent = serde_json::from_slice(&intent).map_err(storage)?;
            self.apply(&mut claim, &intent).await?;
        }
        *self.claim.lock().await = Some(claim);
        Ok(Box::new(Held { writer: self.clone(), turn: Some(turn) }))
    }

    /// Apply `intent` under the claim: through the outbox when it writes more than one key or
    /// emits an event.
    pub async fn change(&self, intent: Intent) -> Result<(), ItemsError> {
        let mut slot = self.claim.lock().await;
        let claim =
            slot.as_mut().ok_or_else(|| storage(format!("dataset `{}`: changed without its lock", self.dataset)))?;
        if let ([(key, value)], None, []) = (&intent.writes[..], &intent.event, &intent.retired[..]) {
            return self.write(claim, key, value.clone().map(Bytes::from)).await;
        }
        self.write(claim, OUTBOX, Some(serde_json::to_vec(&intent).map_err(storage)?.into())).await?;
        self.apply(claim, &intent).await
    }

    /// Apply an intent written to the outbox, then clear it.
    async fn apply(&self, claim: &mut Claim, intent: &Intent) -> Result<(), ItemsError> {
        for (key, value) in &intent.writes {
            self.write(claim, key, value.clone().map(Bytes::from)).await?;
        }
        if let Some(event) = &intent.event {
            let payload = Bytes::from(serde_json::to_vec(event).map_err(storage)?);
            self.events.append(&intent.id, PublishMessage::build().payload(payload)).await.map_err(storage)?;
        }
        for object in &intent.retired {
            super::delete_object(&self.objects, object).await?;
        }
        self.write(claim, OUTBOX, None).await
    }

    /// Write `key` in the claim's chain, renewing the claim when half its time has passed.
    async fn write(&self, claim: &mut Claim, key: &str, value: Option<Bytes>) -> Result<(), ItemsError> {
        if claim.expires_ms.saturating_sub(now_ms()) < TTL_MS / 2 {
            let expires_ms = now_ms() + TTL_MS;
            let lock = serde_json::to_vec(&Lock { owner: claim.owner.clone(), expires_ms }).map_err(storage)?;
            self.chain(claim, LOCK, Some(lock.into())).await?;
            claim.expires_ms = expires_ms;
        }
        self.chain(claim, key, value).await
    }

    /// Write `key` if the holder's last write is still the bucket's last one.
    async fn chain(&self, claim: &mut Claim, key: &str, value: Option<Bytes>) -> Result<(), ItemsError> {
        match self.bucket.write_after(key, value, claim.last).await.map_err(storage)? {
            Some(sequence) => {
                claim.last = sequence;
                Ok(())
            }
            None => Err(storage(format!(
                "dataset `{}`: its lock expired and another node took it over; the change may be finished by it",
                self.dataset
            ))),
        }
    }
}
