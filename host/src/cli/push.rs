//! `host push`: an app's bundle to an OCI registry, for `host deploy REGISTRY/REPO:TAG`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use host::deploy::Bundle;
use host::deploy::oci::{self, OciError, RegistryAuth};

/// Pack an app into one bundle (manifest, components, model files, site), as `host deploy`
/// does, and push it to an OCI registry as an artifact: one layer of type
/// `application/vnd.host.bundle.v1.tar`. Registries on loopback are spoken to in plain HTTP,
/// others in HTTPS only. Credentials: `HOST_REGISTRY_USER` and `HOST_REGISTRY_PASSWORD`
/// (HTTP basic); without them, anonymous. The app's build commands run first (skipped while up
/// to date).
#[derive(clap::Args)]
#[command(after_help = "Example:\n  host push localhost:5000/apps/hello:v1 -f examples/hello/host.toml")]
pub struct Push {
    /// Where to push: `REGISTRY/REPO:TAG`.
    reference: String,
    /// The app manifest.
    #[arg(short = 'f', long = "file", default_value = "host.toml")]
    manifest: PathBuf,
    /// Do not run the build commands.
    #[arg(long)]
    no_build: bool,
}

impl Push {
    /// Run the command: one line on `out` with the pushed reference and its digest.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        // A bad reference is refused before the build and the pack.
        if let Err(error) = oci::parse(&self.reference) {
            return Ok(failed(error));
        }
        let auth = registry_auth()?;
        if !self.no_build {
            super::build_app(&self.manifest)?;
        }
        let bundle = Bundle::pack(&self.manifest)?;
        match oci::push(&self.reference, bundle.app(), bundle.bytes(), &auth).await {
            Ok(digest) => {
                let (reference, app, size) = (&self.reference, bundle.app(), bundle.bytes().len());
                writeln!(out, "{reference}@{digest} ({app}, bundle {}, {size} bytes)", bundle.digest())?;
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => Ok(failed(error)),
        }
    }
}

/// Print `error`; exit status 2 for a bad reference (bad input), else 1.
fn failed(error: OciError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(if matches!(error, OciError::BadReference { .. }) { 2 } else { 1 })
}

/// The registry credentials of `HOST_REGISTRY_USER` and `HOST_REGISTRY_PASSWORD`: both or
/// neither (anonymous).
pub fn registry_auth() -> anyhow::Result<RegistryAuth> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    match (var("HOST_REGISTRY_USER"), var("HOST_REGISTRY_PASSWORD")) {
        (Some(user), Some(password)) => Ok(RegistryAuth::Basic { user, password }),
        (None, None) => Ok(RegistryAuth::Anonymous),
        _ => bail!("set both HOST_REGISTRY_USER and HOST_REGISTRY_PASSWORD, or neither"),
    }
}
