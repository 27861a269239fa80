//! `host serve`: apps over HTTP until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use host::deploy::{Deployments, Running};
use host::executions::Retention;
use host::server::ServerConfig;
use host::server::scopes::{Token, read_tokens};

use super::{Context, TokenArgs, load_app};

/// Serve apps over HTTP: the REST API (`/v1`), OpenAPI (`/v1/openapi.json`, `/docs`), their
/// `[[trigger.http]]` routes and `[site]` folders, metrics (`/metrics`) and the dashboard (`/ui`).
///
/// Without a token only loopback addresses are accepted. With one, `/v1`, `/metrics` and
/// routes not marked `public` need `Authorization: Bearer <token>`; `--tokens` gives tokens
/// limited to scopes (see `host token hash`).
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  host serve -f examples/hello/host.toml -f examples/counter/host.toml\n  curl -X POST localhost:8080/v1/apps/hello/functions/hello.greet -d '{\"who\": {\"name\": \"Ada\", \"age\": 36}}'\n  open http://localhost:8080/ui"
)]
pub struct Serve {
    /// App manifests; repeat for several apps. Without one: `host.toml` when there is one here.
    /// Apps deployed to the data dir (`host deploy`) are served too.
    #[arg(short = 'f', long = "file")]
    manifests: Vec<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Run the manifests' build commands first.
    #[arg(long)]
    build: bool,
    /// Rebuild and reload an app when its manifest, components or `build-inputs` change (and
    /// build first, as `--build`). A failed build or load is reported; the running version
    /// keeps serving.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    token: TokenArgs,
    /// TOML file of tokens with scopes (`[[token]]` entries of `name`, `sha256`, `scopes`), read
    /// at start; refused when group or others can read it. `--token` adds one `admin` token.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    #[command(flatten)]
    limits: ServeLimits,
    /// Delete execution records (and their logs) that finished longer ago than this.
    #[arg(long, value_name = "AGE", default_value = "7d", value_parser = humantime::parse_duration)]
    keep_executions_for: Duration,
    /// Keep at most this many finished execution records per app, deleting the oldest.
    #[arg(long, value_name = "COUNT", default_value_t = Retention::default().max_count)]
    keep_executions: u64,
}

/// `host serve`'s limits and browser rules.
#[derive(clap::Args)]
struct ServeLimits {
    /// Largest request body, e.g. `16MiB`; a larger declared `Content-Length` gets `413` at once.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    max_body: usize,
    /// Largest bundle `host deploy` may upload (`PUT /v1/apps/NAME`).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    max_bundle: usize,
    /// Most requests handled at once (1 to 1048576); more get `503 overloaded`. `/healthz` is
    /// never refused.
    #[arg(long, default_value_t = host::server::MAX_REQUESTS, value_parser = parse_max_requests)]
    max_requests: usize,
    /// How long a client may take to send a request's head; a kept-alive connection idle this
    /// long is closed too.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// How long a client may take to send a request's whole body; past it: `408 body-timeout`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// On SIGTERM/Ctrl-C, how long requests in flight may still run.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// A host name the server answers to besides IP addresses and `localhost` (repeatable):
    /// requests for any other `Host` get `403 host-not-allowed`, which defeats DNS rebinding.
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// An origin (`https://app.example.com`) whose pages may call `/v1` (repeatable): CORS
    /// preflights are answered for it. Other cross-origin requests get `403 cross-origin`.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
}

fn parse_max_requests(text: &str) -> Result<usize, String> {
    let limit = host::server::MAX_REQUESTS_LIMIT;
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=limit).contains(n))
        .ok_or_else(|| format!("expected a number from 1 to {limit}"))
}

fn parse_size(text: &str) -> Result<usize, String> {
    host::manifest::parse_bytes(text).and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
}

impl ServeLimits {
    fn config(self, token: Option<String>, tokens: Vec<Token>) -> ServerConfig {
        ServerConfig {
            token,
            tokens,
            max_body: self.max_body,
            max_bundle: self.max_bundle,
            max_requests: self.max_requests,
            allowed_hosts: self.allowed_hosts,
            cors_origins: self.cors_origins,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

impl Serve {
    /// Run the command until a signal; exit status 1 when requests were cut off at the end.
    pub async fn run(self, context: &Context) -> anyhow::Result<ExitCode> {
        let (token, listen) = (self.token.resolve()?, self.listen);
        let tokens = match &self.tokens {
            Some(path) => {
                let tokens = read_tokens(path)?;
                if tokens.is_empty() {
                    anyhow::bail!("tokens file {} holds no `[[token]]` entry", path.display());
                }
                tokens
            }
            None => Vec::new(),
        };
        if !listen.ip().is_loopback() && token.is_none() && tokens.is_empty() {
            anyhow::bail!(
                "refusing to listen on {listen} without a bearer token: anyone who can reach it could call every function; set HOST_TOKEN, --token-file, --token or --tokens (or listen on 127.0.0.1)"
            );
        }
        let retention = Retention { max_age: self.keep_executions_for, max_count: self.keep_executions };
        let host = context.open(context.local.clone().retention(retention)).await?;
        let manifests = match self.manifests.is_empty() {
            true => Some(PathBuf::from("host.toml")).filter(|p| p.is_file()).into_iter().collect(),
            false => self.manifests,
        };
        let build = self.build || self.watch;
        let apps = manifests.iter().map(|path| load_app(&host, path, build)).collect::<Result<Vec<_>, _>>()?;
        let config = self.limits.config(token, tokens);
        let running = Arc::new(Running::new(&host, apps)?);
        running.start().await?;
        let deployments = Arc::new(Deployments::open(&host, running.clone()).await?);
        // Deployed apps start before the first request; a version that fails is logged and left.
        deployments.sync().await?;
        let syncing = deployments.keep_synced();
        let watching = self.watch.then(|| tokio::spawn(host::watch::watch(host.clone(), running.clone(), manifests)));
        let router = host::server::router(deployments, config.clone())?;
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let count = running.snapshot().apps.len();
        tracing::info!("serving {count} app(s) on http://{addr}/v1/apps, dashboard http://{addr}/ui");
        let finished = host::server::serve(&host, listener, router, &config, shutdown_signal()).await?;
        syncing.abort();
        if let Some(watching) = watching {
            watching.abort();
        }
        // Triggered executions still running are cut off; they run again at the next start.
        running.stop().await;
        tracing::info!("stopped");
        Ok(if finished { ExitCode::SUCCESS } else { ExitCode::from(1) })
    }
}

/// Resolves on Ctrl-C or SIGTERM: stop accepting, let calls in flight finish.
async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
