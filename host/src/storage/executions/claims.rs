//! Who runs a queued execution: a claim of this process (one task per execution here), then the
//! store's claim (one node per execution on a store several nodes share), renewed while it runs.
//! Serial calls also wait in a line: the executions of a line run one at a time, in id order;
//! across nodes, the line itself is claimed, so that one node at a time runs a line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CLAIM_RENEW_EVERY, CLAIM_TTL, Executions, ExecutionsError};

/// How long the dispatcher leaves an execution whose claim another node holds before it tries
/// again: a node that died leaves its work for about [`CLAIM_TTL`] plus this.
const CLAIM_RETRY: Duration = Duration::from_secs(1);

/// The store's key of the claim on a line of serial calls.
fn line_key(line: &str) -> String {
    format!("line/{line}")
}

impl Executions {
    /// Claim `key` (an execution id) for a task of this process: true if no task here held it,
    /// and until [`Executions::release`] no other task here gets it. The claim holds the switch
    /// that cancels the execution. The store's claim is taken next, by
    /// [`Executions::claim_store`].
    pub(crate) fn claim(&self, key: &str) -> bool {
        let mut running = self.running.lock().unwrap();
        if running.contains_key(key) {
            return false;
        }
        running.insert(key.to_string(), Arc::default());
        true
    }

    /// Take the store's claim on `key`, claimed by this process already (and on its line, if it
    /// joined one): true if no one else holds them (on a shared store, another node may run
    /// it). Without them, this process's claim is given up.
    pub(crate) async fn claim_store(&self, key: &str) -> bool {
        let line = match self.line_of(key) {
            Some(line) => self.claim_line(&line).await,
            None => Ok(true),
        };
        let claimed = match line {
            Ok(true) => self.backend.claim(key, CLAIM_TTL).await,
            other => other,
        };
        let claimed = claimed.unwrap_or_else(|error| {
            tracing::warn!(%error, key, "cannot claim an execution");
            false
        });
        {
            let mut refused = self.refused.lock().unwrap();
            if claimed {
                refused.remove(key);
            } else {
                refused.retain(|_, at| at.elapsed() < CLAIM_RETRY);
                refused.insert(key.to_string(), Instant::now());
            }
        }
        if !claimed {
            self.release_here(key).await;
        }
        claimed
    }

    /// Whether the store's claim on `key` was refused less than [`CLAIM_RETRY`] ago (another
    /// node holds it): the dispatcher leaves it until then.
    pub(crate) fn refused_lately(&self, key: &str) -> bool {
        self.refused.lock().unwrap().get(key).is_some_and(|at| at.elapsed() < CLAIM_RETRY)
    }

    /// Keep the store's claims on `key` and its line (taken by [`Executions::claim_store`])
    /// while the work runs: renews them every [`CLAIM_RENEW_EVERY`]. Returns only when the claim
    /// on `key` is lost: another node took it, or renewals failed for so long that it expires
    /// before the next try (so that the work stops here before another node may start it).
    /// Run it beside the work (`select!`), which drops it when done, and stop the work when
    /// it returns.
    pub(crate) async fn keep_claimed(&self, key: &str) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(CLAIM_RENEW_EVERY).await;
            // Bounded: a store that does not answer must not hold the check below off.
            match tokio::time::timeout(CLAIM_RENEW_EVERY, self.backend.renew(key, CLAIM_TTL)).await {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => return tracing::warn!(key, "the claim on a running execution was taken over"),
                Ok(Err(error)) => tracing::warn!(%error, key, "cannot renew the claim on a running execution"),
                Err(_) => tracing::warn!(key, "no answer renewing the claim on a running execution"),
            }
            if renewed.elapsed() + CLAIM_RENEW_EVERY >= CLAIM_TTL {
                return tracing::warn!(key, "the claim on a running execution expires: not renewed for too long");
            }
            if let Some(line) = self.line_of(key).map(|line| line_key(&line))
                && let Err(error) = self.backend.renew(&line, CLAIM_TTL).await
            {
                tracing::warn!(%error, line, "cannot renew the claim on a line of serial calls");
            }
        }
    }

    /// Claim `key` in the store for `ttl`, never released (the claim of a schedule tick: one node
    /// fires it): true for the one claimant.
    pub(crate) async fn claim_for(&self, key: &str, ttl: Duration) -> Result<bool, ExecutionsError> {
        self.backend.claim(key, ttl).await
    }

    /// Whether this process holds the claim on `key`.
    pub(crate) fn is_claimed(&self, key: &str) -> bool {
        self.running.lock().unwrap().contains_key(key)
    }

    /// Give up the claim on `key`, here and in the store; it also leaves any line it waited in.
    pub(crate) async fn release(&self, key: &str) {
        if let Err(error) = self.backend.release(key).await {
            tracing::warn!(%error, key, "cannot release the claim on an execution");
        }
        self.release_here(key).await;
    }

    /// Give up this process's claim on `key`, and leave any line it waited in (giving up the
    /// store's claim on a line left empty).
    async fn release_here(&self, key: &str) {
        self.running.lock().unwrap().remove(key);
        let line = self.line_of(key);
        {
            let mut lines = self.lines.lock().unwrap();
            lines.values_mut().for_each(|ids| {
                ids.remove(key);
            });
            lines.retain(|_, ids| !ids.is_empty());
        }
        self.line_moved.notify_waiters();
        if let Some(line) = line {
            self.release_line(&line).await;
        }
    }

    /// The line execution `id` waits in, if any.
    fn line_of(&self, id: &str) -> Option<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().find(|(_, ids)| ids.contains(id)).map(|(line, _)| line.clone())
    }

    /// Take the store's claim on `line` unless this process holds it: whether it holds it now.
    async fn claim_line(&self, line: &str) -> Result<bool, ExecutionsError> {
        let mut held = self.held_lines.lock().await;
        if held.contains(line) {
            return Ok(true);
        }
        let claimed = self.backend.claim(&line_key(line), CLAIM_TTL).await?;
        if claimed {
            held.insert(line.to_string());
        }
        Ok(claimed)
    }

    /// Give up the store's claim on `line` if no execution of this process waits in it.
    async fn release_line(&self, line: &str) {
        let mut held = self.held_lines.lock().await;
        let waiting = self.lines.lock().unwrap().contains_key(line);
        if waiting || !held.remove(line) {
            return;
        }
        if let Err(error) = self.backend.release(&line_key(line)).await {
            tracing::warn!(%error, line, "cannot release the claim on a line of serial calls");
        }
    }

    /// Put claimed execution `id` in `line`: executions of a line run one at a time, in id order.
    pub(crate) fn join_line(&self, line: &str, id: &str) {
        self.lines.lock().unwrap().entry(line.to_string()).or_default().insert(id.to_string());
    }

    /// Wait until `id` is the oldest execution of `line` still to run.
    pub(crate) async fn wait_turn(&self, line: &str, id: &str) {
        loop {
            let moved = self.line_moved.notified();
            let first = self.lines.lock().unwrap().get(line).and_then(|ids| ids.first().cloned());
            if first.is_none_or(|first| first == id) {
                return;
            }
            moved.await;
        }
    }
}
