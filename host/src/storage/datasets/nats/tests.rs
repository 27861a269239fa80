//! The dataset suite on NATS, and changes of one dataset from two nodes at once.

use std::sync::Arc;

use serde_json::json;

use super::NatsDatasets;
use super::claim::{self, Intent};
use crate::storage::datasets::suite::{
    check_durable, check_item_life, check_list, check_racing_uploads, check_refused,
};
use crate::storage::datasets::{Action, Dataset, DatasetBackend, DatasetStore, Item, ItemEvent, ItemFilter};
use crate::storage::nats::testing;

/// The item events of app `app` not accepted yet, read from a synchronous closure.
fn events(backend: &NatsDatasets) -> Vec<ItemEvent> {
    let pending = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(backend.pending_events("app", 10_000))
    });
    pending.unwrap().into_iter().map(|(_, event)| event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_life() {
    let backend = NatsDatasets::new(testing::nats().await);
    check_item_life(&backend, &|| events(&backend)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused() {
    let backend = NatsDatasets::new(testing::nats().await);
    check_refused(&backend, &|| events(&backend)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list() {
    check_list(&NatsDatasets::new(testing::nats().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_uploads() {
    let backend = NatsDatasets::new(testing::nats().await);
    check_racing_uploads(&backend, &|| events(&backend)).await;
}

/// What one node wrote, another node (its own connection) reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_across_nodes() {
    let nats = testing::nats().await;
    let other = testing::another_node(&nats).await;
    check_durable(Arc::new(NatsDatasets::new(nats)), || Arc::new(NatsDatasets::new(other))).await;
}

/// Two nodes upload 20 items each to one dataset at once, 5 of them to paths both use: no
/// change is lost, each makes one event, and each path has one item.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_change_one_dataset_at_once() {
    let nats = testing::nats().await;
    let nodes = [NatsDatasets::new(testing::another_node(&nats).await), NatsDatasets::new(nats)];
    let datasets = [
        Dataset::new(&nodes[0], "app", "shared").await.unwrap(),
        Dataset::new(&nodes[1], "app", "shared").await.unwrap(),
    ];
    let started = std::time::Instant::now();
    // Every upload at once: a node's own uploads take turns, and the two nodes contend.
    let uploads = (0..2).flat_map(|n| (0..20).map(move |i| (n, i))).map(|(n, i)| {
        let data = datasets[n].clone();
        tokio::spawn(async move {
            let name = if i < 5 { format!("both-{i}") } else { format!("node{n}-{i}") };
            let body = format!("{n}/{i}").into_bytes();
            data.upload("/", &name, None, body, None, None).await.unwrap()
        })
    });
    let made: Vec<_> = futures_util::future::try_join_all(uploads).await.unwrap();
    let per_upload = started.elapsed() / 40;

    let data = Dataset::new(&nodes[0], "app", "shared").await.unwrap();
    let items = data.list(&ItemFilter::default(), None, 1000).await.unwrap().items;
    assert_eq!(items.len(), 35, "30 own paths and 5 shared ones");
    let mut paths: Vec<_> = items.iter().map(|i| i.path()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 35, "each path has one item");
    for item in &made {
        let stored = data.get(&item.id).await.unwrap();
        assert_eq!(stored.path(), item.path());
    }
    for item in &items {
        let body = String::from_utf8(data.download(&item.id).await.unwrap()).unwrap();
        assert_eq!(body.len() as u64, item.size, "{}: the bytes of its last upload", item.path());
    }
    let events = events(&nodes[1]);
    let created = events.iter().filter(|e| e.action == Action::Created).count();
    let updated = events.iter().filter(|e| e.action == Action::Updated).count();
    assert_eq!((created, updated), (35, 5), "one event per upload");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    eprintln!("40 uploads from two nodes at once: {per_upload:?} per upload");
}

/// Latency of one small upload and one read, on the shared three-node cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_upload_latency() {
    let backend = NatsDatasets::new(testing::nats().await);
    let data = Dataset::new(&backend, "app", "timed").await.unwrap();
    data.upload("/", "warm", None, b"x".to_vec(), None, None).await.unwrap();
    let started = std::time::Instant::now();
    let mut last = None;
    for i in 0..20 {
        last = Some(data.upload("/", &format!("{i}"), None, b"small".to_vec(), None, None).await.unwrap());
    }
    let upload = started.elapsed() / 20;
    let started = std::time::Instant::now();
    assert_eq!(data.download(&last.unwrap().id).await.unwrap(), b"small");
    eprintln!("small upload: {upload:?}, download: {:?}", started.elapsed());
}

/// The dataset `name` of app `app` as `node` opened it.
async fn opened(node: &NatsDatasets, name: &str) -> Arc<super::NatsDataset> {
    node.open("app", name).await.unwrap();
    node.open.get(&("app".to_string(), name.to_string())).unwrap()
}

/// An intent that sets item `item`'s metadata, as a node that died would have left it.
async fn leave_intent(dataset: &super::NatsDataset, item: &Item, id: &str) -> Intent {
    let object = dataset.record(&item.id).await.unwrap().unwrap().object;
    let mut changed = item.clone();
    changed.metadata = json!({ "recovered": true });
    let record = serde_json::to_string(&super::Record { item: changed.clone(), object }).unwrap();
    let event = ItemEvent { seq: 0, action: Action::Updated, item: changed, cause: None };
    let intent = Intent {
        id: id.into(),
        writes: vec![(super::record_key(&item.id), Some(record))],
        event: Some(event),
        retired: vec![],
    };
    let value = serde_json::to_vec(&intent).unwrap();
    dataset.writer.bucket.put(claim::OUTBOX, value.into()).await.unwrap();
    intent
}

/// A change left in the outbox by a node that died is finished, once, by the next node that
/// opens the dataset; and by a sweep, when no node opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_done_changes_are_finished_once() {
    let nats = testing::nats().await;
    let first = NatsDatasets::new(nats.clone());
    let data = Dataset::new(&first, "app", "crashed").await.unwrap();
    let item = data.upload("/", "a.txt", None, b"a".to_vec(), None, None).await.unwrap();
    let dataset = opened(&first, "crashed").await;
    leave_intent(&dataset, &item, "intent-1").await;
    let second = NatsDatasets::new(testing::another_node(&nats).await);
    let data = Dataset::new(&second, "app", "crashed").await.unwrap();
    assert_eq!(data.get(&item.id).await.unwrap().metadata, json!({ "recovered": true }));
    assert_eq!(dataset.writer.bucket.get(claim::OUTBOX).await.unwrap(), None);
    // Died after appending the event, before clearing the outbox: the event is not written twice.
    leave_intent(&dataset, &item, "intent-1").await;
    Dataset::new(&NatsDatasets::new(nats.clone()), "app", "crashed").await.unwrap();
    let actions: Vec<_> = events(&second).iter().map(|e| e.action).collect();
    assert_eq!(actions, [Action::Created, Action::Updated]);

    let swept = Dataset::new(&first, "app", "swept").await.unwrap();
    let item = swept.upload("/", "b.txt", None, b"b".to_vec(), None, None).await.unwrap();
    let dataset = opened(&first, "swept").await;
    leave_intent(&dataset, &item, "intent-2").await;
    let third = NatsDatasets::new(nats);
    third.pending_events("app", 10).await.unwrap();
    let started = std::time::Instant::now();
    while dataset.writer.bucket.get(claim::OUTBOX).await.unwrap().is_some() {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the sweep finished nothing");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(swept.get(&item.id).await.unwrap().metadata, json!({ "recovered": true }));
    assert_eq!(events(&third).len(), 4);
}

/// A holder whose lock another node took over (after it expired) writes nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_lock_was_taken_over_is_fenced_out() {
    let node = NatsDatasets::new(testing::nats().await);
    let data = Dataset::new(&node, "app", "fenced").await.unwrap();
    let item = data.upload("/", "a.txt", None, b"a".to_vec(), None, None).await.unwrap();
    let dataset = opened(&node, "fenced").await;
    let held = dataset.lock().await.unwrap();
    let expired = json!({ "owner": "another node", "expires_ms": 0 }).to_string();
    dataset.writer.bucket.put(claim::LOCK, expired.into()).await.unwrap();
    let mut changed = item.clone();
    changed.metadata = json!({ "lost": true });
    let refused = dataset.commit(Action::Updated, &changed, None).await.unwrap_err();
    assert!(refused.to_string().contains("another node took it over"), "{refused}");
    drop(held);
    assert_eq!(data.get(&item.id).await.unwrap().metadata, json!({}));
    let kept = data.update_metadata(&item.id, r#"{"kept": true}"#, None).await.unwrap();
    assert_eq!(data.get(&item.id).await.unwrap(), kept, "the expired lock is taken over");
    assert_eq!(events(&node).len(), 2);
}

/// Two nodes change one item's metadata at once: every change has its event, in the order the
/// changes were made, and the item holds the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_change_one_item_at_once() {
    let nats = testing::nats().await;
    let nodes = [NatsDatasets::new(testing::another_node(&nats).await), NatsDatasets::new(nats)];
    let first = Dataset::new(&nodes[0], "app", "edited").await.unwrap();
    let second = Dataset::new(&nodes[1], "app", "edited").await.unwrap();
    let item = first.upload("/", "a.txt", None, b"a".to_vec(), None, None).await.unwrap();
    let changes = (0..20).map(|i| {
        let (data, id) = (if i % 2 == 0 { first.clone() } else { second.clone() }, item.id.clone());
        tokio::spawn(async move { data.update_metadata(&id, &format!(r#"{{"n": {i}}}"#), None).await.unwrap() })
    });
    futures_util::future::try_join_all(changes).await.unwrap();
    let events = events(&nodes[0]);
    let mut seen: Vec<_> = events[1..].iter().map(|e| e.item.metadata["n"].as_u64().unwrap()).collect();
    let last = *seen.last().unwrap();
    assert_eq!(second.get(&item.id).await.unwrap().metadata, json!({ "n": last }));
    seen.sort();
    assert_eq!(seen, (0..20).collect::<Vec<_>>(), "one event per change");
}

/// Bytes of many chunks are read back whole; replacing or deleting them deletes the former
/// object once the change is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_span_chunks_and_former_ones_are_deleted() {
    let node = NatsDatasets::new(testing::nats().await);
    let data = Dataset::new(&node, "app", "big").await.unwrap();
    let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let item = data.upload("/", "big.bin", None, big.clone(), None, None).await.unwrap();
    assert_eq!(data.download(&item.id).await.unwrap(), big);
    assert_eq!(data.download_at_most(&item.id, 1 << 20).await.unwrap(), Err(3 << 20));
    let dataset = opened(&node, "big").await;
    let first = dataset.record(&item.id).await.unwrap().unwrap().object;
    data.upload("/", "big.bin", None, b"small".to_vec(), None, None).await.unwrap();
    let second = dataset.record(&item.id).await.unwrap().unwrap().object;
    assert_ne!(first, second);
    assert!(dataset.writer.objects.get(&first).await.is_err(), "the former bytes are deleted");
    assert_eq!(data.download(&item.id).await.unwrap(), b"small");
    data.delete(&item.id, None).await.unwrap();
    assert!(dataset.writer.objects.get(&second).await.is_err(), "a deleted item's bytes are deleted");
}

/// Staged bytes that no record names are deleted once old enough; named ones never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_orphaned_bytes_are_deleted() {
    let node = NatsDatasets::new(testing::nats().await);
    let data = Dataset::new(&node, "app", "orphans").await.unwrap();
    let item = data.upload("/", "kept.txt", None, b"kept".to_vec(), None, None).await.unwrap();
    let dataset = opened(&node, "orphans").await;
    let (bucket, objects) = (&dataset.writer.bucket, &dataset.writer.objects);
    for name in ["staged/0000000000000001-orphan", "staged/0000000000000001-named"] {
        objects.put(name, &mut b"old".as_slice()).await.unwrap();
    }
    bucket.put(&super::object_key("staged/0000000000000001-named"), "an item".into()).await.unwrap();
    super::delete_orphans(bucket, objects).await.unwrap();
    assert!(objects.get("staged/0000000000000001-orphan").await.is_err(), "an old orphan is deleted");
    assert!(objects.get("staged/0000000000000001-named").await.is_ok(), "named bytes are kept");
    assert_eq!(data.download(&item.id).await.unwrap(), b"kept", "young bytes are kept");
}
