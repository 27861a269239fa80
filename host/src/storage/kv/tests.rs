//! Behaviour every [`KvBackend`] must have, written over `&dyn KvBackend` so that each backend
//! runs the same checks; the sled backend runs them on a temporary folder below.

use std::sync::Arc;

use bytes::Bytes;

use super::{KvBackend, KvError, KvStore, PAGE, Swap};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn value(store: &dyn KvStore, key: &str) -> Option<Bytes> {
    store.get(key).await.unwrap().map(|e| e.value)
}

/// Set, get, overwrite, delete; empty values are values; stores and apps are separate.
pub(crate) async fn get_put_delete(kv: &dyn KvBackend) {
    let store = kv.open("app", "s").await.unwrap();
    assert_eq!(value(&*store, "k").await, None);
    assert!(!store.exists("k").await.unwrap());
    store.put("k", b("one")).await.unwrap();
    store.put("k", b("two")).await.unwrap();
    assert_eq!(value(&*store, "k").await, Some(b("two")));
    store.put("empty", Bytes::new()).await.unwrap();
    assert_eq!(value(&*store, "empty").await, Some(Bytes::new()), "an empty value is not an absent one");
    assert!(store.exists("empty").await.unwrap());
    for (app, name) in [("app", "other"), ("other", "s")] {
        assert_eq!(value(&*kv.open(app, name).await.unwrap(), "k").await, None, "{app}/{name} is separate");
    }
    store.delete("k").await.unwrap();
    store.delete("k").await.unwrap();
    assert_eq!(value(&*store, "k").await, None);
    for key in ["", "a/b", "ü spaces and \"quotes\"", "..", "a\0b"] {
        store.put(key, b(key)).await.unwrap();
        assert_eq!(value(&*store, key).await, Some(b(key)), "key {key:?} is any string");
    }
}

/// A put conditional on a revision succeeds once; the loser sees the winner's entry.
pub(crate) async fn compare_and_swap(kv: &dyn KvBackend) {
    let store = kv.open("app", "cas").await.unwrap();
    assert_eq!(store.put_if("k", None, b("first")).await.unwrap(), Swap::Done);
    let Swap::Raced(Some(current)) = store.put_if("k", None, b("again")).await.unwrap() else {
        panic!("creating an existing key must fail")
    };
    assert_eq!(current.value, b("first"));
    let seen = store.get("k").await.unwrap().unwrap();
    assert_eq!(store.put_if("k", Some(&seen.revision), b("second")).await.unwrap(), Swap::Done);
    match store.put_if("k", Some(&seen.revision), b("third")).await.unwrap() {
        Swap::Raced(Some(now)) => assert_eq!(now.value, b("second")),
        other => panic!("a stale revision must lose, got {other:?}"),
    }
    store.delete("k").await.unwrap();
    assert_eq!(store.put_if("k", Some(&seen.revision), b("x")).await.unwrap(), Swap::Raced(None));
}

/// Of many writers racing from the same revision, exactly one wins.
pub(crate) async fn cas_race(kv: Arc<dyn KvBackend>) {
    let store = kv.open("app", "race").await.unwrap();
    store.put("k", b("start")).await.unwrap();
    let seen = store.get("k").await.unwrap().unwrap().revision;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, seen) = (store.clone(), seen.clone());
            tokio::spawn(async move { store.put_if("k", Some(&seen), b(&format!("writer {i}"))).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Swap::Done => winners += 1,
            Swap::Raced(now) => assert!(now.unwrap().value.starts_with(b"writer "), "losers see a winner's value"),
        }
    }
    assert_eq!(winners, 1);
}

/// Concurrent increments lose no update; a value that is not a counter and overflow are errors.
pub(crate) async fn increments_race(kv: Arc<dyn KvBackend>) {
    let store = kv.open("app", "counters").await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    store.increment("n", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.increment("n", 0).await.unwrap(), 200);
    assert_eq!(store.increment("n", -201).await.unwrap(), -1);
    store.put("text", b("abc")).await.unwrap();
    assert_eq!(store.increment("text", 1).await, Err(KvError::NotACounter { key: "text".into(), len: 3 }));
    store.put("max", Bytes::copy_from_slice(&i64::MAX.to_le_bytes())).await.unwrap();
    assert_eq!(store.increment("max", 1).await, Err(KvError::Overflow { key: "max".into() }));
}

/// Pages of keys by prefix, resumed by cursor, every key exactly once and in order.
pub(crate) async fn list_pages(kv: &dyn KvBackend) {
    let store = kv.open("app", "list").await.unwrap();
    let mut all: Vec<String> = (0..25).map(|i| format!("p/{i:03}")).collect();
    let pairs = all.iter().map(|k| (k.clone(), b(k))).chain([("q".to_string(), b("other"))]).collect();
    store.put_many(pairs).await.unwrap();
    let store = &store;
    let seen = crate::storage::every_page(10, |cursor| async move {
        let page = store.list("p/", cursor.as_deref(), 10).await.unwrap();
        (page.keys, page.cursor)
    })
    .await;
    all.sort();
    assert_eq!(seen, all);
    let everything = store.list("", None, PAGE).await.unwrap();
    assert_eq!((everything.keys.len(), everything.cursor), (26, None));
    let empty = store.list("zzz", None, PAGE).await.unwrap();
    assert_eq!(empty, super::KeyPage::default());
    let exact = store.list("p/", None, 25).await.unwrap();
    assert_eq!((exact.keys.len(), exact.cursor), (25, None), "no cursor when nothing follows");
    let before = store.list("p/", Some("a"), 1).await.unwrap();
    assert_eq!(before.keys, ["p/000"], "a cursor before the prefix starts at the prefix");
}

/// Batches write, read and delete many keys; a batch read refuses to grow past its limit.
pub(crate) async fn batches(kv: &dyn KvBackend) {
    let store = kv.open("app", "batch").await.unwrap();
    store.put_many(vec![("a".into(), b("1")), ("b".into(), Bytes::new())]).await.unwrap();
    let got = store.get_many(vec!["a".into(), "missing".into(), "b".into()], 1 << 20).await.unwrap();
    let got: Vec<_> = got.into_iter().map(|(k, e)| (k, e.map(|e| e.value))).collect();
    assert_eq!(got, [("a".into(), Some(b("1"))), ("missing".into(), None), ("b".into(), Some(Bytes::new()))]);
    assert_eq!(store.get_many(vec!["a".into(), "b".into()], 2).await, Err(KvError::TooLarge { bytes: 3 }));
    store.delete_many(vec!["a".into(), "b".into(), "never".into()]).await.unwrap();
    assert_eq!(store.list("", None, PAGE).await.unwrap().keys, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_backend_behaves() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(crate::store::Store::open(&dir.path().join("db")).unwrap());
    suite(Arc::new(super::sled::SledKv::new(store))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_backend_behaves() {
    suite(Arc::new(super::nats::NatsKv::new(crate::storage::nats::testing::nats().await))).await;
}

/// Every check above, on `kv`.
async fn suite(kv: Arc<dyn KvBackend>) {
    get_put_delete(&*kv).await;
    compare_and_swap(&*kv).await;
    list_pages(&*kv).await;
    batches(&*kv).await;
    cas_race(kv.clone()).await;
    increments_race(kv).await;
}

/// Two nodes (two connections) share the stores: a write through one is read through the other,
/// racing increments from both lose nothing, and a batch is seen whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_nodes_share_stores() {
    let one = crate::storage::nats::testing::nats().await;
    let two = crate::storage::nats::testing::another_node(&one).await;
    let nodes = [super::nats::NatsKv::new(one), super::nats::NatsKv::new(two)];
    let stores = [nodes[0].open("app", "shared").await.unwrap(), nodes[1].open("app", "shared").await.unwrap()];
    stores[0].put("k", b("from one")).await.unwrap();
    assert_eq!(value(&*stores[1], "k").await, Some(b("from one")));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    store.increment("n", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(stores[1].increment("n", 0).await.unwrap(), 200);
    let keys: Vec<String> = (0..100).map(|i| format!("b/{i:03}")).collect();
    let writer = {
        let (store, keys) = (stores[0].clone(), keys.clone());
        tokio::spawn(async move {
            for round in 0..5 {
                store.put_many(keys.iter().map(|k| (k.clone(), b(&format!("round {round}")))).collect()).await.unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let seen = stores[1].get_many(keys.clone(), 1 << 20).await.unwrap();
        let first = &seen[0].1.as_ref().map(|e| &e.value);
        assert!(seen.iter().all(|(_, e)| &e.as_ref().map(|e| &e.value) == first), "a batch is seen whole");
        reads += 1;
    }
    writer.await.unwrap();
    assert_eq!(stores[1].list("b/", None, PAGE).await.unwrap().keys, keys);
}
