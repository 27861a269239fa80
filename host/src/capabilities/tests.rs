//! Capability adapters on their own, without compiling a guest: contexts exist only for what a
//! function is granted, and views enforce the grants and the call's `memory` limit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};

use super::memory::Limiter;
use super::{Contexts, Parts, Services, Setup, buckets, config, items, kv, nn, queues, topics};
use crate::manifest::{BucketsGrant, Grants, KvGrant, ResourceName, TopicsGrant};

/// The parts a call lends its capabilities, held by a test instead of a call.
struct TestCall {
    contexts: Contexts,
    table: ResourceTable,
    memory: Limiter,
}

impl TestCall {
    fn new(services: &Services, grants: Grants, config: BTreeMap<String, String>, memory: u64) -> TestCall {
        let setup = Setup {
            app: "app",
            grants: &Arc::new(grants),
            config: &config,
            model_specs: &Arc::default(),
            queue_specs: &Arc::default(),
            services,
        };
        TestCall { contexts: Contexts::build(&setup), table: ResourceTable::new(), memory: Limiter::new(memory, 100) }
    }

    fn parts(&mut self) -> Parts<'_> {
        Parts { contexts: &self.contexts, table: &mut self.table, memory: &mut self.memory, cause: None }
    }
}

fn services(dir: &Path) -> Services {
    let store = Arc::new(crate::store::Store::open(&dir.join("db")).unwrap());
    Services {
        kv: Arc::new(crate::storage::kv::sled::SledKv::new(store.clone())),
        blobs: Arc::new(crate::storage::blobs::local::LocalBlobs::new(dir.join("buckets"))),
        datasets: Arc::new(crate::storage::datasets::SledDatasets::new(store.clone(), dir.join("items"))),
        topics: crate::storage::topics::Topics::embedded(&store),
        queues: Arc::new(crate::storage::queues::Queues::new(Arc::new(crate::storage::queues::SledQueues::new(store)))),
        buckets_root: dir.join("buckets"),
        models: Arc::default(),
    }
}

fn names(names: &[&str]) -> Vec<ResourceName> {
    names.iter().map(|n| ResourceName(n.to_string())).collect()
}

fn borrow<T: 'static>(owned: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(owned.rep())
}

#[test]
fn contexts_are_built_only_for_what_a_function_is_granted() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path());
    let nothing = TestCall::new(&services, Grants::default(), BTreeMap::new(), 1 << 20);
    assert!(nothing.contexts.granted.is_empty(), "a function granted nothing holds no context");
    let grants = Grants { kv: KvGrant(names(&["default"])), topics: TopicsGrant(names(&["t"])), ..Grants::default() };
    let config = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let some = TestCall::new(&services, grants, config, 1 << 20);
    let c = &some.contexts;
    assert!(c.get::<kv::Kv>().is_some() && c.get::<topics::Topics>().is_some() && c.get::<config::Config>().is_some());
    assert!(c.get::<buckets::Buckets>().is_none() && c.get::<items::Items>().is_none());
    assert!(c.get::<queues::Queues>().is_none() && c.get::<nn::Nn>().is_none());
}

#[tokio::test]
async fn kv_view_enforces_grants_and_the_memory_limit() {
    use super::wasi::keyvalue::store::{Error, Host, HostBucket};
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path());
    let mut denied = TestCall::new(&services, Grants::default(), BTreeMap::new(), 1 << 20);
    let opened = Host::open(&mut kv::View::from(denied.parts()), "default".into()).await.unwrap();
    assert!(matches!(opened, Err(Error::AccessDenied)), "no grant, no store");

    let grants = Grants { kv: KvGrant(names(&["default"])), ..Grants::default() };
    let mut call = TestCall::new(&services, grants, BTreeMap::new(), 1 << 10);
    let mut view = kv::View::from(call.parts());
    assert!(matches!(Host::open(&mut view, "other".into()).await.unwrap(), Err(Error::AccessDenied)));
    let bucket = Host::open(&mut view, "default".into()).await.unwrap().unwrap();
    HostBucket::set(&mut view, borrow(&bucket), "small".into(), vec![1; 10]).await.unwrap().unwrap();
    HostBucket::set(&mut view, borrow(&bucket), "big".into(), vec![2; 2 << 10]).await.unwrap().unwrap();
    let small = HostBucket::get(&mut view, borrow(&bucket), "small".into()).await.unwrap().unwrap();
    assert_eq!(small, Some(vec![1; 10]));
    let big = HostBucket::get(&mut view, borrow(&bucket), "big".into()).await;
    let message = big.expect_err("a value bigger than the memory limit ends the call").to_string();
    assert!(message.contains("the value of `big` would need 2048 bytes"), "{message}");
    assert_eq!(call.memory.denied_memory(), Some(2 << 10), "reported as the memory limit");
}

#[tokio::test]
async fn buckets_view_refuses_reads_past_the_memory_limit_before_reading() {
    use super::host::api::buckets::{Error, Host, HostBucket};
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path());
    let grants = Grants { buckets: BucketsGrant(names(&["b"])), ..Grants::default() };
    let mut call = TestCall::new(&services, grants, BTreeMap::new(), 1 << 10);
    let mut view = buckets::View::from(call.parts());
    assert!(matches!(Host::open(&mut view, "other".into()).await.unwrap(), Err(Error::AccessDenied)));
    let bucket = Host::open(&mut view, "b".into()).await.unwrap().unwrap();
    HostBucket::write(&mut view, borrow(&bucket), "o".into(), vec![7; 4 << 10]).await.unwrap().unwrap();
    let part = HostBucket::read_range(&mut view, borrow(&bucket), "o".into(), 100, 10).await.unwrap();
    assert_eq!(part.unwrap(), vec![7; 10]);
    let whole = HostBucket::read(&mut view, borrow(&bucket), "o".into()).await;
    assert!(whole.is_err(), "an object bigger than the memory limit ends the call");
    let missing = HostBucket::read(&mut view, borrow(&bucket), "nothing".into()).await.unwrap();
    assert!(matches!(missing, Err(Error::NoSuchKey)));
    assert!(dir.path().join("buckets/app/b/o").is_file());
}

#[tokio::test]
async fn config_without_a_table_has_no_values() {
    use super::wasi::config::store::Host;
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path());
    let mut call = TestCall::new(&services, Grants::default(), BTreeMap::new(), 1 << 20);
    let mut view = config::View::from(call.parts());
    assert_eq!(Host::get(&mut view, "k".into()).await.unwrap().unwrap(), None);
    assert!(Host::get_all(&mut view).await.unwrap().unwrap().is_empty());
}
