//! Soak: `SOAK_CALLS` calls (default 1,000,000) through a real `host serve` process, alternating
//! `hello.greet` and `counter.increment` (on 16 counters, so the app's own data stays the same
//! size), from `SOAK_THREADS` client threads (default 4) on keep-alive connections. Prints the
//! server's resident memory (`VmRSS` of /proc/PID/status) and the size of its data dir at the start,
//! at every 10% and at the end, then the ratios end/start and end/half-way: what the host keeps
//! per call (execution records, metrics, logs) shows up as growth. The server keeps `SOAK_KEEP`
//! execution records per app (default 100,000, the default retention); once both apps have that
//! many and sled's log cleaning has caught up with the deletions, memory and data stay flat, so
//! the second half of a run long enough (at least 4 x `SOAK_KEEP` calls) should not grow.
//!
//! Run with `SOAK_CALLS=100000 cargo bench -p host --bench soak`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The server, killed (and reaped) when dropped, on success, error or panic alike.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| {
        v.trim().replace([',', '_'], "").parse().unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl Connection {
    fn open(addr: SocketAddr) -> Result<Connection, Error> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Connection { addr, reader: BufReader::new(stream) })
    }

    /// `POST path` with a JSON body: the status and the body of the answer.
    fn post(&mut self, path: &str, body: &str) -> Result<(u16, Vec<u8>), Error> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.reader.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer)?;
        Ok((status, answer))
    }
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes of the files under `dir` (their lengths) and how many there are.
fn dir_size(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                let (bytes, files) = dir_size(&entry.path());
                total = (total.0 + bytes, total.1 + files);
            }
            Ok(_) => total = (total.0 + entry.metadata().map_or(0, |m| m.len()), total.1 + 1),
            Err(_) => {}
        }
    }
    total
}

/// One line of the report; the measurement (RSS KiB, data bytes).
fn report(label: &str, done: u64, started: Instant, pid: u32, data: &Path) -> (u64, u64) {
    let (rss, (bytes, files)) = (rss_kib(pid), dir_size(data));
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label:>6} {done:>9} calls  {secs:>7.1} s  {:>8.0} calls/s  RSS {:>8.1} MiB  data {:>9.1} MiB in {files} files",
        done as f64 / secs.max(1e-9),
        rss as f64 / 1024.0,
        bytes as f64 / (1024.0 * 1024.0),
    );
    (rss, bytes)
}

/// Calls from one client thread until `next` passes `total`: every answer must be a 200.
fn client(addr: SocketAddr, next: &AtomicU64, total: u64, done: &AtomicU64) -> Result<(), Error> {
    let mut connection = Connection::open(addr)?;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= total {
            return Ok(());
        }
        let (path, body) = match n % 2 {
            0 => ("/v1/apps/hello/functions/hello.greet", r#"{"who":{"name":"Ada","age":36}}"#.to_string()),
            _ => ("/v1/apps/counter/functions/counter.increment", format!(r#"["soak-{}", 1]"#, n % 16)),
        };
        let (status, answer) = connection.post(path, &body)?;
        if status != 200 {
            return Err(format!("call {n} to {path}: {status} {}", String::from_utf8_lossy(&answer)).into());
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> Result<(), Error> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let host_bin = env!("CARGO_BIN_EXE_host");
    let total = env_number("SOAK_CALLS", 1_000_000);
    let threads = env_number("SOAK_THREADS", 4);
    let keep = env_number("SOAK_KEEP", 100_000);
    let manifests = [root.join("examples/hello/host.toml"), root.join("examples/counter/host.toml")];
    for manifest in &manifests {
        let status = Command::new(host_bin).arg("build").arg("-f").arg(manifest).current_dir(&root).status()?;
        if !status.success() {
            return Err(format!("`host build -f {}` failed with {status}", manifest.display()).into());
        }
    }
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("data");
    let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut command = Command::new(host_bin);
    command.arg("--data").arg(&data).args(["serve", "--listen", &addr.to_string()]);
    command.args(["--keep-executions", &keep.to_string()]);
    for manifest in &manifests {
        command.arg("-f").arg(manifest);
    }
    let server = Server(command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?);
    let pid = server.0.id();
    let ready = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if ready.elapsed() > Duration::from_secs(120) {
            return Err("host serve did not start listening within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "soak: {total} calls, {threads} client threads, {keep} records kept per app, host serve pid {pid} on {addr}"
    );
    let (next, done) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let started = Instant::now();
    let first = report("start", 0, started, pid, &data);
    let clients: Vec<_> = (0..threads)
        .map(|_| {
            let (next, done, failure) = (next.clone(), done.clone(), failure.clone());
            std::thread::spawn(move || {
                if let Err(e) = client(addr, &next, total, &done) {
                    *failure.lock().unwrap() = Some(e.to_string());
                    next.store(u64::MAX / 2, Ordering::Relaxed); // stop the others
                }
            })
        })
        .collect();
    let (mut tenth, mut half) = (1, None);
    while clients.iter().any(|c| !c.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        while tenth < 10 && done.load(Ordering::Relaxed) >= total * tenth / 10 {
            let measured = report(&format!("{}%", tenth * 10), done.load(Ordering::Relaxed), started, pid, &data);
            if tenth == 5 {
                half = Some(measured);
            }
            tenth += 1;
        }
    }
    for c in clients {
        c.join().expect("a client thread panicked");
    }
    if let Some(failure) = failure.lock().unwrap().take() {
        return Err(failure.into());
    }
    let last = report("end", done.load(Ordering::Relaxed), started, pid, &data);
    println!(
        "end/start: RSS x{:.2}, data dir x{:.2} ({:+.1} bytes of data per call)",
        last.0 as f64 / first.0.max(1) as f64,
        last.1 as f64 / first.1.max(1) as f64,
        (last.1 as f64 - first.1 as f64) / total.max(1) as f64,
    );
    if let Some(half) = half {
        println!(
            "end/half-way: RSS x{:.2}, data dir x{:.2}{}",
            last.0 as f64 / half.0.max(1) as f64,
            last.1 as f64 / half.1.max(1) as f64,
            if total < 4 * keep { " (a short run: under 4 x SOAK_KEEP calls, records still accumulate)" } else { "" },
        );
    }
    drop(server);
    Ok(())
}
