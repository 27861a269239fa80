//! Where a command works: the local data dir ([`local::Local`]) or a running `host serve` (the
//! REST [`host::client::Client`]). Each command is written once over [`Target`]; `--remote`
//! picks the implementation.

mod local;
mod remote;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{AppArgs, Context, RemoteArgs, TokenArgs};

/// The operations the commands run on the data dir or on a server. Errors are the command's
/// errors (`error: ...`, exit status 2 for bad input, else 1); a [`Refusal`] is a call's own
/// failure, which the command reports itself.
#[async_trait(?Send)]
pub trait Target {
    /// Call `function` (`FUNCTION.EXPORT`; remotely also `APP/FUNCTION.EXPORT`) with `args`.
    async fn call(&self, function: &str, args: &Value) -> anyhow::Result<Called>;
    /// Start `function` as a job (one at a time, in order, when `enqueue`): its queued record.
    async fn start(&self, function: &str, args: &Value, enqueue: bool) -> CallResult<Value>;
    /// Call `function` once per input (`starmap`: once per argument list), telling `on` the
    /// number of calls and then each outcome (`{"ok": ...}` or `{"err": ...}`) as it ends.
    async fn map(&self, function: &str, starmap: bool, inputs: Value, on: &mut dyn FnMut(MapEvent)) -> CallResult<()>;
    /// Execution records, newest first.
    async fn executions(&self, query: ExecutionQuery) -> anyhow::Result<Vec<Value>>;
    /// The execution's record once it is final, or the last one seen after `timeout`.
    async fn wait(&self, id: &str, timeout: Duration) -> anyhow::Result<Value>;
    /// Cancel a queued or running execution; its record.
    async fn cancel(&self, id: &str) -> anyhow::Result<Value>;
    /// An execution's logs so far.
    async fn logs(&self, id: &str) -> anyhow::Result<Vec<u8>>;
    /// Write an execution's log lines to `out` as they come, until it ends.
    async fn follow_logs(&self, id: &str, out: &mut dyn Write) -> anyhow::Result<()>;
    /// Upload `data` as item `name` into folder `dir` of a dataset; the new item.
    async fn upload(&self, dataset: &Dataset<'_>, dir: &str, name: &str, data: Vec<u8>) -> anyhow::Result<Value>;
    /// One page of a dataset's items, `{"items": [...], "cursor": NEXT}`.
    async fn items(&self, dataset: &Dataset<'_>, query: &ItemQuery, cursor: Option<&str>) -> anyhow::Result<Value>;
    /// One item as JSON text.
    async fn item(&self, dataset: &Dataset<'_>, id: &str) -> anyhow::Result<Vec<u8>>;
    /// One item's bytes.
    async fn download(&self, dataset: &Dataset<'_>, id: &str) -> anyhow::Result<Vec<u8>>;
}

/// The target `--remote URL` names, or else the data dir, with `app` loaded when a command calls
/// functions.
pub async fn open(
    context: &Context,
    remote: Option<String>,
    token: TokenArgs,
    app: Option<&AppArgs>,
) -> anyhow::Result<Box<dyn Target>> {
    Ok(match remote {
        Some(url) => Box::new(host::client::Client::new(&url, token.resolve()?)?),
        None => Box::new(local::Local::open(context, app).await?),
    })
}

impl RemoteArgs {
    /// The target these arguments name, for commands that call no function.
    pub async fn open(self, context: &Context) -> anyhow::Result<Box<dyn Target>> {
        open(context, self.remote, self.token, None).await
    }
}

/// What a call gives: its value, or the [`Refusal`] the command reports; `Err` is the command's
/// own error.
pub type CallResult<T> = anyhow::Result<Result<T, Refusal>>;

/// A finished call: the guest's output (empty remotely), and its result or why it failed.
pub struct Called {
    /// The guest's stdout and stderr, printed on stderr.
    pub logs: String,
    /// The JSON result.
    pub result: Result<Value, Refusal>,
}

/// Why a call gave no result: reported as `error: MESSAGE`, with exit status 2 when the input was
/// at fault (arguments, function name), else 1.
pub struct Refusal {
    /// What went wrong.
    pub message: String,
    /// Whether the input was at fault.
    pub bad_input: bool,
}

impl Refusal {
    /// Print the message on stderr; the exit status.
    pub fn report(&self) -> ExitCode {
        eprintln!("error: {}", self.message);
        ExitCode::from(if self.bad_input { 2 } else { 1 })
    }
}

/// What [`Target::map`] tells its caller as it goes.
pub enum MapEvent {
    /// How many calls it makes.
    Total(usize),
    /// The outcome of the call at this input index.
    Outcome(usize, Value),
}

/// Which execution records to list.
pub struct ExecutionQuery {
    /// Only this app.
    pub app: Option<String>,
    /// Only this function (`function.export`).
    pub function: Option<String>,
    /// Only this trigger.
    pub trigger: Option<String>,
    /// Only this status, as written on the command line.
    pub status: Option<String>,
    /// How many at most.
    pub limit: usize,
}

/// A dataset of an app.
pub struct Dataset<'a> {
    /// The app.
    pub app: &'a str,
    /// The dataset's name.
    pub name: &'a str,
}

/// Which items to list.
pub struct ItemQuery {
    /// Only items in this folder or below.
    pub dir: Option<String>,
    /// Only this mimetype pattern.
    pub mimetype: Option<String>,
}

/// How many items one page of [`Target::items`] holds at most.
const ITEMS_PAGE: u32 = 1000;
