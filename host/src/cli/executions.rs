//! `host executions`: list execution records, or cancel one.

use std::io::Write;
use std::process::ExitCode;

use serde_json::Value;

use super::table::{Align, Table};
use super::target::ExecutionQuery;
use super::{Context, RemoteArgs};

/// List execution records, newest first: every call, over the CLI, REST, HTTP routes or
/// triggers; or cancel one (`host executions cancel ID`).
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Executions {
    #[command(subcommand)]
    action: Option<ExecutionsCommand>,
    /// Only this app.
    #[arg(long)]
    app: Option<String>,
    /// Only this function (`function.export`).
    #[arg(long)]
    function: Option<String>,
    /// Only this trigger (`call`, `http` or an item trigger's name).
    #[arg(long)]
    trigger: Option<String>,
    /// Only this status: queued, running, succeeded, failed, timed-out, cancelled.
    #[arg(long)]
    status: Option<String>,
    /// How many.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Print JSON records instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Subcommand)]
enum ExecutionsCommand {
    /// Cancel a queued or running execution: a queued one never starts, a running one is
    /// interrupted; both end `cancelled`. Prints the record. Fails for a finished one.
    Cancel {
        /// The execution id.
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

impl Executions {
    /// Run the command: the records (or the cancelled one) on `out`.
    pub async fn run(self, context: &Context, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        if let Some(ExecutionsCommand::Cancel { id, remote }) = self.action {
            let record = remote.open(context).await?.cancel(&id).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&record)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        let query = ExecutionQuery {
            app: self.app,
            function: self.function,
            trigger: self.trigger,
            status: self.status,
            limit: self.limit,
        };
        let records = self.remote.open(context).await?.executions(query).await?;
        if self.json {
            for record in &records {
                writeln!(out, "{record}")?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        let text = |value: &Value| value.as_str().unwrap_or("").to_string();
        let mut table = Table::new(&[
            ("ID", Align::Left),
            ("STATUS", Align::Left),
            ("FUNCTION", Align::Left),
            ("TRIGGER", Align::Left),
            ("ATTEMPT", Align::Right),
            ("MS", Align::Right),
        ]);
        for r in &records {
            let ms = r["finished_ms"].as_u64().zip(r["started_ms"].as_u64()).map(|(f, s)| (f - s).to_string());
            table.row([
                text(&r["id"]),
                text(&r["status"]),
                format!("{}/{}", text(&r["app"]), text(&r["function"])),
                text(&r["trigger"]),
                format!("{}/{}", r["attempt"], r["max_attempts"]),
                ms.unwrap_or_default(),
            ]);
        }
        table.write(out)?;
        Ok(ExitCode::SUCCESS)
    }
}
