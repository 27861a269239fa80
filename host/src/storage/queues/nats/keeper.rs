//! Keeping a lease for the visibility asked, with one ack deadline per consumer: the node that
//! received a message sends progress while more than [`ACK_WAIT`] of its lease is left, and gives
//! the message back (a nak, so it is handed out again at once) when the lease runs out. Whoever
//! removes the lease from [`Local::held`] first, its keeper or a `receive` of this node, gives
//! it back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use tokio::task::AbortHandle;

use super::opened::{Delivery, Opened};
use super::{ACK_WAIT, Local, Seen};
use crate::clock::now_ms;
use crate::storage::queues::QueueError;

/// A lease this node handed out.
pub(super) struct Held {
    /// The delivery leased.
    pub delivery: Delivery,
    /// When the lease runs out, in ms since the Unix epoch.
    pub deadline_ms: u64,
    /// The task keeping it.
    pub task: AbortHandle,
}

/// Keep `delivery` leased until `deadline_ms`, then give it back.
pub(super) fn keep(opened: &Opened, local: &Arc<Mutex<Local>>, delivery: Delivery, deadline_ms: u64) {
    let sequence = delivery.sequence;
    let (opened_, local_, reply) = (opened.clone(), local.clone(), delivery.reply.clone());
    let task = tokio::spawn(async move {
        loop {
            let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
            if left <= ACK_WAIT {
                tokio::time::sleep(left).await;
                break;
            }
            tokio::time::sleep((left - ACK_WAIT).min(ACK_WAIT / 2)).await;
            if let Err(error) = opened_.progress(&reply).await {
                tracing::warn!(%error, "cannot keep a lease: the message may be handed out again early");
            }
        }
        let held = local_.lock().unwrap().held.remove(&sequence);
        if let Some(held) = held {
            give_back(&opened_, &local_, &held.delivery).await;
        }
    });
    let held = Held { delivery, deadline_ms, task: task.abort_handle() };
    local.lock().unwrap().held.insert(sequence, held);
}

/// Give back the leases of this node that ran out, before a receive (their keepers may not
/// have run yet).
pub(super) async fn give_back_expired(opened: &Opened, local: &Arc<Mutex<Local>>) {
    let expired: Vec<Held> = {
        let mut local = local.lock().unwrap();
        let now = now_ms();
        let due: Vec<u64> = local.held.iter().filter(|(_, held)| held.deadline_ms <= now).map(|(&s, _)| s).collect();
        due.into_iter().filter_map(|sequence| local.held.remove(&sequence)).collect()
    };
    for held in expired {
        held.task.abort();
        give_back(opened, local, &held.delivery).await;
    }
}

/// Hand a leased message out again now, if the lease is still its last delivery.
pub(super) async fn give_back(opened: &Opened, local: &Mutex<Local>, delivery: &Delivery) {
    let given = async {
        opened.current(delivery, &delivery.reply).await?;
        opened.answer(&delivery.reply, AckKind::Nak(None)).await
    };
    match given.await {
        Ok(()) => {
            let now = now_ms();
            local.lock().unwrap().saw(delivery.sequence, now, Seen::GivenBack);
            opened.announce(delivery.sequence, now, Seen::GivenBack).await;
        }
        // Settled on another node, or handed out again: no longer this node's to show.
        Err(QueueError::LeaseExpired(_)) => {
            let mut local = local.lock().unwrap();
            if local.visible.get(&delivery.sequence).is_some_and(|(_, how)| *how == Seen::Leased) {
                local.visible.remove(&delivery.sequence);
            }
        }
        Err(error) => tracing::warn!(%error, "cannot give back an expired lease: the server will after its ack wait"),
    }
}
