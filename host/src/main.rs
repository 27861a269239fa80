//! The `host` command line: a thin layer over the `host` library.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use host::triggers::items::ItemTriggers;
use host::{DEFAULT_DATA_DIR, Error, Host};
use serde_json::Value;

/// A sandboxed WebAssembly function host: call typed component exports with JSON.
#[derive(Parser)]
#[command(name = "host", version)]
struct Cli {
    /// Data dir holding the embedded store, buckets and the compiled-component cache.
    #[arg(long, global = true, env = "HOST_DATA", default_value = DEFAULT_DATA_DIR)]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Call one exported function in a fresh sandboxed instance and print its JSON result.
    ///
    /// Exit status: 0 on success, 1 when the call fails (guest error, trap, timeout, limit),
    /// 2 for bad input (manifest, function name, arguments).
    #[command(
        after_help = "Examples:\n  host call -f examples/hello/host.toml hello.greet '{\"who\": {\"name\": \"Ada\", \"age\": 36}}'\n  host call -f examples/counter/host.toml counter.increment '[\"visits\", 1]'\n  echo '{\"key\": \"visits\"}' | host call -f examples/counter/host.toml counter.get -"
    )]
    Call {
        /// `FUNCTION.EXPORT` (e.g. `counter.increment`, `types.math.add`); just `FUNCTION` when it
        /// exports a single function.
        function: String,
        /// Arguments: a JSON object by parameter name or a JSON array in order; `-` reads stdin.
        /// Defaults to no arguments.
        args: Option<String>,
        /// The app manifest.
        #[arg(short = 'f', long = "file", default_value = "host.toml")]
        manifest: PathBuf,
        /// Run the manifest's build commands first.
        #[arg(long)]
        build: bool,
        /// Call a running `host serve` at this URL instead (e.g. `http://127.0.0.1:8080`).
        /// FUNCTION may then be `APP/FUNCTION.EXPORT`; without `APP/` the server's apps are searched.
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// List a component's callable exports with their WIT signatures and JSON Schemas.
    Inspect {
        /// The component (`.wasm`).
        component: PathBuf,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve apps over HTTP: the REST API (`/v1`), OpenAPI (`/v1/openapi.json`, `/docs`), their
    /// `[[trigger.http]]` routes and `[site]` folders, metrics (`/metrics`) and the dashboard (`/ui`).
    ///
    /// Without a token only loopback addresses are accepted. With one, `/v1`, `/metrics` and
    /// routes not marked `public` need `Authorization: Bearer <token>`.
    #[command(
        after_help = "Example:\n  host serve -f examples/hello/host.toml -f examples/counter/host.toml\n  curl -X POST localhost:8080/v1/apps/hello/functions/hello.greet -d '{\"who\": {\"name\": \"Ada\", \"age\": 36}}'\n  open http://localhost:8080/ui"
    )]
    Serve {
        /// App manifests; repeat for several apps.
        #[arg(short = 'f', long = "file", default_value = "host.toml")]
        manifests: Vec<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Run the manifests' build commands first.
        #[arg(long)]
        build: bool,
        #[command(flatten)]
        token: TokenArgs,
        /// Largest request body, e.g. `16MiB`.
        #[arg(long, default_value = "16MiB", value_parser = parse_size)]
        max_body: usize,
        /// Most requests handled at once; more get `503 overloaded`.
        #[arg(long, default_value_t = host::server::MAX_REQUESTS)]
        max_requests: usize,
        /// On SIGTERM/Ctrl-C, how long requests in flight may still run.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        shutdown_grace: std::time::Duration,
    },
    /// Run the build commands of a manifest (installing a missing Rust target first).
    Build {
        /// The app manifest.
        #[arg(short = 'f', long = "file", default_value = "host.toml")]
        manifest: PathBuf,
    },
}

/// The bearer token: given, from `HOST_TOKEN`, or read from a file.
#[derive(clap::Args)]
struct TokenArgs {
    /// Bearer token (prefer `HOST_TOKEN` or `--token-file`: arguments show up in `ps`).
    #[arg(long, env = "HOST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the bearer token from this file (surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
}

impl TokenArgs {
    fn resolve(self) -> anyhow::Result<Option<String>> {
        let token = match self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read token file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => self.token,
        };
        match token {
            Some(t) if t.is_empty() => anyhow::bail!("the bearer token is empty"),
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
                anyhow::bail!("the bearer token must be printable ASCII without spaces")
            }
            token => Ok(token),
        }
    }
}

fn parse_size(text: &str) -> Result<usize, String> {
    host::manifest::parse_bytes(text).and_then(|n| usize::try_from(n).map_err(|e| e.to_string()))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOST_LOG").unwrap_or_else(|_| "warn,host=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // A closed pipe (`host inspect x.wasm | head`) is not an error worth a message.
        Err(error)
            if error.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            let bad_input = error
                .downcast_ref::<Error>()
                .is_some_and(|e| matches!(e, Error::Manifest(_) | Error::UnknownFunction { .. } | Error::Argument(_)))
                || error.downcast_ref::<serde_json::Error>().is_some();
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Call { function, args, remote: Some(url), token, .. } => {
            let args = read_args(args)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let client = host::client::Client::new(&url, token.resolve()?)?;
            match runtime.block_on(client.call(&function, &args))? {
                Ok(value) => {
                    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(failure) => {
                    eprintln!("error: {}", failure.message);
                    Ok(ExitCode::from(if failure.bad_input { 2 } else { 1 }))
                }
            }
        }
        Command::Call { function, args, manifest, build, .. } => {
            if build {
                host::build::build(&host::manifest::Manifest::load(&manifest)?)?;
            }
            let args = read_args(args)?;
            let host = Host::builder().data_dir(&cli.data).build()?;
            let app = host.load(&manifest)?;
            let function = app.function(&function)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let report = runtime.block_on(function.invoke(&args)).map_err(Error::from)?;
            eprint!("{}", report.logs.stdout);
            eprint!("{}", report.logs.stderr);
            if report.logs.dropped > 0 {
                eprintln!("[output truncated: {} bytes over the `output` limit were dropped]", report.logs.dropped);
            }
            match report.result {
                Ok(value) => {
                    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Inspect { component, json } => {
            let exports = host::inspect(&component, &cli.data.join("cache"))?;
            if json {
                let listed: Vec<Value> = exports.iter().map(|e| e.describe(&e.name)).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&listed)?)?;
            } else {
                writeln!(out, "{} callable export(s) in {}", exports.len(), component.display())?;
                for e in &exports {
                    writeln!(out, "\n{}: {}", e.name, e.signature())?;
                    writeln!(out, "  params: {}", e.params_schema())?;
                    writeln!(out, "  result: {}", e.result_schema())?;
                    if let Some(error) = e.error_schema() {
                        writeln!(out, "  error:  {error}")?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { manifests, listen, build, token, max_body, max_requests, shutdown_grace } => {
            let token = token.resolve()?;
            if !listen.ip().is_loopback() && token.is_none() {
                anyhow::bail!(
                    "refusing to listen on {listen} without a bearer token: anyone who can reach it could call every function; set HOST_TOKEN, --token-file or --token (or listen on 127.0.0.1)"
                );
            }
            let host = Host::builder().data_dir(&cli.data).build()?;
            let mut apps = Vec::new();
            for path in &manifests {
                if build {
                    host::build::build(&host::manifest::Manifest::load(path)?)?;
                }
                apps.push(host.load(path)?);
            }
            let config = host::server::ServerConfig { token, max_body, max_requests };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let triggers = ItemTriggers::start(&host, &apps.iter().collect::<Vec<_>>())?;
                let router = host::server::router(&host, apps, config)?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                let addr = listener.local_addr()?;
                tracing::info!(
                    "serving {} app(s) on http://{addr}/v1/apps, dashboard http://{addr}/ui",
                    manifests.len()
                );
                let finished = host::server::serve(&host, listener, router, shutdown_signal(), shutdown_grace).await?;
                // Triggered executions still running are cut off; they run again at the next start.
                triggers.stop().await;
                tracing::info!("stopped");
                anyhow::Ok(if finished { ExitCode::SUCCESS } else { ExitCode::from(1) })
            })
        }
        Command::Build { manifest } => {
            host::build::build(&host::manifest::Manifest::load(&manifest)?)?;
            Ok(ExitCode::SUCCESS)
        }
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

/// The call's JSON arguments: given inline, read from stdin for `-`, or none.
fn read_args(args: Option<String>) -> anyhow::Result<Value> {
    let text = match args.as_deref() {
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
