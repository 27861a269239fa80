//! The `host` command line: a thin layer over the `host` library.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
    },
    /// List a component's callable exports with their WIT signatures and JSON Schemas.
    Inspect {
        /// The component (`.wasm`).
        component: PathBuf,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve the REST API for one or more apps: list them, describe and call their functions.
    ///
    /// Until token authentication lands, only loopback addresses are accepted.
    #[command(
        after_help = "Example:\n  host serve -f examples/hello/host.toml -f examples/counter/host.toml\n  curl -X POST localhost:8080/v1/apps/hello/functions/hello.greet -d '{\"who\": {\"name\": \"Ada\", \"age\": 36}}'"
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
    },
    /// Run the build commands of a manifest (installing a missing Rust target first).
    Build {
        /// The app manifest.
        #[arg(short = 'f', long = "file", default_value = "host.toml")]
        manifest: PathBuf,
    },
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
        Command::Call { function, args, manifest, build } => {
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
        Command::Serve { manifests, listen, build } => {
            if !listen.ip().is_loopback() {
                anyhow::bail!(
                    "refusing to listen on {listen}: token authentication is not implemented yet, so only loopback addresses (127.0.0.1, ::1) are allowed"
                );
            }
            let host = Host::builder().data_dir(&cli.data).build()?;
            let mut apps = Vec::new();
            for path in &manifests {
                if build {
                    host::build::build(&host::manifest::Manifest::load(path)?)?;
                }
                let app = host.load(path)?;
                if apps.iter().any(|a: &host::App| a.name() == app.name()) {
                    anyhow::bail!("two manifests define the app `{}` ({})", app.name(), path.display());
                }
                apps.push(app);
            }
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                tracing::info!("serving {} app(s) on http://{}/v1/apps", apps.len(), listener.local_addr()?);
                axum::serve(listener, host::server::router(apps)).with_graceful_shutdown(shutdown_signal()).await?;
                tracing::info!("stopped");
                anyhow::Ok(ExitCode::SUCCESS)
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
