//! Deploys on a running `host serve` (a real process on loopback):
//!
//! * the time from starting `host deploy` (pack, upload, check, compile or cache hit, swap) to the
//!   first call answered by the new version: once with an empty compile cache, then for each of
//!   `BENCH_ROUNDS` versions that differ in config (the component is cached);
//! * calls failed while versions are swapped under load (goal: 0): `BENCH_CALLERS` threads call
//!   the app without pause, first for `BENCH_SECS` seconds without deploys (the baseline), then
//!   for as long again while versions are deployed one after the other; calls per second of both.
//!
//! Run with `cargo bench -p host --bench deploy`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{Children, Error, env_number, free_port, log_file, request_blocking, wait_ready};

const GREETING: &str = "/v1/apps/counter/functions/counter.greeting";

/// The counter example's manifest with absolute paths and `greeting` set to `v{n}`: one more
/// version of the app, with its own bundle digest and the same component.
fn version(dir: &Path, root: &Path, n: usize) -> Result<PathBuf, Error> {
    let wasm = root.join("target/wasm32-wasip2/release/counter.wasm");
    let text = format!(
        "[app]\nname = \"counter\"\n\n[function.counter]\nsource = \"{}\"\ngrants = {{ kv = [\"default\"] }}\n\n[function.counter.config]\ngreeting = \"v{n}\"\n",
        wasm.display()
    );
    let path = dir.join(format!("v{n}/host.toml"));
    std::fs::create_dir_all(path.parent().expect("a folder"))?;
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `host deploy` of `manifest`, then calls until one answers with `v{n}`: the milliseconds.
fn deploy(rt: &tokio::runtime::Runtime, addr: SocketAddr, manifest: &Path, n: usize) -> Result<f64, Error> {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["deploy", "--no-build", "-f"])
        .arg(manifest)
        .args(["--remote", &format!("http://{addr}")])
        .output()?;
    if !out.status.success() {
        return Err(format!("host deploy failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let expected = format!("\"v{n}\"");
    while request_blocking(rt, addr, "POST", GREETING, Some("{}"))?.1 != expected {
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!("version {n} never answered").into());
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// Callers calling without pause until `stop`: (answered 200, failed).
fn load(addr: SocketAddr, callers: usize, stop: &AtomicBool) -> (u64, u64, Vec<String>) {
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..callers)
            .map(|_| {
                scope.spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    let (mut ok, mut failed, mut why) = (0u64, 0u64, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match request_blocking(&rt, addr, "POST", GREETING, Some("{}")) {
                            Ok((200, _)) => ok += 1,
                            Ok((status, body)) => {
                                failed += 1;
                                why.push(format!("{status} {body}"));
                            }
                            Err(error) => {
                                failed += 1;
                                why.push(error.to_string());
                            }
                        }
                    }
                    (ok, failed, why)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("caller")).fold((0, 0, Vec::new()), |(a, b, mut c), (x, y, z)| {
            c.extend(z);
            (a + x, b + y, c)
        })
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), Error> {
    let rounds: usize = env_number("BENCH_ROUNDS", 10);
    let callers: usize = env_number("BENCH_CALLERS", 4);
    let secs: u64 = env_number("BENCH_SECS", 3);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf();
    let built = Command::new("cargo")
        .args(["build", "--target", "wasm32-wasip2", "--release", "-p", "counter"])
        .current_dir(&root)
        .status()?;
    if !built.success() {
        return Err("building the counter example failed".into());
    }
    let dir = tempfile::tempdir()?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let log = dir.path().join("serve.log");
    let mut children = Children::default();
    let server = Command::new(env!("CARGO_BIN_EXE_host"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", &addr.to_string()])
        .stdout(log_file(&log)?)
        .stderr(log_file(&log)?)
        .spawn()?;
    children.add("host serve", server);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let child = &mut children.0.last_mut().expect("just added").1;
    wait_ready(&rt, addr, "/healthz", Some((child, &log)))?;

    let cold = deploy(&rt, addr, &version(dir.path(), &root, 0)?, 0)?;
    let mut warm = Vec::new();
    for n in 1..=rounds {
        warm.push(deploy(&rt, addr, &version(dir.path(), &root, n)?, n)?);
    }
    warm.sort_by(f64::total_cmp);

    let stop = AtomicBool::new(false);
    let (baseline, swapping, deployed) = std::thread::scope(|scope| -> Result<_, Error> {
        let timer = scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(secs));
            stop.store(true, Ordering::Relaxed);
        });
        let quiet = load(addr, callers, &stop);
        timer.join().expect("timer");
        let started = Instant::now();
        stop.store(false, Ordering::Relaxed);
        let callers_done = scope.spawn(|| load(addr, callers, &stop));
        let mut deployed = 0;
        while started.elapsed() < Duration::from_secs(secs) {
            let n = rounds + 1 + deployed;
            deploy(&rt, addr, &version(dir.path(), &root, n)?, n)?;
            deployed += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let busy = callers_done.join().expect("callers");
        Ok(((quiet, secs as f64), (busy, started.elapsed().as_secs_f64()), deployed))
    })?;

    println!("host deploy -> first call answered by the new version (counter example, {rounds} versions):");
    println!("  empty compile cache:      {cold:>8.1} ms");
    println!(
        "  component cached: median {:>8.1} ms   p90 {:>8.1} ms   max {:>8.1} ms",
        percentile(&warm, 0.5),
        percentile(&warm, 0.9),
        percentile(&warm, 1.0)
    );
    let ((quiet, quiet_secs), (busy, busy_secs)) = (baseline, swapping);
    let rate = |calls: u64, secs: f64| calls as f64 / secs;
    println!("calls under load ({callers} callers, a fresh connection per call):");
    println!("  no deploys:             {:>8.0} calls/s, {} failed", rate(quiet.0, quiet_secs), quiet.1);
    println!(
        "  during {deployed} swaps:        {:>8.0} calls/s, {} failed ({:.2}x the baseline rate, {busy_secs:.1} s)",
        rate(busy.0, busy_secs),
        busy.1,
        rate(busy.0, busy_secs) / rate(quiet.0, quiet_secs)
    );
    for why in busy.2.iter().chain(&quiet.2).take(5) {
        println!("    failed: {why}");
    }
    if busy.1 + quiet.1 > 0 {
        return Err("calls failed".into());
    }
    Ok(())
}
