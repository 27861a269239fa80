//! `host map` and `host starmap`: many calls of one function, in this process or on a server,
//! with a progress bar on stderr.

use std::io::Write;
use std::process::ExitCode;

use serde_json::Value;

use super::target::{self, MapEvent};
use super::{AppArgs, Context, TokenArgs, read_json};

/// Call a function once per input, in parallel sandboxed instances (up to its `concurrency`),
/// with a progress bar; print one outcome per input, in input order: `{"ok": RESULT}` or
/// `{"err": {"code", "message"}}`. One failure does not stop the others.
///
/// INPUTS is a JSON list of values of the function's single parameter, or an object of
/// equally long lists by parameter name (zipped). Exit status 1 if any call failed.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  host map -f examples/remote-map/host.toml remote-map.square '[1, 2, 3]'\n  host map --remote http://127.0.0.1:8080 remote-map/remote-map.add '{\"a\": [1, 2], \"b\": [2, 5]}'"
)]
pub struct Map {
    #[command(flatten)]
    args: MapArgs,
}

/// Like `map`, but each input is a whole argument list (a JSON array in parameter order, or
/// an object by parameter name): INPUTS is a JSON list of them.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  host starmap -f examples/remote-map/host.toml remote-map.add '[[1, 2], [1, 3], [1, 4]]'"
)]
pub struct Starmap {
    #[command(flatten)]
    args: MapArgs,
}

/// What `map` and `starmap` run and on what.
#[derive(clap::Args)]
struct MapArgs {
    /// `FUNCTION.EXPORT` (with `--remote`, optionally `APP/FUNCTION.EXPORT`).
    function: String,
    /// The inputs as JSON; `-` reads stdin.
    inputs: String,
    #[command(flatten)]
    app: AppArgs,
    /// Run on a `host serve` at this URL instead.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    #[command(flatten)]
    token: TokenArgs,
}

impl Map {
    /// Run the command: the outcomes on `out`.
    pub async fn run(self, context: &Context, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        self.args.run(context, false, out).await
    }
}

impl Starmap {
    /// Run the command: the outcomes on `out`.
    pub async fn run(self, context: &Context, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        self.args.run(context, true, out).await
    }
}

impl MapArgs {
    async fn run(self, context: &Context, starmap: bool, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        let inputs = read_json(Some(&self.inputs))?;
        let mut outcomes: Vec<Value> = Vec::new();
        let progress = indicatif::ProgressBar::new(0).with_style(indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} calls, {per_sec}, ETA {eta} {msg}",
        )?);
        let target = target::open(context, self.remote, self.token, Some(&self.app)).await?;
        let mut on = |event| match event {
            MapEvent::Total(count) => progress.set_length(count as u64),
            MapEvent::Outcome(index, outcome) => {
                if outcomes.len() <= index {
                    outcomes.resize(index + 1, Value::Null);
                }
                if outcome.get("err").is_some() {
                    let failed = outcomes.iter().filter(|o| o.get("err").is_some()).count() + 1;
                    progress.set_message(format!("({failed} failed)"));
                }
                outcomes[index] = outcome;
                progress.inc(1);
            }
        };
        if let Err(refusal) = target.map(&self.function, starmap, inputs, &mut on).await? {
            progress.abandon();
            return Ok(refusal.report());
        }
        progress.finish();
        let failed = outcomes.iter().filter(|o| o.get("err").is_some()).count();
        writeln!(out, "{}", serde_json::to_string_pretty(&outcomes)?)?;
        Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
    }
}
