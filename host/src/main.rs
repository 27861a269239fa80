//! The `host` command line: parses the arguments and runs one command of [`cli`] on one tokio
//! runtime.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use host::{DEFAULT_DATA_DIR, Error};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// TOML file of values for the apps' `[variables]` (`name = "value"` lines); refused when
    /// group or others can read it. `HOST_VAR_<NAME>` environment variables override it.
    #[arg(long, global = true, env = "HOST_SECRETS", value_name = "FILE")]
    secrets: Option<PathBuf>,
    #[command(flatten)]
    backend: cli::BackendArgs,
    #[command(subcommand)]
    command: Command,
}

/// The commands; each one's help is the doc comment of its arguments' struct.
#[derive(Subcommand)]
enum Command {
    Call(cli::call::Call),
    Map(cli::map::Map),
    Starmap(cli::map::Starmap),
    Wait(cli::wait::Wait),
    Inspect(cli::inspect::Inspect),
    Serve(cli::serve::Serve),
    Executions(cli::executions::Executions),
    Logs(cli::logs::Logs),
    /// Upload, list and read items of a dataset.
    #[command(subcommand)]
    Items(cli::items::ItemsCommand),
    Build(cli::build::Build),
    New(cli::new::New),
    Deploy(cli::deploy::Deploy),
    Versions(cli::deploy::Versions),
    Rollback(cli::deploy::Rollback),
    Undeploy(cli::deploy::Undeploy),
    Push(cli::push::Push),
    /// Hash tokens for a tokens file (`host serve --tokens`).
    #[command(subcommand)]
    Token(cli::token::TokenCommand),
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
            let bad_input = error.downcast_ref::<Error>().is_some_and(|e| {
                matches!(
                    e,
                    Error::Manifest(_) | Error::UnknownFunction { .. } | Error::Argument(_) | Error::Variable(_)
                )
            }) || error.downcast_ref::<serde_json::Error>().is_some();
            ExitCode::from(if bad_input { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let context = cli::Context::new(&cli.data, cli.cache, cli.secrets, cli.backend)?;
    let out = &mut std::io::stdout().lock();
    // The one runtime of the process: calls run in parallel on it, and `serve` serves on it.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Call(command) => command.run(&context, out).await,
            Command::Map(command) => command.run(&context, out).await,
            Command::Starmap(command) => command.run(&context, out).await,
            Command::Wait(command) => command.run(&context, out).await,
            Command::Inspect(command) => command.run(&context, out),
            Command::Serve(command) => command.run(&context).await,
            Command::Executions(command) => command.run(&context, out).await,
            Command::Logs(command) => command.run(&context, out).await,
            Command::Items(command) => command.run(&context, out).await,
            Command::Build(command) => command.run(),
            Command::New(command) => command.run(out),
            Command::Deploy(command) => command.run(out).await,
            Command::Versions(command) => command.run(out).await,
            Command::Rollback(command) => command.run(out).await,
            Command::Undeploy(command) => command.run(out).await,
            Command::Push(command) => command.run(out).await,
            Command::Token(command) => command.run(out),
        }
    })
}
