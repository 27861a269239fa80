//! `host logs`: an execution's output.

use std::io::Write;
use std::process::ExitCode;

use super::{Context, RemoteArgs};

/// Print an execution's logs (stdout and stderr of each attempt).
#[derive(clap::Args)]
pub struct Logs {
    /// The execution id.
    id: String,
    /// Keep printing until the execution finishes (needs `--remote`).
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

impl Logs {
    /// Run the command: the logs on `out`.
    pub async fn run(self, context: &Context, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        let target = self.remote.open(context).await?;
        match self.follow {
            true => target.follow_logs(&self.id, out).await?,
            false => out.write_all(&target.logs(&self.id).await?)?,
        }
        Ok(ExitCode::SUCCESS)
    }
}
