//! The switch that cancels one running execution from outside its call.

use std::sync::atomic::{AtomicBool, Ordering};

/// A request to stop one running call: checked at every epoch tick, and it also wakes a call
/// parked in a host call (a sleep, a poll), where epochs are not checked.
#[derive(Debug, Default)]
pub(crate) struct Cancel {
    requested: AtomicBool,
    wake: tokio::sync::Notify,
}

impl Cancel {
    /// Ask the call to stop.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Whether a stop was asked for.
    pub(crate) fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// Resolves once a stop is asked for.
    pub(crate) async fn wait(&self) {
        let woken = self.wake.notified();
        if !self.requested() {
            woken.await;
        }
    }
}
