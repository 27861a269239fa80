//! `host deploy`, `host versions`, `host rollback`, `host undeploy`: apps on a running
//! `host serve`, changed without a restart.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use host::client::{Client, Reply};
use host::deploy::Bundle;

use super::TokenArgs;
use super::table::{Align, Table};

/// The server these commands change.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// The running `host serve`.
    #[arg(long, env = "HOST_REMOTE", value_name = "URL", default_value = "http://127.0.0.1:8080")]
    remote: String,
    /// The bearer token sent (it needs the `deploy` scope).
    #[command(flatten)]
    token: TokenArgs,
}

impl ServerArgs {
    fn client(self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.remote, self.token.resolve()?)?)
    }
}

/// The server's answer, or its error as the command's (exit status 2 for bad input).
fn answer<T>(reply: Reply<T>) -> anyhow::Result<Result<T, ExitCode>> {
    Ok(reply?.map_err(|failure| {
        eprintln!("error: {} ({}): {}", failure.code, failure.status, failure.message);
        ExitCode::from(if failure.bad_input { 2 } else { 1 })
    }))
}

/// `sha256:` and the first 12 hex digits.
fn short(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

/// Pack an app into one bundle (manifest, components, model files, site), or pull one pushed to
/// an OCI registry (`host push`), and deploy it to a running server as the app's next version.
/// The server checks and compiles it, then swaps it in: calls in flight finish on the old
/// version, new calls get the new one. A bundle that does not load changes nothing. The app's
/// build commands run first (skipped while up to date).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  host deploy -f examples/hello/host.toml --remote http://127.0.0.1:8080\n  host deploy 127.0.0.1:5000/apps/hello:v1   # HOST_REGISTRY_USER/HOST_REGISTRY_PASSWORD for a private registry"
)]
pub struct Deploy {
    /// A bundle in an OCI registry (`REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:...`) instead
    /// of packing the app of `-f`.
    #[arg(value_name = "REFERENCE", conflicts_with_all = ["manifest", "no_build"])]
    reference: Option<String>,
    /// The app manifest.
    #[arg(short = 'f', long = "file", default_value = "host.toml")]
    manifest: PathBuf,
    /// Do not run the build commands.
    #[arg(long)]
    no_build: bool,
    #[command(flatten)]
    server: ServerArgs,
}

impl Deploy {
    /// Run the command: one line on `out` naming the version now running.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        let started = Instant::now();
        let bundle = match &self.reference {
            Some(reference) => host::deploy::oci::pull_bundle(reference, &super::push::registry_auth()?).await?,
            None => {
                if !self.no_build {
                    super::build_app(&self.manifest)?;
                }
                Bundle::pack(&self.manifest)?
            }
        };
        let client = self.server.client()?;
        let deployed = match answer(client.deploy(bundle.app(), bundle.bytes().to_vec()).await)? {
            Ok(deployed) => deployed,
            Err(code) => return Ok(code),
        };
        let what = if deployed["unchanged"] == true { "already running" } else { "deployed" };
        writeln!(
            out,
            "{} version {} {what} ({}, {} bytes) in {} ms",
            bundle.app(),
            deployed["version"],
            short(bundle.digest()),
            bundle.bytes().len(),
            started.elapsed().as_millis()
        )?;
        Ok(ExitCode::SUCCESS)
    }
}

/// List the deployed versions of an app, newest first; `*` marks the one running.
#[derive(clap::Args)]
pub struct Versions {
    /// The app.
    app: String,
    /// Print the server's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

impl Versions {
    /// Run the command: the table on `out`.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        let listed = match answer(self.server.client()?.versions(&self.app).await)? {
            Ok(listed) => listed,
            Err(code) => return Ok(code),
        };
        if self.json {
            writeln!(out, "{listed:#}")?;
            return Ok(ExitCode::SUCCESS);
        }
        let mut table = Table::new(&[
            ("", Align::Left),
            ("version", Align::Right),
            ("digest", Align::Left),
            ("bytes", Align::Right),
            ("deployed", Align::Left),
        ]);
        for version in listed["versions"].as_array().into_iter().flatten() {
            let running = if version["version"] == listed["running"] { "*" } else { "" };
            let when = version["deployed_ms"]
                .as_i64()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            let digest = short(version["digest"].as_str().unwrap_or_default()).to_string();
            table.row([running.to_string(), version["version"].to_string(), digest, version["size"].to_string(), when]);
        }
        table.write(out)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Run an earlier deployed version of an app again (by default the one before the running one).
/// Like a deploy, it is compiled first and swapped in without a restart.
#[derive(clap::Args)]
pub struct Rollback {
    /// The app.
    app: String,
    /// The version to run (see `host versions APP`).
    version: Option<u64>,
    #[command(flatten)]
    server: ServerArgs,
}

impl Rollback {
    /// Run the command: one line on `out` naming the version now running.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        let version = match answer(self.server.client()?.rollback(&self.app, self.version).await)? {
            Ok(version) => version,
            Err(code) => return Ok(code),
        };
        let digest = version["digest"].as_str().map(short).unwrap_or_default().to_string();
        writeln!(out, "{} version {} running ({digest})", self.app, version["version"])?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Stop a deployed app and forget its versions. Its data (stores, buckets, items, records)
/// stays, and a later deploy of the same name finds it, unless `--purge`.
#[derive(clap::Args)]
pub struct Undeploy {
    /// The app.
    app: String,
    /// Also delete the data of the key-value stores, buckets and datasets the app grants
    /// (queue messages and execution records expire on their own).
    #[arg(long)]
    purge: bool,
    #[command(flatten)]
    server: ServerArgs,
}

impl Undeploy {
    /// Run the command.
    pub async fn run(self, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        let body = match answer(self.server.client()?.undeploy(&self.app, self.purge).await)? {
            Ok(body) => body,
            Err(code) => return Ok(code),
        };
        match serde_json::from_slice::<serde_json::Value>(&body).ok() {
            Some(answer) => {
                let purged = &answer["purged"];
                writeln!(
                    out,
                    "{} removed; deleted {} keys, {} objects, {} items",
                    self.app, purged["keys"], purged["objects"], purged["items"]
                )?
            }
            None => writeln!(out, "{} removed; its data stays", self.app)?,
        }
        Ok(ExitCode::SUCCESS)
    }
}
