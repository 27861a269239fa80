//! `host call`: one call of a function, in this process or on a server.

use std::io::Write;
use std::process::ExitCode;

use super::target;
use super::{AppArgs, Context, TokenArgs, read_json};

/// Call one exported function in a fresh sandboxed instance and print its JSON result.
///
/// Exit status: 0 on success, 1 when the call fails (guest error, trap, timeout, limit),
/// 2 for bad input (manifest, function name, arguments).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  host call -f examples/hello/host.toml hello.greet '{\"who\": {\"name\": \"Ada\", \"age\": 36}}'\n  host call -f examples/counter/host.toml counter.increment '[\"visits\", 1]'\n  echo '{\"key\": \"visits\"}' | host call -f examples/counter/host.toml counter.get -"
)]
pub struct Call {
    /// `FUNCTION.EXPORT` (e.g. `counter.increment`, `types.math.add`); just `FUNCTION` when it
    /// exports a single function.
    function: String,
    /// Arguments: a JSON object by parameter name or a JSON array in order; `-` reads stdin.
    /// Defaults to no arguments.
    args: Option<String>,
    #[command(flatten)]
    app: AppArgs,
    /// Call a running `host serve` at this URL instead (e.g. `http://127.0.0.1:8080`).
    /// FUNCTION may then be `APP/FUNCTION.EXPORT`; without `APP/` the server's apps are searched.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    /// Start the call as a job on the server and print its execution id at once; follow it
    /// with `host wait`, `host executions` and `host logs --follow`. Arguments may hold
    /// `{"$execution": "ID"}`: that execution's result, once it has one.
    #[arg(long = "async", requires = "remote")]
    start: bool,
    /// Like `--async`, but calls of the function started this way run one at a time, in order.
    #[arg(long, requires = "remote", conflicts_with = "start")]
    enqueue: bool,
    #[command(flatten)]
    token: TokenArgs,
}

impl Call {
    /// Run the command: the result on `out`, the guest's output and errors on stderr.
    pub async fn run(self, context: &Context, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        let args = read_json(self.args.as_deref())?;
        let target = target::open(context, self.remote, self.token, Some(&self.app)).await?;
        let result = if self.start || self.enqueue {
            target.start(&self.function, &args, self.enqueue).await?
        } else {
            let called = target.call(&self.function, &args).await?;
            eprint!("{}", called.logs);
            called.result
        };
        match result {
            Ok(value) => {
                writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(refusal) => Ok(refusal.report()),
        }
    }
}
