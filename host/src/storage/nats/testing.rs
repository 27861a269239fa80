//! One three-node cluster shared by the unit tests of the NATS stores, started on first use.

use std::sync::OnceLock;

use super::cluster::{LocalCluster, nats_server};
use super::{Nats, NatsOptions};

/// The shared cluster, started on first use (`nats-server` installed when missing).
fn cluster() -> &'static (LocalCluster, tempfile::TempDir) {
    static CLUSTER: OnceLock<(LocalCluster, tempfile::TempDir)> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cluster = LocalCluster::start(&nats_server().unwrap(), dir.path(), 3).expect("start a local NATS cluster");
        (cluster, dir)
    })
}

/// A second connection to the cluster of `nats`, in its namespace: another node.
pub(crate) async fn another_node(nats: &Nats) -> Nats {
    let mut options = NatsOptions::parse(&cluster().0.backend()).unwrap();
    options.namespace = nats.namespace.clone();
    Nats::connect(&options).await.expect("connect to the local NATS cluster")
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
