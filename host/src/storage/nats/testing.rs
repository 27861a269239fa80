//! One three-node cluster shared by the unit tests of the NATS stores, started on first use.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::cluster::{LocalCluster, find_nats_server};
use super::{Nats, NatsOptions};

/// Debian's `nats-server`, installed when missing (as the browser tests install Chromium).
pub(crate) fn nats_server() -> PathBuf {
    if let Some(binary) = find_nats_server() {
        return binary;
    }
    let status = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
    assert!(status(Command::new("apt-get").args(["update", "-qq"])), "apt-get update failed");
    assert!(
        status(Command::new("apt-get").args(["install", "-y", "-qq", "--no-install-recommends", "nats-server"])),
        "cannot install nats-server"
    );
    find_nats_server().expect("nats-server installed")
}

/// The shared cluster's addresses.
fn cluster() -> &'static (LocalCluster, tempfile::TempDir) {
    static CLUSTER: OnceLock<(LocalCluster, tempfile::TempDir)> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cluster = LocalCluster::start(&nats_server(), dir.path(), 3).expect("start a local NATS cluster");
        (cluster, dir)
    })
}

/// A connection to the shared cluster in a namespace of its own (nothing another test made is
/// visible), with three replicas.
pub(crate) async fn nats() -> Nats {
    let mut options = NatsOptions::parse(&cluster().0.backend()).unwrap();
    options.namespace = format!("t{}", super::random_id());
    Nats::connect(&options).await.expect("connect to the local NATS cluster")
}

/// Two connections to the shared cluster in one fresh namespace: two nodes of one deployment.
pub(crate) async fn two_nodes() -> (Nats, Nats) {
    let mut options = NatsOptions::parse(&cluster().0.backend()).unwrap();
    options.namespace = format!("t{}", super::random_id());
    let connect = || async { Nats::connect(&options).await.expect("connect to the local NATS cluster") };
    (connect().await, connect().await)
}
