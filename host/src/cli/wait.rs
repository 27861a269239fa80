//! `host wait`: the result of a job.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::{Context, RemoteArgs};

/// Wait for an execution (a job started with `--async` or `--enqueue`) to finish and print
/// its result. Exit status 0 if it succeeded, 1 if not (or not finished in time).
#[derive(clap::Args)]
pub struct Wait {
    /// The execution id.
    id: String,
    /// Wait at most this long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    remote: RemoteArgs,
}

impl Wait {
    /// Run the command: the result on `out`, why there is none on stderr.
    pub async fn run(self, context: &Context, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        let Wait { id, timeout, remote } = self;
        let record = remote.open(context).await?.wait(&id, timeout).await?;
        Ok(match record["status"].as_str() {
            Some("succeeded") => {
                writeln!(out, "{}", serde_json::to_string_pretty(&record["output"])?)?;
                ExitCode::SUCCESS
            }
            Some(status @ ("queued" | "running")) => {
                eprintln!("error: execution {id} is still {status} after {}", humantime::format_duration(timeout));
                ExitCode::from(1)
            }
            status => {
                let message = record["error"]["message"].as_str().unwrap_or("no result");
                eprintln!("error: execution {id} {}: {message}", status.unwrap_or("ended"));
                ExitCode::from(1)
            }
        })
    }
}
