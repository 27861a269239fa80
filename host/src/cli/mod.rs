//! The `host` commands, one module each. Commands that can work on the data dir or on a running
//! `host serve` are written once, over a [`target::Target`].

pub mod build;
pub mod call;
pub mod deploy;
pub mod executions;
pub mod inspect;
pub mod items;
pub mod logs;
pub mod map;
pub mod new;
pub mod push;
pub mod serve;
pub mod table;
pub mod target;
pub mod token;
pub mod wait;

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use host::storage::nats::{Nats, NatsOptions};
use host::{App, Error, Host, HostBuilder};
use serde_json::Value;

/// What the commands share: the local host as `--data`, `--cache` and `--backend` configure it.
pub struct Context {
    /// The local host's configuration; only commands that work locally build it.
    pub local: HostBuilder,
    /// The folder of compiled components.
    pub cache: PathBuf,
    /// The NATS cluster holding every store, if not the data dir.
    backend: Option<NatsOptions>,
}

impl Context {
    /// The context for data dir `data`, the cache `cache` (default: `cache` in the data dir),
    /// the secrets file `secrets` and the backend `backend`.
    pub fn new(
        data: &Path,
        cache: Option<PathBuf>,
        secrets: Option<PathBuf>,
        backend: BackendArgs,
    ) -> anyhow::Result<Context> {
        let cache = cache.unwrap_or_else(|| data.join("cache"));
        let mut local = Host::builder().data_dir(data).cache_dir(&cache);
        if let Some(secrets) = secrets {
            local = local.secrets_file(secrets);
        }
        Ok(Context { local, cache, backend: backend.options()? })
    }

    /// Open the local host `builder` configures, on the backend of `--backend`.
    pub async fn open(&self, builder: HostBuilder) -> anyhow::Result<Host> {
        let builder = match &self.backend {
            Some(options) => builder.nats(Nats::connect(options).await.map_err(Error::from)?),
            None => builder,
        };
        Ok(builder.build()?)
    }
}

/// Where the stores live: the data dir (the default), or a NATS JetStream cluster shared by
/// every host connected to it.
#[derive(clap::Args)]
pub struct BackendArgs {
    /// Keep every store (key-value, buckets, items, queues, topics, executions, schedules) in a
    /// NATS JetStream cluster, shared with every host using it, instead of the data dir:
    /// `nats://HOST:PORT[,HOST:PORT...]`.
    #[arg(long, global = true, env = "HOST_BACKEND", value_name = "nats://HOST:PORT,...", value_parser = backend)]
    backend: Option<String>,
    /// NATS authentication token (prefer `HOST_NATS_TOKEN`: arguments show up in `ps`).
    #[arg(long, global = true, env = "HOST_NATS_TOKEN", hide_env_values = true, requires = "backend")]
    nats_token: Option<String>,
    /// NATS user and password as `USER:PASSWORD` (prefer `HOST_NATS_USER`).
    #[arg(long, global = true, env = "HOST_NATS_USER", hide_env_values = true, requires = "backend")]
    nats_user: Option<String>,
    /// NATS credentials file (`.creds`: a user JWT and its nkey seed).
    #[arg(long, global = true, env = "HOST_NATS_CREDS", value_name = "FILE", requires = "backend")]
    nats_creds: Option<PathBuf>,
    /// PEM file of the CA that signed the NATS servers' certificates (turns TLS on).
    #[arg(long, global = true, env = "HOST_NATS_CA", value_name = "FILE", requires = "backend")]
    nats_ca: Option<PathBuf>,
}

/// A `--backend` value, checked when the arguments are parsed (bad input: exit status 2).
fn backend(spec: &str) -> Result<String, String> {
    NatsOptions::parse(spec).map(|_| spec.to_string())
}

impl BackendArgs {
    /// The NATS options, checked; `None` for the embedded store.
    fn options(self) -> anyhow::Result<Option<NatsOptions>> {
        let Some(spec) = self.backend else { return Ok(None) };
        let mut options = NatsOptions::parse(&spec).map_err(anyhow::Error::msg)?;
        options.token = self.nats_token;
        options.user = match self.nats_user {
            Some(user) => match user.split_once(':') {
                Some((user, password)) => Some((user.to_string(), password.to_string())),
                None => anyhow::bail!("--nats-user: expected USER:PASSWORD"),
            },
            None => None,
        };
        options.creds_file = self.nats_creds;
        options.tls_ca = self.nats_ca;
        Ok(Some(options))
    }
}

/// The app a local call runs in.
#[derive(clap::Args)]
pub struct AppArgs {
    /// The app manifest.
    #[arg(short = 'f', long = "file", default_value = "host.toml")]
    pub manifest: PathBuf,
    /// Run the manifest's build commands first.
    #[arg(long)]
    pub build: bool,
}

/// Where `items`, `executions` and `logs` work: the data dir (no server may be using it), or a
/// running `host serve`.
#[derive(clap::Args)]
pub struct RemoteArgs {
    /// A running `host serve` (e.g. `http://127.0.0.1:8080`) instead of the data dir.
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// The bearer token sent to the server.
    #[command(flatten)]
    pub token: TokenArgs,
}

/// The bearer token: given, from `HOST_TOKEN`, or read from a file.
#[derive(clap::Args)]
pub struct TokenArgs {
    /// Bearer token (prefer `HOST_TOKEN` or `--token-file`: arguments show up in `ps`).
    #[arg(long, env = "HOST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the bearer token from this file (surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token, checked: `None` when none is given.
    pub fn resolve(self) -> anyhow::Result<Option<String>> {
        let token = match self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read token file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => self.token,
        };
        token.as_deref().map(check_token).transpose()?;
        Ok(token)
    }
}

/// Refuse a bearer token that is empty or not printable ASCII without spaces.
pub fn check_token(token: &str) -> anyhow::Result<()> {
    if token.is_empty() {
        anyhow::bail!("the bearer token is empty");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!("the bearer token must be printable ASCII without spaces");
    }
    Ok(())
}

/// JSON given inline, read from stdin for `-`, or `null` when not given.
pub fn read_json(text: Option<&str>) -> anyhow::Result<Value> {
    let text = match text {
        None => return Ok(Value::Null),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading arguments from stdin")?;
            text
        }
        Some(text) => text.to_string(),
    };
    serde_json::from_str(&text).context("arguments are not valid JSON")
}

/// Run the build commands of the app of `manifest`.
pub fn build_app(manifest: &Path) -> Result<(), Error> {
    Ok(host::build::build(&host::manifest::Manifest::load(manifest)?)?)
}

/// Load the app of `manifest` into `host`, running its build commands first when `build`.
pub fn load_app(host: &Host, manifest: &Path, build: bool) -> Result<App, Error> {
    if build {
        build_app(manifest)?;
    }
    host.load(manifest)
}
