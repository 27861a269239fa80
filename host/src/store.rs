//! The embedded store: one sled database per host, one tree per (kind, app, resource), and group
//! commit so that an acknowledged write is on disk without paying one `fsync` per write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::watch;

/// The sled database plus the thread that makes writes durable in groups.
pub struct Store {
    db: sled::Db,
    /// Woken when an item event is written, so that triggers see it at once.
    pub(crate) new_events: tokio::sync::Notify,
    commits: Arc<GroupCommit>,
    flushed: watch::Receiver<Flushed>,
    flusher: Option<std::thread::JoinHandle<()>>,
    /// One async lock per name, see [`Store::lock`].
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// State shared between writers and the flusher thread.
struct GroupCommit {
    /// Highest ticket handed out, and whether the store is closing.
    state: Mutex<(u64, bool)>,
    wake: Condvar,
    /// `fsync`s done so far.
    flushes: AtomicU64,
    /// Writes that waited for a flush (`durable` calls).
    waits: AtomicU64,
    /// Unacknowledged writes are waiting for a flush.
    dirty: std::sync::atomic::AtomicBool,
}

/// The longest time a write made through [`Store::flush_soon`] waits for the disk.
pub const LAZY_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a flush waits at most for more writes to join it: a sled flush costs 100-300 µs of
/// CPU here whatever it carries, so a few writes per flush left the cores busy flushing.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// What the flusher has finished: every ticket up to `upto` was flushed; those up to `ok_upto`
/// are durable; `error` says why a flush failed (kept: see [`Store::failure`]).
#[derive(Clone, Debug, Default)]
struct Flushed {
    upto: u64,
    ok_upto: u64,
    error: Option<Arc<str>>,
}

/// Counters for the benchmark and for metrics: how many flushes served how many writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// `fsync`s done.
    pub flushes: u64,
    /// Durable writes asked for (each waits for a flush).
    pub tickets: u64,
}

impl Store {
    /// Open (or create) the database under `path`.
    pub fn open(path: &std::path::Path) -> Result<Store, sled::Error> {
        let db = sled::Config::new().path(path).flush_every_ms(None).open()?;
        let commits = Arc::new(GroupCommit {
            state: Mutex::new((0, false)),
            wake: Condvar::new(),
            flushes: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            dirty: Default::default(),
        });
        let (tx, flushed) = watch::channel(Flushed::default());
        let (thread_db, thread_commits) = (db.clone(), commits.clone());
        let flusher = std::thread::Builder::new()
            .name("store-flusher".into())
            .spawn(move || flusher(thread_db, thread_commits, tx))
            .expect("spawn store flusher thread");
        Ok(Store {
            db,
            new_events: tokio::sync::Notify::new(),
            commits,
            flushed,
            flusher: Some(flusher),
            locks: Mutex::default(),
        })
    }

    /// The tree holding key-value store `store` of `app`.
    pub fn kv_tree(&self, app: &str, store: &str) -> Result<sled::Tree, sled::Error> {
        self.db.open_tree(format!("kv/{app}/{store}"))
    }

    /// A tree by its full name (`items/APP/DATASET`, `executions`, ...).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, sled::Error> {
        self.db.open_tree(name)
    }

    /// The lock that serialises changes of `name` (e.g. `items/APP/DATASET`): every caller on this
    /// store gets the same lock for the same name.
    pub(crate) fn lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().unwrap().entry(name.to_string()).or_default().clone()
    }

    /// A new unique id, increasing within this database (also across restarts).
    pub fn next_id(&self) -> Result<u64, sled::Error> {
        self.db.generate_id()
    }

    /// Note writes that need no acknowledgement: they reach the disk with the next group commit,
    /// or at most [`LAZY_FLUSH`] later.
    pub fn flush_soon(&self) {
        self.commits.dirty.store(true, Ordering::Relaxed);
    }

    /// Start a flush of every write made before this call without waiting for it: the write
    /// reaches the disk within one flush, and a later [`Store::durable`] shares that flush.
    pub fn commit_soon(&self) {
        self.ticket();
    }

    fn ticket(&self) -> u64 {
        let ticket = {
            let mut state = self.commits.state.lock().unwrap();
            state.0 += 1;
            state.0
        };
        self.commits.wake.notify_one();
        ticket
    }

    /// Wait until every write made before this call is on disk. Concurrent callers share flushes.
    pub async fn durable(&self) -> Result<(), String> {
        self.commits.waits.fetch_add(1, Ordering::Relaxed);
        let ticket = self.ticket();
        let mut flushed = self.flushed.clone();
        let done = flushed.wait_for(|f| f.upto >= ticket).await.map_err(|_| "store is closed".to_string())?;
        if done.ok_upto >= ticket {
            return Ok(());
        }
        Err(format!("write not durable: {}", done.error.as_deref().unwrap_or("flush failed")))
    }

    /// Flushes done and writes acknowledged so far.
    pub fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush().map(drop)
    }

    /// Why a flush failed, once one did. sled refuses every write after one failed (a full disk,
    /// say) until the database is opened again, so this stays set until the host restarts.
    pub fn failure(&self) -> Option<Arc<str>> {
        self.flushed.borrow().error.clone()
    }

    /// Group-commit counters.
    pub fn commit_stats(&self) -> CommitStats {
        let tickets = self.commits.waits.load(Ordering::Relaxed);
        CommitStats { flushes: self.commits.flushes.load(Ordering::Relaxed), tickets }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.commits.state.lock().unwrap().1 = true;
        self.commits.wake.notify_one();
        // The flusher makes the final flush and exits; it holds a handle on the database, so wait
        // for it: the database (and its file lock) is released when this returns, and a new
        // `Store` can open it at once. The final flush is not made here: a sled flush on the
        // thread that just wrote (e.g. the host's last records) was seen to hang, holding sled's
        // process-wide lock, when several databases were open in one process.
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

/// Flush whenever tickets are waiting; one flush covers every ticket handed out before it began.
/// On shutdown, one last flush covers everything written.
fn flusher(db: sled::Db, commits: Arc<GroupCommit>, done: watch::Sender<Flushed>) {
    let mut upto = 0;
    // How many writes the last flush covered.
    let mut covered = 0;
    loop {
        let target = {
            let mut state = commits.state.lock().unwrap();
            while state.0 == upto && !state.1 {
                let (next, timeout) = commits.wake.wait_timeout(state, LAZY_FLUSH).unwrap();
                state = next;
                if timeout.timed_out() && commits.dirty.load(Ordering::Relaxed) {
                    break;
                }
            }
            if state.1 && state.0 == upto {
                if let Err(error) = db.flush() {
                    tracing::error!(%error, "final flush of the store failed");
                }
                return;
            }
            // The writers the last flush woke tend to write again soon: wait (at most GATHER)
            // until as many writes arrived as it covered. A lone writer never waits.
            let deadline = std::time::Instant::now() + GATHER;
            while !state.1 && state.0 - upto < covered {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                state = commits.wake.wait_timeout(state, left).unwrap().0;
            }
            state.0
        };
        commits.dirty.store(false, Ordering::Relaxed);
        let flushed = db.flush();
        commits.flushes.fetch_add(1, Ordering::Relaxed);
        covered = target - upto;
        upto = target;
        done.send_modify(|f| {
            f.upto = upto;
            match flushed {
                Ok(_) => f.ok_upto = upto,
                Err(e) => {
                    tracing::error!(error = %e, "store flush failed: writes fail until the host restarts");
                    f.error = Some(Arc::from(e.to_string()));
                }
            }
        });
    }
}
