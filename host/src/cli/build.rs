//! `host build`: an app's build commands.

use std::path::PathBuf;
use std::process::ExitCode;

/// Run the build commands of a manifest (installing a missing Rust target first).
///
/// A function that lists `build-inputs` is skipped while its `source` is newer than all of them.
#[derive(clap::Args)]
pub struct Build {
    /// The app manifest.
    #[arg(short = 'f', long = "file", default_value = "host.toml")]
    manifest: PathBuf,
}

impl Build {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        super::build_app(&self.manifest)?;
        Ok(ExitCode::SUCCESS)
    }
}
