//! [`LocalCluster`]: a JetStream cluster of `nats-server` processes on loopback, each node with
//! its own store dir, for tests, benchmarks and trying a cluster on one machine.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One node's ports and process.
struct Node {
    client: u16,
    monitor: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

/// `nats-server` processes forming one JetStream cluster on 127.0.0.1, stopped when dropped
/// (and by a watchdog when the process that started them dies without dropping it).
pub struct LocalCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
}

/// How long a cluster may take to elect its JetStream leader.
const READY_WITHIN: Duration = Duration::from_secs(60);

impl LocalCluster {
    /// Start `size` nodes with their configs, store dirs and logs under `dir`, and wait until
    /// the cluster has a JetStream leader. `binary` is the `nats-server` to run.
    pub fn start(binary: &Path, dir: &Path, size: usize) -> std::io::Result<LocalCluster> {
        std::fs::create_dir_all(dir)?;
        // Every listener is held until all ports are picked, so that no two are the same.
        let listeners = (0..size * 3).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
        let picked = listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<Vec<_>, _>>()?;
        drop(listeners);
        let ports: Vec<[u16; 3]> = picked.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
        let routes: Vec<String> = ports.iter().map(|[_, route, _]| format!("nats-route://127.0.0.1:{route}")).collect();
        let mut nodes = Vec::new();
        for (i, [client, route, monitor]) in ports.iter().enumerate() {
            let store = dir.join(format!("n{i}"));
            let config = dir.join(format!("n{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                     jetstream {{ store_dir: {store:?}, max_memory_store: 256MB, max_file_store: 4GB }}\n\
                     cluster {{ name: local, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                    routes.join(", ")
                ),
            )?;
            nodes.push(Node {
                client: *client,
                monitor: *monitor,
                config,
                log: dir.join(format!("n{i}.log")),
                process: None,
            });
        }
        let mut cluster = LocalCluster { binary: binary.to_path_buf(), nodes };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// The client addresses, `nats://127.0.0.1:PORT` each.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client)).collect()
    }

    /// The backend address list for `--backend`: `nats://HOST:PORT,HOST:PORT,...`.
    pub fn backend(&self) -> String {
        let addresses: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.client)).collect();
        format!("nats://{}", addresses.join(","))
    }

    /// Kill node `i` with SIGKILL (nothing flushed, no goodbye to the cluster).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.nodes[i].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Start node `i` again on its ports and store dir, and wait until it is healthy.
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_ready()
    }

    /// Wait until every running node is healthy and the cluster has a JetStream leader.
    pub fn wait_ready(&self) -> std::io::Result<()> {
        let start = Instant::now();
        loop {
            let running = self.nodes.iter().filter(|n| n.process.is_some());
            // JetStream up on every node; a restarted node catches up on its streams afterwards,
            // while their leaders serve (full health would wait for every stream's catch-up).
            let healthy = running
                .clone()
                .all(|n| http_get(n.monitor, "/healthz?js-enabled-only=true").is_some_and(|b| b.contains("ok")));
            let leader = running.into_iter().any(|n| {
                http_get(n.monitor, "/jsz").is_some_and(|body| {
                    serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["meta_cluster"]["leader"].as_str().map(|l| !l.is_empty()))
                        .unwrap_or(false)
                })
            });
            if healthy && leader {
                return Ok(());
            }
            if start.elapsed() > READY_WITHIN {
                let logs: Vec<String> = self.nodes.iter().map(|n| n.log.display().to_string()).collect();
                return Err(std::io::Error::other(format!(
                    "the NATS cluster did not become ready in {READY_WITHIN:?}; logs: {}",
                    logs.join(", ")
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let node = &mut self.nodes[i];
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.config)
            .arg("-l")
            .arg(&node.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot start {:?}: {e}", self.binary)))?;
        watchdog(child.id());
        node.process = Some(child);
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Kill `pid` once this process is gone, however it ends (a test binary exits without
/// dropping its statics; a panic may abort). Also for the test harness's other servers.
pub fn watchdog(pid: u32) {
    let me = std::process::id();
    let script = format!("while kill -0 {me} 2>/dev/null; do sleep 1; done; kill -9 {pid} 2>/dev/null");
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// The body of `GET path` on the monitoring port, if it answers.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// `nats-server` as [`find_nats_server`] finds it, else installed first with Debian's
/// `apt-get` (for test harnesses on a fresh machine, as the browser tests install Chromium).
pub fn nats_server() -> std::io::Result<PathBuf> {
    if let Some(binary) = find_nats_server() {
        return Ok(binary);
    }
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "--no-install-recommends", "nats-server"]] {
        let status = Command::new("apt-get").args(args).stdout(Stdio::null()).status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!("`apt-get {}` failed: {status}", args.join(" "))));
        }
    }
    find_nats_server().ok_or_else(|| std::io::Error::other("nats-server is not on the PATH after installing it"))
}

/// Where `nats-server` is: `$NATS_SERVER`, else the first on the `PATH` or in `/usr/sbin`.
pub fn find_nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}
