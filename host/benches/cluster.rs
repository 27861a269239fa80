//! The embedded store against a NATS JetStream cluster, and one host node against several:
//!
//! * `ops`: per-operation latency of KV get / set / increment and of a queue message's
//!   send → receive → complete, on sled (a temporary data dir) and on NATS, one after another;
//! * `nodes`: `host serve --backend nats://…` on 1 node and on `BENCH_NODES` nodes (default 3):
//!   calls of `counter.increment` (one durable KV increment each) driven by `wrk` against every
//!   node at once, checked against the counter (every acknowledged increment counted once); then
//!   `BENCH_MESSAGES` (default 500) queue messages sent and handled by the `[[trigger.queue]]` of
//!   every node (`tests/guests/messaging`), timed from the first send to the last handled.
//!
//! Run with `cargo bench -p host --bench cluster [ops|nodes]`. By default a three-node
//! `nats-server` cluster is started on loopback; `BENCH_NATS=nats://HOST:PORT,...` uses another
//! (then the host nodes still run here, on loopback ports). `BENCH_SECS` (default 8) per wrk run,
//! `BENCH_OPS` (default 300) operations per latency row. On a machine smaller than the cluster,
//! nodes share the cores: read the per-node efficiency, (N-node rate / 1-node rate) / N, as
//! what is left after sharing, not as a property of the design.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use host::storage::kv::KvBackend;
use host::storage::kv::nats::NatsKv;
use host::storage::kv::sled::SledKv;
use host::storage::nats::cluster::{LocalCluster, nats_server};
use host::storage::nats::{Nats, NatsOptions};
use host::storage::queues::{NatsQueues, QueueBackend, QueueSettings, Queues, SledQueues};

type Error = Box<dyn std::error::Error>;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
        .unwrap_or(default)
}

/// Mean and 99th percentile, in microseconds, of `n` runs of `op`.
async fn time<F, Fut>(n: usize, mut op: F) -> (f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        op(i).await;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    (samples.iter().sum::<f64>() / n as f64, samples[(n * 99 / 100).min(n - 1)])
}

/// The latency rows of one backend: (operation, mean µs, p99 µs).
async fn rows(kv: &dyn KvBackend, queues: Arc<dyn QueueBackend>, n: usize) -> Vec<(&'static str, f64, f64)> {
    let store = kv.open("bench", "ops").await.unwrap();
    let value = Bytes::from_static(b"a value of some thirty-two bytes");
    let set = time(n, |i| {
        let (store, value) = (store.clone(), value.clone());
        async move { store.put(&format!("k{i}"), value).await.unwrap() }
    })
    .await;
    let get = time(n, |i| {
        let store = store.clone();
        async move { assert!(store.get(&format!("k{i}")).await.unwrap().is_some()) }
    })
    .await;
    let increment = time(n, |_| {
        let store = store.clone();
        async move {
            store.increment("counter", 1).await.unwrap();
        }
    })
    .await;
    let queues = Queues::new(queues);
    let queue = queues.open("bench", "ops", QueueSettings { max_attempts: 5 }).unwrap();
    let message = time(n, |_| {
        let (queue, queues) = (queue.clone(), &queues);
        async move {
            queue.send(b"job".to_vec(), Duration::ZERO).await.unwrap();
            let leased = queue.receive(queues, 1, Duration::from_secs(30)).await.unwrap();
            queue.complete(&leased[0].lease).await.unwrap();
        }
    })
    .await;
    vec![
        ("KV set", set.0, set.1),
        ("KV get", get.0, get.1),
        ("KV increment", increment.0, increment.1),
        ("queue send→receive→complete", message.0, message.1),
    ]
}

async fn ops(nats: &Nats, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(host::store::Store::open(&dir.path().join("db")).unwrap());
    let sled = rows(&SledKv::new(store.clone()), Arc::new(SledQueues::new(store)), n).await;
    let networked = rows(&NatsKv::new(nats.clone()), Arc::new(NatsQueues::new(nats.clone())), n).await;
    println!("\n{n} operations each, one after another (µs)");
    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "operation", "sled mean", "sled p99", "NATS mean", "NATS p99", "ratio"
    );
    for ((name, s_mean, s_p99), (_, n_mean, n_p99)) in sled.iter().zip(&networked) {
        println!("{name:<30} {s_mean:>10.1} {s_p99:>10.1} {n_mean:>10.1} {n_p99:>10.1} {:>7.1}x", n_mean / s_mean);
    }
}

/// `host serve` processes, killed when dropped.
struct Nodes(Vec<(Child, SocketAddr, tempfile::TempDir)>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for (child, ..) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_nodes(count: usize, backend: &str, cache: &Path, manifests: &[PathBuf]) -> Result<Nodes, Error> {
    let mut nodes = Nodes(Vec::new());
    for _ in 0..count {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let data = tempfile::tempdir()?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
        command.arg("--data").arg(data.path()).arg("--cache").arg(cache).args(["--backend", backend]);
        command.args(["serve", "--listen", &addr.to_string()]);
        for manifest in manifests {
            command.arg("-f").arg(manifest);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        nodes.0.push((child, addr, data));
    }
    for (child, addr, _) in &mut nodes.0 {
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(*addr).is_err() {
            if child.try_wait()?.is_some() || Instant::now() > deadline {
                return Err(format!("host serve on {addr} did not start").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(nodes)
}

/// One HTTP/1.1 request on a fresh connection: status and body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), Error> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no answer head")?;
    let status = std::str::from_utf8(&answer[9..12])?.parse()?;
    Ok((status, answer[split + 4..].to_vec()))
}

/// Calls per second of `counter.increment` with `wrk` on every node at once, and whether the
/// counter moved by exactly the number of successful calls.
fn calls(nodes: &Nodes, secs: usize, script: &Path) -> Result<(f64, bool), Error> {
    let counter = |addr| -> Result<i64, Error> {
        let (status, body) = request(addr, "GET", "/v1/apps/counter/kv/default/bench-hits", b"")?;
        Ok(if status == 404 { 0 } else { i64::from_le_bytes(body[..].try_into()?) })
    };
    let before = counter(nodes.0[0].1)?;
    let runs: Vec<_> = nodes
        .0
        .iter()
        .map(|(_, addr, _)| {
            Command::new("wrk")
                .args(["-t1", "-c16", &format!("-d{secs}s"), "-s"])
                .arg(script)
                .arg(format!("http://{addr}/v1/apps/counter/functions/counter.increment"))
                .output()
        })
        .collect();
    let (mut total, mut ok_calls) = (0.0, 0i64);
    for run in runs {
        let text = String::from_utf8_lossy(&run?.stdout).into_owned();
        let number = |prefix: &str| -> f64 {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .and_then(|r| r.split_whitespace().next()?.parse().ok())
                .unwrap_or(0.0)
        };
        total += number("Requests/sec:");
        let requests = text
            .lines()
            .find_map(|l| l.split_once(" requests in "))
            .and_then(|(n, _)| n.trim().parse::<i64>().ok())
            .unwrap_or(0);
        ok_calls += requests - number("Non-2xx or 3xx responses:") as i64;
    }
    // wrk counts a call cut off at the end of its time as not made; the server may have done it.
    let moved = counter(nodes.0[0].1)? - before;
    Ok((total, moved >= ok_calls && moved <= ok_calls + 16 * nodes.0.len() as i64))
}

/// Seconds from the first of `count` messages sent (round robin over the nodes) to the last
/// handled by the queue triggers.
fn queue_throughput(nodes: &Nodes, run: usize, count: usize) -> Result<f64, Error> {
    let started = Instant::now();
    for i in 0..count {
        let addr = nodes.0[i % nodes.0.len()].1;
        let (status, _) = request(addr, "POST", "/v1/apps/messaging/queues/jobs", format!("r{run}-{i}").as_bytes())?;
        assert_eq!(status, 201);
    }
    let prefix = format!("msg%2Fr{run}-");
    loop {
        let (_, body) = request(nodes.0[0].1, "GET", &format!("/v1/apps/messaging/kv/seen?prefix={prefix}"), b"")?;
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        if page["keys"].as_array().map_or(0, Vec::len) >= count {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err("the queue was not drained in 10 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn nodes(backend: &str, root: &Path) -> Result<(), Error> {
    let (count, secs, messages) =
        (env_number("BENCH_NODES", 3), env_number("BENCH_SECS", 8), env_number("BENCH_MESSAGES", 500));
    let manifests = [root.join("examples/counter/host.toml"), root.join("tests/guests/messaging/host.toml")];
    for manifest in &manifests {
        host::build::build(&host::manifest::Manifest::load(manifest)?)?;
    }
    let cache = tempfile::tempdir()?;
    let script = cache.path().join("increment.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '[\"bench-hits\", 1]'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )?;
    println!(
        "\n{:<6} {:>14} {:>10} {:>16} {:>14} {:>10}",
        "nodes", "increments/s", "per node", "all counted", "messages/s", "per node"
    );
    let mut base = None;
    for (run, n) in [1, count].into_iter().enumerate() {
        let nodes = start_nodes(n, backend, cache.path(), &manifests)?;
        let (rate, counted) = calls(&nodes, secs, &script)?;
        let drained = queue_throughput(&nodes, run, messages)?;
        let throughput = messages as f64 / drained;
        let (base_rate, base_throughput) = *base.get_or_insert((rate, throughput));
        println!(
            "{n:<6} {rate:>14.0} {:>9.0}% {counted:>16} {throughput:>14.0} {:>9.0}%",
            100.0 * rate / base_rate / n as f64,
            100.0 * throughput / base_throughput / n as f64
        );
    }
    Ok(())
}

fn main() {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |key: &str| filters.is_empty() || filters.iter().any(|f| f == key);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, backend) = match std::env::var("BENCH_NATS") {
        Ok(backend) => (None, backend),
        Err(_) => {
            let cluster = LocalCluster::start(&nats_server().unwrap(), dir.path(), 3).unwrap();
            let backend = cluster.backend();
            (Some(cluster), backend)
        }
    };
    println!("NATS: {backend}; {} cores", std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if wanted("ops") {
        // A namespace of its own: nothing of a deployment sharing the cluster is touched.
        let mut options = NatsOptions::parse(&backend).unwrap();
        options.namespace = format!("bench{}", std::process::id());
        let nats = runtime.block_on(Nats::connect(&options)).unwrap();
        runtime.block_on(ops(&nats, env_number("BENCH_OPS", 300)));
    }
    if wanted("nodes") {
        nodes(&backend, &root).unwrap();
    }
}
