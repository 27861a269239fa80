//! A real OCI registry on loopback for tests: Debian's `docker-registry` (distribution 2.8),
//! installed with `apt-get` when missing (as the NATS tests install `nats-server`), on a free
//! port with its storage in a temp folder.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use host::storage::nats::cluster::watchdog;

/// A running `docker-registry serve`, killed when dropped (and by a watchdog if the test
/// process dies first). Deletes enabled.
pub struct Registry {
    process: Option<Child>,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The user [`Registry::start_with_password`] accepts, and its password.
pub const USER: (&str, &str) = ("ci", "secret");

/// `USER`'s htpasswd line (bcrypt is the only scheme the registry reads; cost 4 keeps it fast).
const HTPASSWD: &str = "ci:$2b$04$sYuQi/Q8FpL5cBkJORYVFus64.UAzQl.5FaK.FnL4EhlBum6OD6w2\n";

impl Registry {
    /// Start one with anonymous access and wait until it accepts connections.
    pub fn start() -> Registry {
        Registry::start_with("")
    }

    /// Start one that accepts only [`USER`], with HTTP basic authentication.
    pub fn start_with_password() -> Registry {
        Registry::start_with("auth:\n  htpasswd:\n    realm: test\n    path: htpasswd\n")
    }

    /// Start one with `auth` added to its config.
    fn start_with(auth: &str) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let addr = crate::common::free_addr();
        let config = dir.path().join("config.yml");
        std::fs::write(dir.path().join("htpasswd"), HTPASSWD).unwrap();
        let auth = auth.replace("path: htpasswd", &format!("path: {:?}", dir.path().join("htpasswd")));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {:?}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
                dir.path().join("storage")
            ),
        )
        .unwrap();
        let log = dir.path().join("registry.log");
        let mut child = Command::new(binary())
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        watchdog(child.id());
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if child.try_wait().unwrap().is_some() || start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("docker-registry did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry { process: Some(child), addr, _dir: dir }
    }

    /// Its `HOST:PORT`, the first part of a reference.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The reference `HOST:PORT/REPO_AND_TAG`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("{}/{repo_and_tag}", self.host())
    }

    /// Kill it (its port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `docker-registry` binary: `$DOCKER_REGISTRY`, else Debian's, installed once per test run
/// when missing.
fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let binary =
                std::env::var_os("DOCKER_REGISTRY").map_or_else(|| "/usr/bin/docker-registry".into(), PathBuf::from);
            if !binary.is_file() {
                for args in
                    [&["update", "-qq"][..], &["install", "-y", "-qq", "--no-install-recommends", "docker-registry"]]
                {
                    let status = Command::new("apt-get").args(args).stdout(Stdio::null()).status().unwrap();
                    assert!(status.success(), "`apt-get {}` failed: {status}", args.join(" "));
                }
            }
            binary
        })
        .clone()
}
