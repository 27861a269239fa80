//! What the benches share: child processes, an HTTP/1.1 client, waiting until a server answers,
//! logs (for those that drive real `host serve` processes); test guests loaded into a host in
//! this process; settings from the environment; percentiles.

#![allow(dead_code)]

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

pub type Error = Box<dyn std::error::Error>;

/// The allocator of the `host` binary, so that benches of the library in this process measure
/// what `host serve` runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Child processes, killed (and reaped) when dropped, on success, error or panic alike.
#[derive(Default)]
pub struct Children(pub Vec<(String, Child)>);

impl Children {
    pub fn add(&mut self, name: &str, child: Child) {
        self.0.push((name.to_string(), child));
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (name, child) in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            if let Err(e) = child.wait() {
                eprintln!("waiting for {name}: {e}");
            }
        }
    }
}

pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// The `p`-th percentile (0-100) of `sorted`.
pub fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// A host on a fresh data dir with one app loaded; both folders are removed when dropped.
pub struct Loaded {
    pub host: host::Host,
    pub app: host::App,
    /// The manifest's folder and the data dir: bind them (`dirs: _dirs`) for as long as the host
    /// runs.
    pub dirs: [tempfile::TempDir; 2],
}

/// Build test guest `tests/guests/GUEST` (its component `WASM`.wasm) and load the app whose
/// manifest `manifest` writes, given the component's path, into a host on a fresh data dir.
pub fn load_guest(guest: &str, wasm: &str, manifest: impl FnOnce(&Path) -> String) -> Loaded {
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/guests");
    let built = guests.join(guest).join("host.toml");
    host::build::build(&host::manifest::Manifest::load(&built).unwrap()).unwrap();
    let wasm = guests.join(format!("../../target/wasm32-wasip2/release/{wasm}.wasm")).canonicalize().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.toml");
    std::fs::write(&path, manifest(&wasm)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let host = host::Host::builder().data_dir(data.path()).build().unwrap();
    let app = host.load(&path).unwrap();
    Loaded { host, app, dirs: [dir, data] }
}

pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One HTTP/1.1 request on a fresh connection: status and body.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), Error> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder().method(method).uri(path).header(hyper::header::HOST, addr.to_string());
    if body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = builder.body(Full::new(Bytes::from(body.unwrap_or("").to_string())))?;
    let response = sender.send_request(req).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

pub fn request_blocking(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), Error> {
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), request(addr, method, path, body)).await? })
}

/// Wait until `GET path` answers 200, while `child` (if any) is alive.
pub fn wait_ready(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    path: &str,
    child: Option<(&mut Child, &Path)>,
) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut child = child;
    loop {
        if let Ok((200, _)) = request_blocking(rt, addr, "GET", path, None) {
            return Ok(());
        }
        if let Some((c, log)) = child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            return Err(format!("exited with {status} before answering; its log:\n{}", tail(log)).into());
        }
        if Instant::now() > deadline {
            let log = child.map_or(String::new(), |(_, log)| tail(log));
            return Err(format!("GET http://{addr}{path} did not answer 200 within 120 s\n{log}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child's output file, opened for appending so that stdout and stderr do not overwrite each other.
pub fn log_file(path: &Path) -> std::io::Result<File> {
    File::options().create(true).append(true).open(path)
}

/// The last lines of a log file.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
