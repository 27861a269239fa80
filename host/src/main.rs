//! The `host` command line: a thin layer over the `host` library.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use host::triggers::Triggers;
use host::{DEFAULT_DATA_DIR, Error, Host, HostBuilder};
use serde_json::Value;

/// A sandboxed WebAssembly function host: call typed component exports with JSON.
#[derive(Parser)]
#[command(name = "host", version)]
struct Cli {
    /// Data dir holding the embedded store, buckets and the compiled-component cache.
    #[arg(long, global = true, env = "HOST_DATA", default_value = DEFAULT_DATA_DIR)]
    data: PathBuf,
    /// Folder of compiled components [default: `cache` in the data dir]. Several data dirs may
    /// share one, so that each component is compiled once.
    #[arg(long, global = true, env = "HOST_CACHE", value_name = "DIR")]
    cache: Option<PathBuf>,
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
        /// Start the call as a job on the server and print its execution id at once; follow it
        /// with `host wait`, `host executions` and `host logs --follow`. Arguments may hold
        /// `{"$execution": "ID"}`: that execution's result, once it has one.
        #[arg(long = "async", requires = "remote")]
        start: bool,
        /// Like `--async`, but calls of the function started this way run one at a time, in order.
        #[arg(long, requires = "remote", conflicts_with = "start")]
        enqueue: bool,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Call a function once per input, in parallel sandboxed instances (up to its `concurrency`),
    /// with a progress bar; print one outcome per input, in input order: `{"ok": RESULT}` or
    /// `{"err": {"code", "message"}}`. One failure does not stop the others.
    ///
    /// INPUTS is a JSON list of values of the function's single parameter, or an object of
    /// equally long lists by parameter name (zipped). Exit status 1 if any call failed.
    #[command(
        after_help = "Examples:\n  host map -f examples/remote-map/host.toml remote-map.square '[1, 2, 3]'\n  host map --remote http://127.0.0.1:8080 remote-map/remote-map.add '{\"a\": [1, 2], \"b\": [2, 5]}'"
    )]
    Map(MapArgs),
    /// Like `map`, but each input is a whole argument list (a JSON array in parameter order, or
    /// an object by parameter name): INPUTS is a JSON list of them.
    #[command(
        after_help = "Example:\n  host starmap -f examples/remote-map/host.toml remote-map.add '[[1, 2], [1, 3], [1, 4]]'"
    )]
    Starmap(MapArgs),
    /// Wait for an execution (a job started with `--async` or `--enqueue`) to finish and print
    /// its result. Exit status 0 if it succeeded, 1 if not (or not finished in time).
    Wait {
        /// The execution id.
        id: String,
        /// Wait at most this long.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        remote: RemoteArgs,
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
        #[command(flatten)]
        limits: ServeLimits,
        /// Delete execution records (and their logs) that finished longer ago than this.
        #[arg(long, value_name = "AGE", default_value = "7d", value_parser = humantime::parse_duration)]
        keep_executions_for: std::time::Duration,
        /// Keep at most this many finished execution records per app, deleting the oldest.
        #[arg(long, value_name = "COUNT", default_value_t = host::executions::Retention::default().max_count)]
        keep_executions: u64,
    },
    /// List execution records, newest first: every call, over the CLI, REST, HTTP routes or
    /// triggers; or cancel one (`host executions cancel ID`).
    #[command(args_conflicts_with_subcommands = true)]
    Executions {
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
    },
    /// Print an execution's logs (stdout and stderr of each attempt).
    Logs {
        /// The execution id.
        id: String,
        /// Keep printing until the execution finishes (needs `--remote`).
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Upload, list and read items of a dataset.
    #[command(subcommand)]
    Items(ItemsCommand),
    /// Run the build commands of a manifest (installing a missing Rust target first).
    ///
    /// A function that lists `build-inputs` is skipped while its `source` is newer than all of them.
    Build {
        /// The app manifest.
        #[arg(short = 'f', long = "file", default_value = "host.toml")]
        manifest: PathBuf,
    },
}

/// What `map` and `starmap` run and on what.
#[derive(clap::Args)]
struct MapArgs {
    /// `FUNCTION.EXPORT` (with `--remote`, optionally `APP/FUNCTION.EXPORT`).
    function: String,
    /// The inputs as JSON; `-` reads stdin.
    inputs: String,
    /// The app manifest.
    #[arg(short = 'f', long = "file", default_value = "host.toml")]
    manifest: PathBuf,
    /// Run the manifest's build commands first.
    #[arg(long)]
    build: bool,
    /// Run on a `host serve` at this URL instead.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    #[command(flatten)]
    token: TokenArgs,
}

/// Where `items`, `executions` and `logs` work: the data dir (no server may be using it), or a
/// running `host serve`.
#[derive(clap::Args)]
struct RemoteArgs {
    /// A running `host serve` (e.g. `http://127.0.0.1:8080`) instead of the data dir.
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    #[command(flatten)]
    token: TokenArgs,
}

#[derive(Subcommand)]
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

#[derive(Subcommand)]
enum ItemsCommand {
    /// Upload files (folders recursively) as items; prints the items as JSON lines.
    #[command(
        after_help = "Example:\n  host items upload image-process photos pictures/ --dir /2024 --remote http://127.0.0.1:8080"
    )]
    Upload {
        /// The app.
        app: String,
        /// The dataset.
        dataset: String,
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The dataset folder to put them in (a folder's subfolders are kept below it).
        #[arg(long, default_value = "/")]
        dir: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List items (JSON lines), optionally filtered.
    List {
        /// The app.
        app: String,
        /// The dataset.
        dataset: String,
        /// Only items in this folder or below.
        #[arg(long)]
        dir: Option<String>,
        /// Only this mimetype pattern (`image/*`).
        #[arg(long)]
        mimetype: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Print one item as JSON, or save its bytes with `--output`.
    Get {
        /// The app.
        app: String,
        /// The dataset.
        dataset: String,
        /// The item id.
        id: String,
        /// Write the item's bytes to this file.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// `host serve`'s limits and browser rules.
#[derive(clap::Args)]
struct ServeLimits {
    /// Largest request body, e.g. `16MiB`; a larger declared `Content-Length` gets `413` at once.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    max_body: usize,
    /// Most requests handled at once (1 to 1048576); more get `503 overloaded`. `/healthz` is
    /// never refused.
    #[arg(long, default_value_t = host::server::MAX_REQUESTS, value_parser = parse_max_requests)]
    max_requests: usize,
    /// How long a client may take to send a request's head; a kept-alive connection idle this
    /// long is closed too.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: std::time::Duration,
    /// How long a client may take to send a request's whole body; past it: `408 body-timeout`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    body_timeout: std::time::Duration,
    /// On SIGTERM/Ctrl-C, how long requests in flight may still run.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: std::time::Duration,
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

impl ServeLimits {
    fn config(self, token: Option<String>) -> host::server::ServerConfig {
        host::server::ServerConfig {
            token,
            max_body: self.max_body,
            max_requests: self.max_requests,
            allowed_hosts: self.allowed_hosts,
            cors_origins: self.cors_origins,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            shutdown_grace: self.shutdown_grace,
        }
    }
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
    let cache = cli.cache.unwrap_or_else(|| cli.data.join("cache"));
    let local = Host::builder().data_dir(&cli.data).cache_dir(&cache);
    match cli.command {
        Command::Call { function, args, remote: Some(url), start, enqueue, token, .. } => {
            let args = read_args(args)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let client = host::client::Client::new(&url, token.resolve()?)?;
            let answer = runtime.block_on(async {
                match start || enqueue {
                    true => client.start(&function, &args, enqueue).await,
                    false => client.call(&function, &args).await,
                }
            });
            match answer? {
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
            let host = local.clone().build()?;
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
            let exports = host::inspect(&component, &cache)?;
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
        Command::Serve { manifests, listen, build, token, limits, keep_executions_for, keep_executions } => {
            let token = token.resolve()?;
            if !listen.ip().is_loopback() && token.is_none() {
                anyhow::bail!(
                    "refusing to listen on {listen} without a bearer token: anyone who can reach it could call every function; set HOST_TOKEN, --token-file or --token (or listen on 127.0.0.1)"
                );
            }
            let retention = host::executions::Retention { max_age: keep_executions_for, max_count: keep_executions };
            let host = local.clone().retention(retention).build()?;
            let mut apps = Vec::new();
            for path in &manifests {
                if build {
                    host::build::build(&host::manifest::Manifest::load(path)?)?;
                }
                apps.push(host.load(path)?);
            }
            let config = limits.config(token);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let triggers = Triggers::start(&host, &apps.iter().collect::<Vec<_>>())?;
                let router = host::server::router(&host, apps, config.clone())?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                let addr = listener.local_addr()?;
                tracing::info!(
                    "serving {} app(s) on http://{addr}/v1/apps, dashboard http://{addr}/ui",
                    manifests.len()
                );
                let finished = host::server::serve(&host, listener, router, &config, shutdown_signal()).await?;
                // Triggered executions still running are cut off; they run again at the next start.
                triggers.stop().await;
                tracing::info!("stopped");
                anyhow::Ok(if finished { ExitCode::SUCCESS } else { ExitCode::from(1) })
            })
        }
        Command::Executions { action: Some(ExecutionsCommand::Cancel { id, remote }), .. } => {
            let record = Backend::new(&local, remote)?.cancel(&id)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&record)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Executions { action: None, app, function, trigger, status, limit, json, remote } => {
            let backend = Backend::new(&local, remote)?;
            let records = backend.executions(app, function, trigger, status, limit)?;
            if json {
                for record in records.as_array().into_iter().flatten() {
                    writeln!(out, "{record}")?;
                }
            } else {
                writeln!(
                    out,
                    "{:<16}  {:<10}  {:<28}  {:<16}  {:>7}  {:>9}",
                    "ID", "STATUS", "FUNCTION", "TRIGGER", "ATTEMPT", "MS"
                )?;
                for r in records.as_array().into_iter().flatten() {
                    let ms = r["finished_ms"].as_u64().zip(r["started_ms"].as_u64()).map(|(f, s)| (f - s).to_string());
                    writeln!(
                        out,
                        "{:<16}  {:<10}  {:<28}  {:<16}  {:>7}  {:>9}",
                        r["id"].as_str().unwrap_or(""),
                        r["status"].as_str().unwrap_or(""),
                        format!("{}/{}", r["app"].as_str().unwrap_or(""), r["function"].as_str().unwrap_or("")),
                        r["trigger"].as_str().unwrap_or(""),
                        format!("{}/{}", r["attempt"], r["max_attempts"]),
                        ms.unwrap_or_default(),
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Map(args) => map(&local, args, false, &mut out),
        Command::Starmap(args) => map(&local, args, true, &mut out),
        Command::Wait { id, timeout, remote } => {
            let backend = Backend::new(&local, remote)?;
            let record = backend.wait(&id, timeout)?;
            let code = match record["status"].as_str() {
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
            };
            Ok(code)
        }
        Command::Logs { id, follow, remote } => {
            let backend = Backend::new(&local, remote)?;
            backend.logs(&id, follow, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Items(command) => items(&local, command, &mut out),
        Command::Build { manifest } => {
            host::build::build(&host::manifest::Manifest::load(&manifest)?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `host map` and `host starmap`: run locally or on a server, with a progress bar on stderr.
fn map(local: &HostBuilder, args: MapArgs, starmap: bool, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let inputs = read_args(Some(args.inputs))?;
    let mut outcomes: Vec<Value> = Vec::new();
    let progress = indicatif::ProgressBar::new(0)
        .with_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} calls, {per_sec}, ETA {eta} {msg}")?);
    let mut note = |index: usize, outcome: Value| {
        if outcomes.len() <= index {
            outcomes.resize(index + 1, Value::Null);
        }
        if outcome.get("err").is_some() {
            progress
                .set_message(format!("({} failed)", outcomes.iter().filter(|o| o.get("err").is_some()).count() + 1));
        }
        outcomes[index] = outcome;
        progress.inc(1);
    };
    match args.remote {
        Some(url) => {
            let client = host::client::Client::new(&url, args.token.resolve()?)?;
            let count = if starmap { inputs.as_array().map_or(0, Vec::len) } else { map_count(&inputs) };
            progress.set_length(count as u64);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let answer = runtime.block_on(client.map(&args.function, starmap, &inputs, |mut outcome| {
                let index = outcome["index"].as_u64().unwrap_or(0) as usize;
                outcome.as_object_mut().map(|o| o.remove("index"));
                note(index, outcome);
            }))?;
            if let Err(failure) = answer {
                progress.abandon();
                eprintln!("error: {}", failure.message);
                return Ok(ExitCode::from(if failure.bad_input { 2 } else { 1 }));
            }
        }
        None => {
            let manifest = host::manifest::Manifest::load(&args.manifest)?;
            if args.build {
                host::build::build(&manifest)?;
            }
            let host = local.clone().build()?;
            let function = host.load(&args.manifest)?.function(&args.function)?;
            let arg_sets = match (starmap, inputs) {
                (true, Value::Array(sets)) => sets,
                (true, other) => anyhow::bail!("starmap inputs: expected a JSON list of argument lists, got {other}"),
                (false, inputs) => function.map_args(&inputs).map_err(Error::from)?,
            };
            progress.set_length(arg_sets.len() as u64);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(function.starmap(&arg_sets, |index, outcome| note(index, host::outcome_json(outcome))));
        }
    }
    progress.finish();
    let failed = outcomes.iter().filter(|o| o.get("err").is_some()).count();
    writeln!(out, "{}", serde_json::to_string_pretty(&outcomes)?)?;
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// How many calls a `map` over `inputs` makes: the list's length, or the length of the lists.
fn map_count(inputs: &Value) -> usize {
    match inputs {
        Value::Array(items) => items.len(),
        Value::Object(lists) => lists.values().next().and_then(Value::as_array).map_or(0, Vec::len),
        _ => 0,
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

/// The data dir, or a running server, for `items`, `executions` and `logs`.
struct Backend {
    target: Target,
    runtime: tokio::runtime::Runtime,
}

enum Target {
    Local(Host),
    Remote(host::client::Client),
}

use host::client::encode;

impl Backend {
    fn new(local: &HostBuilder, remote: RemoteArgs) -> anyhow::Result<Backend> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let target = match remote.remote {
            Some(url) => Target::Remote(host::client::Client::new(&url, remote.token.resolve()?)?),
            None => Target::Local(local.clone().build()?),
        };
        Ok(Backend { target, runtime })
    }

    /// A request to the server's API; its error as an `anyhow` error.
    fn api(
        &self,
        client: &host::client::Client,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Vec<u8>> {
        let method = method.parse::<hyper::Method>()?;
        match self.runtime.block_on(client.api(method, path, content_type, body))? {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(failure) => anyhow::bail!("{} ({}): {}", failure.code, failure.status, failure.message),
        }
    }

    fn api_json(
        &self,
        client: &host::client::Client,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.api(client, method, path, content_type, body)?)?)
    }

    fn executions(
        &self,
        app: Option<String>,
        function: Option<String>,
        trigger: Option<String>,
        status: Option<String>,
        limit: usize,
    ) -> anyhow::Result<Value> {
        match &self.target {
            Target::Local(host) => {
                let status = status.map(|s| s.parse()).transpose().map_err(|e: String| anyhow::anyhow!(e))?;
                let filter = host::executions::ExecutionFilter { app, function, trigger, status };
                Ok(serde_json::to_value(host.executions().list(&filter, None, limit))?)
            }
            Target::Remote(client) => {
                let mut query = format!("/v1/executions?limit={limit}");
                for (key, value) in [("app", app), ("function", function), ("trigger", trigger), ("status", status)] {
                    if let Some(value) = value {
                        query.push_str(&format!("&{key}={}", encode(&value)));
                    }
                }
                self.api_json(client, "GET", &query, "application/json", Vec::new())
            }
        }
    }

    /// Cancel a queued or running execution; its record.
    fn cancel(&self, id: &str) -> anyhow::Result<Value> {
        match &self.target {
            Target::Local(host) => Ok(serde_json::to_value(self.runtime.block_on(host.executions().cancel(id))?)?),
            Target::Remote(client) => {
                let path = format!("/v1/executions/{}/cancel", encode(id));
                self.api_json(client, "POST", &path, "application/json", Vec::new())
            }
        }
    }

    /// The execution's record once it is final, or the last one seen after `timeout`.
    fn wait(&self, id: &str, timeout: std::time::Duration) -> anyhow::Result<Value> {
        match &self.target {
            Target::Local(host) => {
                let record = self.runtime.block_on(host.executions().wait(id, timeout));
                Ok(serde_json::to_value(record.with_context(|| format!("no execution `{id}`"))?)?)
            }
            Target::Remote(client) => {
                // The server waits at most 5 minutes per request.
                let deadline = std::time::Instant::now() + timeout;
                loop {
                    let left = deadline
                        .saturating_duration_since(std::time::Instant::now())
                        .min(std::time::Duration::from_secs(300));
                    let path = format!("/v1/executions/{}?wait={}ms", encode(id), left.as_millis());
                    let record = self.api_json(client, "GET", &path, "application/json", Vec::new())?;
                    let finished = !matches!(record["status"].as_str(), Some("queued" | "running"));
                    if finished || left.is_zero() || std::time::Instant::now() >= deadline {
                        return Ok(record);
                    }
                }
            }
        }
    }

    fn logs(&self, id: &str, follow: bool, out: &mut impl Write) -> anyhow::Result<()> {
        match &self.target {
            Target::Local(_) if follow => {
                anyhow::bail!("--follow needs --remote: executions run in `host serve`, not in this process")
            }
            Target::Local(host) => {
                host.executions().get(id).with_context(|| format!("no execution `{id}`"))?;
                write!(out, "{}", host.executions().logs(id).unwrap_or_default())?;
            }
            Target::Remote(client) if follow => {
                // Server-Sent Events: print the data of `log` events; stop at `end`.
                let path = format!("/v1/executions/{}/logs?follow=true", encode(id));
                let (mut pending, mut event, mut failed) = (String::new(), String::new(), None);
                let status = self.runtime.block_on(client.follow(&path, |chunk| {
                    pending.push_str(&String::from_utf8_lossy(chunk));
                    while let Some(end) = pending.find('\n') {
                        let line: String = pending.drain(..=end).collect();
                        let line = line.trim_end_matches(['\n', '\r']);
                        if let Some(name) = line.strip_prefix("event: ") {
                            event = name.to_string();
                        } else if let Some(data) = line.strip_prefix("data: ").or(line.strip_prefix("data:"))
                            && event == "log"
                            && let Err(e) = writeln!(out, "{data}")
                        {
                            failed = Some(e);
                        }
                    }
                }))?;
                if let Some(error) = failed {
                    return Err(error.into());
                }
                anyhow::ensure!(status.is_success(), "no execution `{id}` ({status})");
            }
            Target::Remote(client) => {
                let text =
                    self.api(client, "GET", &format!("/v1/executions/{}/logs", encode(id)), "text/plain", Vec::new())?;
                out.write_all(&text)?;
            }
        }
        Ok(())
    }

    fn upload(&self, app: &str, dataset: &str, dir: &str, name: &str, data: Vec<u8>) -> anyhow::Result<Value> {
        match &self.target {
            Target::Local(host) => {
                let item =
                    self.runtime.block_on(host.dataset(app, dataset)?.upload(dir, name, None, data, None, None))?;
                Ok(serde_json::to_value(item)?)
            }
            Target::Remote(client) => {
                let path = format!(
                    "/v1/apps/{}/datasets/{}/items?dir={}&name={}",
                    encode(app),
                    encode(dataset),
                    encode(dir),
                    encode(name)
                );
                let mimetype = host::mimetype::guess(name);
                self.api_json(client, "POST", &path, mimetype, data)
            }
        }
    }

    fn list(
        &self,
        app: &str,
        dataset: &str,
        dir: Option<String>,
        mimetype: Option<String>,
    ) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = match &self.target {
                Target::Local(host) => {
                    let filter = host::storage::datasets::ItemFilter {
                        dir: dir.clone(),
                        mimetype: mimetype.clone(),
                        metadata: Vec::new(),
                    };
                    serde_json::to_value(host.dataset(app, dataset)?.list(&filter, cursor.as_deref(), 1000)?)?
                }
                Target::Remote(client) => {
                    let mut path = format!("/v1/apps/{}/datasets/{}/items?limit=1000", encode(app), encode(dataset));
                    for (key, value) in [("dir", &dir), ("mimetype", &mimetype), ("cursor", &cursor)] {
                        if let Some(value) = value {
                            path.push_str(&format!("&{key}={}", encode(value)));
                        }
                    }
                    self.api_json(client, "GET", &path, "application/json", Vec::new())?
                }
            };
            all.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok(all),
            }
        }
    }

    fn get(&self, app: &str, dataset: &str, id: &str, bytes: bool) -> anyhow::Result<Vec<u8>> {
        match &self.target {
            Target::Local(host) => {
                let dataset = host.dataset(app, dataset)?;
                Ok(if bytes { dataset.download(id)? } else { serde_json::to_vec_pretty(&dataset.get(id)?)? })
            }
            Target::Remote(client) => {
                let suffix = if bytes { "/download" } else { "" };
                let path =
                    format!("/v1/apps/{}/datasets/{}/items/{}{suffix}", encode(app), encode(dataset), encode(id));
                self.api(client, "GET", &path, "application/json", Vec::new())
            }
        }
    }
}

/// Files to upload: each file, and every file under each folder, with the dataset folder it goes to.
fn files_to_upload(paths: &[PathBuf], dir: &str) -> anyhow::Result<Vec<(PathBuf, String)>> {
    fn walk(path: &std::path::Path, dir: &str, found: &mut Vec<(PathBuf, String)>) -> anyhow::Result<()> {
        if path.is_dir() {
            let sub = match path.file_name() {
                Some(name) => format!("{}/{}", dir.trim_end_matches('/'), name.to_string_lossy()),
                None => dir.to_string(),
            };
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read folder {}", path.display()))?
                .collect::<Result<_, _>>()?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                walk(&entry.path(), &sub, found)?;
            }
        } else if path.is_file() {
            found.push((path.to_path_buf(), dir.to_string()));
        } else {
            anyhow::bail!("{}: no such file or folder", path.display());
        }
        Ok(())
    }
    let mut found = Vec::new();
    for path in paths {
        walk(path, dir, &mut found)?;
    }
    Ok(found)
}

fn items(local: &HostBuilder, command: ItemsCommand, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    match command {
        ItemsCommand::Upload { app, dataset, paths, dir, remote } => {
            let files = files_to_upload(&paths, &dir)?;
            let backend = Backend::new(local, remote)?;
            let progress = indicatif::ProgressBar::new(files.len() as u64).with_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} items, {per_sec}, ETA {eta} {msg}")?,
            );
            for (file, dir) in files {
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                progress.set_message(name.clone());
                let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let item = backend
                    .upload(&app, &dataset, &dir, &name, bytes)
                    .with_context(|| format!("uploading {}", file.display()))?;
                progress.suspend(|| writeln!(out, "{item}"))?;
                progress.inc(1);
            }
            progress.finish_and_clear();
        }
        ItemsCommand::List { app, dataset, dir, mimetype, remote } => {
            for item in Backend::new(local, remote)?.list(&app, &dataset, dir, mimetype)? {
                writeln!(out, "{item}")?;
            }
        }
        ItemsCommand::Get { app, dataset, id, output, remote } => {
            let backend = Backend::new(local, remote)?;
            match output {
                Some(file) => {
                    let bytes = backend.get(&app, &dataset, &id, true)?;
                    std::fs::write(&file, bytes).with_context(|| format!("cannot write {}", file.display()))?;
                }
                None => writeln!(out, "{}", String::from_utf8_lossy(&backend.get(&app, &dataset, &id, false)?))?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
