//! Capability adapters on their own, without compiling a guest: contexts exist only for what a
//! function is granted, and views enforce the grants and the call's `memory` limit. Each view's
//! WIT host traits are called directly, as a guest's imports would call them.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};

use super::memory::Limiter;
use super::{Contexts, Parts, Services, Setup, buckets, config, http, items, kv, nn, queues, topics};
use crate::manifest::{BucketsGrant, Grants, KvGrant, ModelSpec, QueueSpec, ResourceName, TopicsGrant};
use crate::storage::datasets::Cause;
use crate::store::Store;

mod items_view;
mod nn_view;
mod queues_view;
mod topics_view;

/// A host's services on a fresh data dir, with the sled store they share.
struct Env {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    services: Services,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let services = Services {
            kv: Arc::new(crate::storage::kv::sled::SledKv::new(store.clone())),
            blobs: Arc::new(crate::storage::blobs::local::LocalBlobs::new(dir.path().join("buckets"))),
            datasets: Arc::new(crate::storage::datasets::SledDatasets::new(store.clone(), dir.path().join("items"))),
            topics: crate::storage::topics::Topics::new(Arc::new(crate::storage::topics::SledTopics::new(
                store.clone(),
            ))),
            queues: Arc::new(crate::storage::queues::Queues::new(Arc::new(crate::storage::queues::SledQueues::new(
                store.clone(),
            )))),
            buckets_root: dir.path().join("buckets"),
            models: Arc::default(),
        };
        Env { dir, store, services }
    }
}

/// What the app and the function's manifest entry declare besides grants.
#[derive(Default)]
struct Declared {
    config: BTreeMap<String, String>,
    models: BTreeMap<String, ModelSpec>,
    queues: BTreeMap<String, QueueSpec>,
}

/// The parts a call lends its capabilities, held by a test instead of a call.
struct TestCall {
    contexts: Contexts,
    table: ResourceTable,
    memory: Limiter,
    cause: Option<Cause>,
}

impl TestCall {
    fn new(services: &Services, grants: Grants, declared: Declared, memory: u64) -> TestCall {
        let setup = Setup {
            app: "app",
            function: "f",
            grants: &Arc::new(grants),
            config: &declared.config,
            model_specs: &Arc::new(declared.models),
            queue_specs: &Arc::new(declared.queues),
            outbound: &Arc::new(super::http::AppOutbound::new(&Default::default()).unwrap()),
            metrics: &Arc::default(),
            services,
        };
        let contexts = Contexts::build(&setup);
        TestCall { contexts, table: ResourceTable::new(), memory: Limiter::new(memory, 100), cause: None }
    }

    fn parts(&mut self) -> Parts<'_> {
        let cause = self.cause.as_ref();
        Parts { contexts: &self.contexts, table: &mut self.table, memory: &mut self.memory, cause }
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
    let env = Env::new();
    let nothing = TestCall::new(&env.services, Grants::default(), Declared::default(), 1 << 20);
    // Only the outbound context, which refuses every request but counts it under the function.
    assert_eq!(nothing.contexts.granted.len(), 1, "a function granted nothing holds no other context");
    assert!(nothing.contexts.get::<http::Outbound>().is_some_and(|o| o.grant().is_empty()));
    let grants = Grants { kv: KvGrant(names(&["default"])), topics: TopicsGrant(names(&["t"])), ..Grants::default() };
    let config = BTreeMap::from([("k".to_string(), "v".to_string())]);
    let some = TestCall::new(&env.services, grants, Declared { config, ..Declared::default() }, 1 << 20);
    let c = &some.contexts;
    assert!(c.get::<kv::Kv>().is_some() && c.get::<topics::Topics>().is_some() && c.get::<config::Config>().is_some());
    assert!(c.get::<buckets::Buckets>().is_none() && c.get::<items::Items>().is_none());
    assert!(c.get::<queues::Queues>().is_none() && c.get::<nn::Nn>().is_none());
}

#[tokio::test]
async fn kv_view_enforces_grants_and_the_memory_limit() {
    use super::wasi::keyvalue::store::{Error, Host, HostBucket};
    let env = Env::new();
    let mut denied = TestCall::new(&env.services, Grants::default(), Declared::default(), 1 << 20);
    let opened = Host::open(&mut kv::View::from(denied.parts()), "default".into()).await.unwrap();
    assert!(matches!(opened, Err(Error::AccessDenied)), "no grant, no store");

    let grants = Grants { kv: KvGrant(names(&["default"])), ..Grants::default() };
    let mut call = TestCall::new(&env.services, grants, Declared::default(), 1 << 10);
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
    let env = Env::new();
    let grants = Grants { buckets: BucketsGrant(names(&["b"])), ..Grants::default() };
    let mut call = TestCall::new(&env.services, grants, Declared::default(), 1 << 10);
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
    assert!(env.dir.path().join("buckets/app/b/o").is_file());
}

#[tokio::test]
async fn config_without_a_table_has_no_values() {
    use super::wasi::config::store::Host;
    let env = Env::new();
    let mut call = TestCall::new(&env.services, Grants::default(), Declared::default(), 1 << 20);
    let mut view = config::View::from(call.parts());
    assert_eq!(Host::get(&mut view, "k".into()).await.unwrap().unwrap(), None);
    assert!(Host::get_all(&mut view).await.unwrap().unwrap().is_empty());
}
