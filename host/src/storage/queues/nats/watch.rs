//! How a node learns of messages that other nodes made visible, to wake its queue trigger:
//! every node announces the messages it sends or gives back on a core NATS subject of the queue
//! (outside the stream), and every node's watcher notes the announcements of the others. An
//! announcement is delivered at most once, and the server hands a message out again by itself
//! when the node that leased it died, so the watcher also asks the consumer every [`RECHECK`]
//! whether it holds messages that this node does not know of.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::opened::Opened;
use super::{Local, Seen};
use crate::clock::now_ms;
use crate::storage::queues::QueueError;

/// How often the watcher asks the consumer what it holds.
const RECHECK: Duration = Duration::from_secs(10);

/// Watch the announcements of other nodes and the consumer, noting what becomes visible in
/// `local` and waking `changed`; the task stops when aborted.
pub(super) async fn start(
    opened: Opened,
    local: Arc<Mutex<Local>>,
    changed: Arc<Notify>,
) -> Result<AbortHandle, QueueError> {
    let mut announcements = opened.announcements().await?;
    let task = tokio::spawn(async move {
        let mut recheck = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK, RECHECK);
        loop {
            tokio::select! {
                announcement = announcements.next() => {
                    let Some(announcement) = announcement else { return };
                    let text = String::from_utf8_lossy(&announcement.payload);
                    match Opened::announced_message(&text) {
                        Some((node, sequence, at, how)) if node != opened.node() => {
                            local.lock().unwrap().saw(sequence, at, how);
                            changed.notify_one();
                        }
                        _ => {}
                    }
                }
                _ = recheck.tick() => {
                    let info = match opened.consumer_info(0).await {
                        Ok(info) => info,
                        Err(error) => {
                            tracing::warn!(%error, "cannot check a queue for messages");
                            continue;
                        }
                    };
                    let mut local = local.lock().unwrap();
                    let known = local.held.len() + local.visible.values().filter(|(_, how)| *how != Seen::Leased).count();
                    if info.num_pending > 0 || info.num_ack_pending > known {
                        // Sequence 0 is no message's: a reminder to look, dropped by the next receive.
                        local.saw(0, now_ms(), Seen::Sent);
                        changed.notify_one();
                    }
                }
            }
        }
    });
    Ok(task.abort_handle())
}
