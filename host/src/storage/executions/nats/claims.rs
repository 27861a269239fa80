//! Claims with an expiry (`claims` bucket), `once` claims of item triggers (`once` bucket) and
//! the last fire times of schedules (`fires` bucket), all changed by compare-and-swap, so two
//! nodes racing for one key never both win.
//!
//! A claim's value is `UNTIL_MS NODE`: who holds it and until when (ms since the epoch, by the
//! holder's clock: nodes' clocks must agree to well within a claim's ttl). An expired claim is
//! taken over by a swap from the value read, so two nodes taking it over cannot both win.

use std::time::Duration;

use bytes::Bytes;

use super::{NatsExecutions, nats_error};
use crate::storage::executions::{ExecutionsError, now_ms};
use crate::storage::nats::{Bucket, Versioned};

/// What a claim's value says: until when, and who holds it.
fn holder(value: &[u8]) -> Option<(u64, &str)> {
    let (until, node) = std::str::from_utf8(value).ok()?.split_once(' ')?;
    Some((until.parse().ok()?, node))
}

impl NatsExecutions {
    /// This node's name in claims.
    fn me(&self) -> String {
        format!("{:08x}", self.node)
    }

    /// A claim of this node on `key` for `ttl` from now.
    fn claim_value(&self, ttl: Duration) -> Bytes {
        Bytes::from(format!("{} {}", now_ms().saturating_add(ttl.as_millis() as u64), self.me()))
    }

    async fn claims(&self) -> Result<&Bucket, ExecutionsError> {
        Ok(&self.buckets().await?.claims)
    }

    /// See [`crate::storage::executions::ExecutionBackend::claim`].
    pub(super) async fn claim_now(&self, key: &str, ttl: Duration) -> Result<bool, ExecutionsError> {
        let claims = self.claims().await?;
        let failed = nats_error("claim");
        let mut current = claims.get(key).await.map_err(&failed)?;
        loop {
            let expected = match &current {
                Some((value, _)) if holder(value).is_some_and(|(until, _)| until > now_ms()) => return Ok(false),
                Some((_, revision)) => Some(*revision),
                None => None,
            };
            match claims.put_if(key, expected, self.claim_value(ttl)).await.map_err(&failed)? {
                Ok(_) => return Ok(true),
                Err(now) => current = now,
            }
        }
    }

    /// See [`crate::storage::executions::ExecutionBackend::renew`].
    pub(super) async fn renew_now(&self, key: &str, ttl: Duration) -> Result<bool, ExecutionsError> {
        let claims = self.claims().await?;
        let failed = nats_error("renew a claim");
        let mut current = claims.get(key).await.map_err(&failed)?;
        loop {
            let Some(revision) = self.held(&current) else { return Ok(false) };
            match claims.put_if(key, Some(revision), self.claim_value(ttl)).await.map_err(&failed)? {
                Ok(_) => return Ok(true),
                Err(now) => current = now,
            }
        }
    }

    /// See [`crate::storage::executions::ExecutionBackend::release`].
    pub(super) async fn release_now(&self, key: &str) -> Result<(), ExecutionsError> {
        let claims = self.claims().await?;
        let failed = nats_error("release a claim");
        loop {
            let current = claims.get(key).await.map_err(&failed)?;
            let Some(revision) = self.held(&current) else { return Ok(()) };
            if claims.delete_if(key, revision).await.map_err(&failed)? {
                return Ok(());
            }
        }
    }

    /// The revision of a claim this node holds (expired or not, while no one took it over).
    fn held(&self, claim: &Option<Versioned>) -> Option<u64> {
        let (value, revision) = claim.as_ref()?;
        holder(value).is_some_and(|(_, node)| node == self.me()).then_some(*revision)
    }

    /// Delete the expired claims: how many went.
    pub(super) async fn prune_claims(&self) -> Result<usize, ExecutionsError> {
        let claims = self.claims().await?;
        let failed = nats_error("prune claims");
        let mut deleted = 0;
        for key in claims.keys().await.map_err(&failed)? {
            let Some((value, revision)) = claims.get(&key).await.map_err(&failed)? else { continue };
            if holder(&value).is_none_or(|(until, _)| until <= now_ms())
                && claims.delete_if(&key, revision).await.map_err(&failed)?
            {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Take the `once` claim `claim` for execution `id`: true if it is free or held by `id`
    /// already (an accepted event written again).
    pub(super) async fn take_once(&self, claim: &str, id: &str) -> Result<bool, ExecutionsError> {
        let once = &self.buckets().await?.once;
        match once.put_if(claim, None, Bytes::copy_from_slice(id.as_bytes())).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(held)) => Ok(held.is_some_and(|(holder, _)| holder == id.as_bytes())),
            Err(e) => Err(nats_error("take a once claim")(e)),
        }
    }

    /// Give up the `once` claim `claim` if execution `id` holds it.
    pub(super) async fn release_once(&self, claim: &str, id: &str) -> Result<(), ExecutionsError> {
        let once = &self.buckets().await?.once;
        let failed = nats_error("release a once claim");
        if let Some((holder, revision)) = once.get(claim).await.map_err(&failed)?
            && holder == id.as_bytes()
        {
            once.delete_if(claim, revision).await.map_err(&failed)?;
        }
        Ok(())
    }

    /// See [`crate::storage::executions::ExecutionBackend::last_fire`].
    pub(super) async fn last_fire_now(&self, schedule: &str) -> Result<Option<u64>, ExecutionsError> {
        let fires = &self.buckets().await?.fires;
        let found = fires.get(schedule).await.map_err(nats_error("read a schedule's last fire"))?;
        Ok(found.and_then(|(value, _)| fire_ms(&value)))
    }

    /// See [`crate::storage::executions::ExecutionBackend::save_fire`].
    pub(super) async fn save_fire_now(&self, schedule: &str, at: u64) -> Result<(), ExecutionsError> {
        let fires = &self.buckets().await?.fires;
        let failed = nats_error("save a schedule's last fire");
        let mut current = fires.get(schedule).await.map_err(&failed)?;
        loop {
            if current.as_ref().and_then(|(value, _)| fire_ms(value)).is_some_and(|kept| kept >= at) {
                return Ok(());
            }
            let value = Bytes::copy_from_slice(&at.to_be_bytes());
            match fires.put_if(schedule, current.map(|(_, revision)| revision), value).await.map_err(&failed)? {
                Ok(_) => return Ok(()),
                Err(now) => current = now,
            }
        }
    }
}

/// A fire time as the `fires` bucket keeps it.
fn fire_ms(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}
