//! One call: a fresh Store and instance from the function's `InstancePre`, with limits, captured
//! output and a named reason for every way a call can fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{InstancePre, Linker, ResourceTable, Val};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use crate::capabilities::http::{Http, Outbound};
use crate::capabilities::memory::Limiter;
use crate::capabilities::{CallParts, Contexts, Parts};
use crate::manifest::{Limits, RecordMode};
use crate::metrics::Metrics;
use crate::storage::datasets::Cause;
use crate::storage::executions::{Cancel, Executions};

pub use crate::outcome::{CallError, Logs};

/// How often the engine's ticker advances the epoch; call timeouts are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The per-call data held by the wasmtime Store: WASI, the resource table and memory accounting
/// shared by every interface, and the function's capability contexts, lent to each capability's
/// view ([`CallParts`]).
pub struct CallState {
    /// Built at the first WASI host call: most calls make none, and building it (clocks, random
    /// generators, boxed streams) is a measurable part of a fresh call.
    wasi: Option<WasiCtx>,
    /// Built at the first `wasi:http` host call, for the same reason.
    http: Option<Http>,
    stdout: Capture,
    stderr: Capture,
    table: ResourceTable,
    limiter: Limiter,
    caps: Arc<Contexts>,
    /// Set when a trigger started this call: changes it makes carry it.
    cause: Option<Cause>,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (stdout, stderr) = (&self.stdout, &self.stderr);
        let ctx = self
            .wasi
            .get_or_insert_with(|| WasiCtxBuilder::new().stdout(stdout.clone()).stderr(stderr.clone()).build());
        WasiCtxView { ctx, table: &mut self.table }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let (caps, stderr) = (&self.caps, &self.stderr);
        let http = self.http.get_or_insert_with(|| Http::new(caps.get::<Outbound>(), notes_to(stderr)));
        http.view(&mut self.table)
    }
}

impl CallParts for CallState {
    fn parts(&mut self) -> Parts<'_> {
        Parts { contexts: &self.caps, table: &mut self.table, memory: &mut self.limiter, cause: self.cause.as_ref() }
    }
}

/// Link WASI p2 and `wasi:http` (everything denied unless granted: no dirs, env, args or
/// network) and our capability interfaces.
pub fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    crate::capabilities::add_to_linker(linker)
}

/// stdout or stderr of one call: keeps up to `cap` bytes, counts and drops the rest, and never
/// fails the guest's write.
#[derive(Clone)]
struct Capture {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl Capture {
    fn new(cap: u64) -> Capture {
        Capture {
            inner: Arc::new(Mutex::new(Captured {
                cap: usize::try_from(cap).unwrap_or(usize::MAX),
                ..Captured::default()
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut c = self.inner.lock().unwrap();
        let room = c.cap.saturating_sub(c.bytes.len());
        let kept = room.min(data.len());
        c.bytes.extend_from_slice(&data[..kept]);
        c.dropped += (data.len() - kept) as u64;
    }

    fn peek(&self) -> (String, u64) {
        let c = self.inner.lock().unwrap();
        (String::from_utf8_lossy(&c.bytes).into_owned(), c.dropped)
    }

    fn take(&self) -> (String, u64) {
        let mut c = self.inner.lock().unwrap();
        (String::from_utf8_lossy(&std::mem::take(&mut c.bytes)).into_owned(), std::mem::take(&mut c.dropped))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// One `[function.NAME]` of a loaded app: its component, limits and grants, and what all its
/// calls share (the `concurrency` permits and the pause switch).
pub struct Guest {
    pub(crate) app: String,
    pub(crate) name: String,
    pub(crate) pre: InstancePre<CallState>,
    pub(crate) limits: Limits,
    pub(crate) caps: Arc<Contexts>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) executions: Arc<Executions>,
    /// Which direct calls get an execution record.
    pub(crate) record: RecordMode,
    permits: Arc<Semaphore>,
    paused: AtomicBool,
}

impl Guest {
    pub(crate) fn new(
        app: &str,
        name: &str,
        pre: InstancePre<CallState>,
        limits: Limits,
        caps: Arc<Contexts>,
        metrics: Arc<Metrics>,
        executions: Arc<Executions>,
    ) -> Guest {
        Guest {
            app: app.to_string(),
            name: name.to_string(),
            pre,
            limits,
            caps,
            metrics,
            executions,
            record: RecordMode::All,
            permits: Arc::new(Semaphore::new(limits.concurrency as usize)),
            paused: AtomicBool::new(false),
        }
    }

    /// Record direct calls as `record` says (default: all of them).
    pub(crate) fn with_record(self, record: RecordMode) -> Guest {
        Guest { record, ..self }
    }

    /// The manifest function name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether an operator paused it.
    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Pause (calls fail with [`CallError::Paused`] without an instance) or resume it.
    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Wait for one of the `concurrency` slots; refused at once while paused.
    pub(crate) async fn admit(&self) -> Result<OwnedSemaphorePermit, CallError> {
        if self.paused() {
            return Err(CallError::Paused { function: self.name.clone() });
        }
        Ok(self.permits.clone().acquire_owned().await.expect("function semaphore is never closed"))
    }

    /// A free `concurrency` slot now, if there is one and the function is not paused.
    pub(crate) fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        if self.paused() {
            return None;
        }
        self.permits.clone().try_acquire_owned().ok()
    }
}

/// Everything needed to run calls of one export: shared, immutable, cheap to clone.
pub struct CallTarget {
    pub(crate) guest: Arc<Guest>,
    pub(crate) export: wasmtime::component::ComponentExportIndex,
    pub(crate) result_count: usize,
}

/// A fresh Store for one call: the function's limits, captured output, nothing else granted.
pub(crate) struct Sandbox {
    pub(crate) store: Store<CallState>,
    limits: Limits,
    deadline: Instant,
    cancel: Option<Arc<Cancel>>,
}

/// The call's notes about its outbound requests, as lines of its stderr.
fn notes_to(stderr: &Capture) -> crate::capabilities::http::Notes {
    let stderr = stderr.clone();
    Arc::new(move |note: &str| stderr.push(format!("[host] {note}\n").as_bytes()))
}

/// Every epoch tick, a running guest yields to the async executor (so a spinning guest cannot
/// hold a worker thread that other calls, timers and store acknowledgements need) and is
/// interrupted once its time is up or once `cancel` asks it to stop.
fn set_deadline(store: &mut Store<CallState>, deadline: Instant, cancel: Option<Arc<Cancel>>) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        let stop = Instant::now() >= deadline || cancel.as_ref().is_some_and(|c| c.requested());
        Ok(if stop { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
    });
}

impl Sandbox {
    pub(crate) fn new(engine: &Engine, limits: Limits, caps: Arc<Contexts>) -> Sandbox {
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.table_entries as usize);
        let state = CallState {
            wasi: None,
            http: None,
            stdout: Capture::new(limits.output),
            stderr: Capture::new(limits.output),
            table,
            limiter: Limiter::new(limits.memory, limits.table_entries as usize),
            caps,
            cause: None,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        let deadline = Instant::now() + limits.timeout;
        set_deadline(&mut store, deadline, None);
        Sandbox { store, limits, deadline, cancel: None }
    }

    /// Let `cancel` stop the call: it then fails with [`CallError::Cancelled`].
    pub(crate) fn cancel_with(&mut self, cancel: Arc<Cancel>) {
        set_deadline(&mut self.store, self.deadline, Some(cancel.clone()));
        self.cancel = Some(cancel);
    }

    /// Run `work` (instantiate and call) within the function's `timeout`, naming the reason of a
    /// failure. The epoch deadline stops guest code; the timer here also stops a guest parked in
    /// an awaiting host call (a sleep, a poll) where epochs are not checked. It fires a little
    /// later so the epoch, which leaves the store intact, normally wins. A cancellation stops the
    /// call the same two ways.
    pub(crate) async fn run<R>(
        &mut self,
        work: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let limit = self.limits.timeout;
        let cancel = self.cancel.clone();
        let cancelled = async {
            match &cancel {
                Some(cancel) => cancel.wait().await,
                None => std::future::pending().await,
            }
            tokio::time::sleep(EPOCH_TICK * 4).await;
        };
        let work = before(self.deadline + EPOCH_TICK * 4, work(&mut self.store));
        let outcome = tokio::select! {
            outcome = work => outcome,
            () = cancelled => return Err(CallError::Cancelled),
        };
        match outcome {
            None => Err(CallError::Timeout { limit }),
            Some(Ok(value)) => Ok(value),
            Some(Err(_)) if cancel.is_some_and(|c| c.requested()) => Err(CallError::Cancelled),
            Some(Err(error)) => Err(classify(&error, self.store.data().limiter.denied_memory(), self.limits)),
        }
    }

    /// A live view of what the guest prints.
    pub(crate) fn output(&self) -> LiveOutput {
        let state = self.store.data();
        LiveOutput { stdout: state.stdout.clone(), stderr: state.stderr.clone() }
    }

    /// What the guest printed.
    pub(crate) fn logs(&self) -> Logs {
        let state = self.store.data();
        let (stdout, dropped_out) = state.stdout.take();
        let (stderr, dropped_err) = state.stderr.take();
        Logs { stdout, stderr, dropped: dropped_out + dropped_err }
    }
}

/// What `work` returns, or `None` once `deadline` has passed. Like `tokio::time::timeout`, but
/// the timer is armed only when `work` does not finish at its first poll: most calls finish there,
/// and arming and disarming a tokio timer is a measurable part of a fresh call.
async fn before<F: Future>(deadline: Instant, work: F) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if timer.is_none() {
            timer.set(Some(tokio::time::sleep_until(deadline.into())));
        }
        let sleep = timer.as_mut().as_pin_mut().expect("armed above");
        sleep.poll(cx).map(|()| None)
    })
    .await
}

/// The output of a running call, readable while it runs.
#[derive(Clone)]
pub(crate) struct LiveOutput {
    stdout: Capture,
    stderr: Capture,
}

impl LiveOutput {
    /// What was printed so far.
    pub(crate) fn snapshot(&self) -> Logs {
        let (stdout, dropped_out) = self.stdout.peek();
        let (stderr, dropped_err) = self.stderr.peek();
        Logs { stdout, stderr, dropped: dropped_out + dropped_err }
    }
}

/// Run one call in a fresh instance. Returns the raw results (or why it failed) and the output.
/// With `execution`, the output can be read live through [`Executions::logs`] while it runs, and
/// [`Executions::cancel`] stops it.
pub async fn run(
    target: &CallTarget,
    params: &[Val],
    cause: Option<Cause>,
    execution: Option<(&str, u32)>,
) -> (Result<Vec<Val>, CallError>, Logs) {
    let guest = &target.guest;
    let mut sandbox = Sandbox::new(guest.pre.engine(), guest.limits, guest.caps.clone());
    sandbox.store.data_mut().cause = cause;
    if let Some(cancel) = execution.and_then(|(id, _)| guest.executions.cancel_handle(id)) {
        sandbox.cancel_with(cancel);
    }
    let _live = execution.map(|(id, attempt)| {
        let output = sandbox.output();
        guest.executions.watch(id, attempt, Box::new(move || output.snapshot()))
    });
    let result = sandbox
        .run(async |store| {
            let instance = guest.pre.instantiate_async(&mut *store).await?;
            let func = instance
                .get_func(&mut *store, target.export)
                .ok_or_else(|| wasmtime::format_err!("export not found in instance"))?;
            let mut results = vec![Val::Bool(false); target.result_count];
            func.call_async(&mut *store, params, &mut results).await?;
            Ok(results)
        })
        .await;
    (result, sandbox.logs())
}

fn classify(error: &wasmtime::Error, denied_memory: Option<u64>, limits: Limits) -> CallError {
    match (error.downcast_ref::<Trap>(), denied_memory) {
        (Some(Trap::Interrupt), _) => CallError::Timeout { limit: limits.timeout },
        (Some(Trap::StackOverflow), _) => CallError::StackOverflow,
        // A denied memory growth usually ends in an allocator abort: report the cause.
        (_, Some(requested)) => CallError::MemoryLimit { limit: limits.memory, requested },
        (Some(_), None) => CallError::Trap { message: format!("{error:?}") },
        (None, None) => {
            tracing::debug!(error = ?error, "call failed in the host");
            CallError::Host { message: format!("{error:#}") }
        }
    }
}
