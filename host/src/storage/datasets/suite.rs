//! The semantics every dataset backend must have, as functions over [`DatasetBackend`] so that
//! each backend runs the same checks; run here on the sled backend in a temporary folder. The
//! item events a backend wrote are read through `events`, a reader of the app's event log.

use std::sync::Arc;

use serde_json::json;

use super::{Action, Cause, Dataset, DatasetBackend, Geometry, ItemEvent, ItemFilter, ItemsError, SledDatasets};

/// Reads the item events of app `app` written so far, oldest first.
pub(crate) type Events<'a> = &'a dyn Fn() -> Vec<ItemEvent>;

fn actions(events: &[ItemEvent]) -> Vec<(Action, &str)> {
    events.iter().map(|e| (e.action, e.item.id.as_str())).collect()
}

/// Upload creates then updates by path; metadata and links change the record; each change
/// writes its event with it; delete removes the item, its bytes and annotations.
pub(crate) async fn check_item_life(backend: &dyn DatasetBackend, events: Events<'_>) {
    let photos = Dataset::new(backend, "app", "photos").await.unwrap();
    let cause = Cause { trigger: "t".into(), execution: "e".into() };
    let item = photos.upload("/a", "x.png", None, b"one".to_vec(), None, None).await.unwrap();
    assert_eq!((item.mimetype.as_str(), item.size, &item.metadata), ("image/png", 3, &json!({})));
    let again = photos.upload("/a/", "x.png", Some("Image/PNG"), b"second".to_vec(), None, Some(&cause)).await;
    let again = again.unwrap();
    assert_eq!((again.id.as_str(), again.size, again.created_ms), (item.id.as_str(), 6, item.created_ms));
    assert_eq!(photos.download(&item.id).await.unwrap(), b"second");
    assert_eq!(photos.download_at_most(&item.id, 2).await.unwrap(), Err(6));
    let updated = photos.update_metadata(&item.id, r#"{"k": 1}"#, None).await.unwrap();
    assert_eq!(photos.get(&item.id).await.unwrap().metadata, json!({ "k": 1 }));
    assert_eq!(updated.metadata, json!({ "k": 1 }));
    let kept = photos.upload("/a", "x.png", None, b"third".to_vec(), None, None).await.unwrap();
    assert_eq!(kept.metadata, json!({ "k": 1 }), "metadata is replaced only when given");
    let gray = photos.upload("/", "gray.png", None, b"g".to_vec(), Some(r#"{"gray": true}"#), None).await.unwrap();
    let linked = photos.link_modality(&item.id, "gray", &gray.id, None).await.unwrap();
    assert_eq!(linked.modalities.len(), 1);
    photos.link_modality(&item.id, "gray", &gray.id, None).await.unwrap();
    let missing = photos.link_modality(&item.id, "gray", "ffff", None).await;
    assert_eq!(missing, Err(ItemsError::NoSuchItem("ffff".into())));
    let boxed = Geometry::Box { left: 1.0, top: 2.0, right: 3.0, bottom: 4.0 };
    let added = photos
        .add_annotations(
            &item.id,
            vec![
                (boxed, "face".into(), Some(0.9), Some("m".into())),
                (Geometry::Classification, "cat".into(), None, None),
            ],
        )
        .await
        .unwrap();
    let bad = photos.add_annotations(&item.id, vec![(Geometry::Classification, "x".into(), Some(2.0), None)]).await;
    assert!(matches!(bad, Err(ItemsError::Invalid(_))));
    assert_eq!(photos.annotations(&item.id).await.unwrap(), added);
    photos.delete_annotation(&item.id, &added[1].id).await.unwrap();
    let gone = photos.delete_annotation(&item.id, &added[1].id).await;
    assert_eq!(gone, Err(ItemsError::NoSuchItem(format!("{}/{}", item.id, added[1].id))));
    assert_eq!(photos.annotations(&item.id).await.unwrap(), added[..1]);
    photos.delete(&item.id, None).await.unwrap();
    photos.delete(&item.id, None).await.unwrap();
    assert_eq!(photos.get(&item.id).await, Err(ItemsError::NoSuchItem(item.id.clone())));
    assert_eq!(photos.download(&item.id).await, Err(ItemsError::NoSuchItem(item.id.clone())));
    assert_eq!(photos.annotations(&item.id).await, Err(ItemsError::NoSuchItem(item.id.clone())));
    let recreated = photos.upload("/a", "x.png", None, b"new".to_vec(), None, None).await.unwrap();
    assert_ne!(recreated.id, item.id, "a deleted path is free again");
    assert!(recreated.modalities.is_empty());

    let events = events();
    let id = item.id.as_str();
    assert_eq!(
        actions(&events),
        [
            (Action::Created, id),
            (Action::Updated, id),
            (Action::Updated, id),
            (Action::Updated, id),
            (Action::Created, gray.id.as_str()),
            (Action::Updated, id),
            (Action::Deleted, id),
            (Action::Created, recreated.id.as_str()),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "events are in order");
    assert_eq!(events[1].cause, Some(cause), "the cause travels with the event");
    assert_eq!(events[2].item.metadata, json!({ "k": 1 }), "an event holds the item after its change");
}

/// Arguments that break the rules change nothing.
pub(crate) async fn check_refused(backend: &dyn DatasetBackend, events: Events<'_>) {
    let data = Dataset::new(backend, "app", "refused").await.unwrap();
    for (dir, name) in [("a", "x"), ("/a/../b", "x"), ("/", ""), ("/", "a/b")] {
        let upload = data.upload(dir, name, None, b"x".to_vec(), None, None).await;
        assert!(matches!(upload, Err(ItemsError::Invalid(_))), "{dir} {name}");
    }
    let bad_type = data.upload("/", "x", Some("png"), b"x".to_vec(), None, None).await;
    assert!(matches!(bad_type, Err(ItemsError::Invalid(_))));
    let bad_metadata = data.upload("/", "x", None, b"x".to_vec(), Some("[1]"), None).await;
    assert!(matches!(bad_metadata, Err(ItemsError::Invalid(_))));
    assert_eq!(data.update_metadata("ab", "{}", None).await, Err(ItemsError::NoSuchItem("ab".into())));
    assert!(data.list(&ItemFilter::default(), None, 10).await.unwrap().items.is_empty());
    assert!(events().is_empty());
}

/// Listing filters by folder, mimetype and metadata and pages with a cursor, in id order.
pub(crate) async fn check_list(backend: &dyn DatasetBackend) {
    let data = Dataset::new(backend, "app", "listed").await.unwrap();
    let mut pngs = Vec::new();
    for i in 0..5 {
        let meta = format!(r#"{{"i": {i}}}"#);
        pngs.push(data.upload("/p", &format!("{i}.png"), None, vec![0], Some(&meta), None).await.unwrap().id);
        data.upload("/t", &format!("{i}.txt"), None, vec![0], None, None).await.unwrap();
    }
    let images = ItemFilter { mimetype: Some("image/*".into()), ..Default::default() };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = data.list(&images, cursor.as_deref(), 2).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|i| i.id));
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, pngs);
    let third = ItemFilter { dir: Some("/p".into()), metadata: vec![("i".into(), json!(3))], ..Default::default() };
    let found = data.list(&third, None, 100).await.unwrap();
    assert_eq!((found.items.len(), found.cursor), (1, None));
    assert_eq!(found.items[0].id, pngs[3]);
    assert_eq!(data.list(&ItemFilter::default(), None, 1000).await.unwrap().items.len(), 10);
}

/// Uploads racing to one path make one item (one `created`, then `updated`); racing to
/// different paths, each makes its own.
pub(crate) async fn check_racing_uploads(backend: &dyn DatasetBackend, events: Events<'_>) {
    let data = Dataset::new(backend, "app", "raced").await.unwrap();
    let other = Dataset::new(backend, "app", "raced").await.unwrap();
    let (a, b) = tokio::join!(
        data.upload("/", "same", None, b"a".to_vec(), None, None),
        other.upload("/", "same", None, b"b".to_vec(), None, None),
    );
    assert_eq!(a.unwrap().id, b.unwrap().id);
    let uploads = (0..8).map(|i| {
        let data = data.clone();
        async move { data.upload("/", &format!("f{i}"), None, vec![i], None, None).await.unwrap() }
    });
    let made = futures_util::future::join_all(uploads).await;
    let mut ids = made.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    assert_eq!(data.list(&ItemFilter::default(), None, 100).await.unwrap().items.len(), 9);
    let events = events();
    let created = events.iter().filter(|e| e.action == Action::Created).count();
    assert_eq!((created, events.len()), (9, 10), "one path: one created and one updated");
}

/// Items, bytes and annotations written through one backend are there when another opens the
/// same data.
pub(crate) async fn check_durable(first: Arc<dyn DatasetBackend>, reopen: impl FnOnce() -> Arc<dyn DatasetBackend>) {
    let data = Dataset::new(&*first, "app", "kept").await.unwrap();
    let item = data.upload("/", "x.txt", None, b"kept".to_vec(), Some(r#"{"k": 1}"#), None).await.unwrap();
    let notes = data.add_annotations(&item.id, vec![(Geometry::Classification, "a".into(), None, None)]).await;
    // Bytes of any size, replaced by bytes of another size (a backend may keep small and large
    // ones apart).
    let large = vec![7u8; 100 << 10];
    let mut sized = Vec::new();
    for (name, sizes) in [("grows", [&b"small"[..], &large]), ("shrinks", [&large, &b"small"[..]])] {
        let first = data.upload("/", name, None, sizes[0].to_vec(), None, None).await.unwrap();
        let second = data.upload("/", name, None, sizes[1].to_vec(), None, None).await.unwrap();
        assert_eq!(data.download(&first.id).await.unwrap(), sizes[1], "{name}");
        sized.push((second, sizes[1].to_vec()));
    }
    let gone = data.upload("/", "gone", None, b"small".to_vec(), None, None).await.unwrap();
    data.delete(&gone.id, None).await.unwrap();
    drop((data, first));
    let data = Dataset::new(&*reopen(), "app", "kept").await.unwrap();
    assert_eq!(data.get(&item.id).await.unwrap(), item);
    assert_eq!(data.download(&item.id).await.unwrap(), b"kept");
    assert_eq!(data.annotations(&item.id).await.unwrap(), notes.unwrap());
    for (item, bytes) in sized {
        assert_eq!(data.get(&item.id).await.unwrap(), item);
        assert_eq!(data.download(&item.id).await.unwrap(), bytes, "{}", item.name);
    }
    assert_eq!(data.download(&gone.id).await, Err(ItemsError::NoSuchItem(gone.id.clone())));
}

mod sled {
    use super::*;
    use crate::storage::datasets::events_tree;
    use crate::storage::datasets::sled::INLINE_MAX;
    use crate::store::Store;

    struct Embedded {
        dir: tempfile::TempDir,
        store: Arc<Store>,
        backend: SledDatasets,
    }

    fn embedded() -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let backend = SledDatasets::new(store.clone(), dir.path().join("items"));
        Embedded { dir, store, backend }
    }

    impl Embedded {
        fn events(&self) -> Vec<ItemEvent> {
            let tree = events_tree(&self.store, "app").unwrap();
            tree.iter().values().map(|v| serde_json::from_slice(&v.unwrap()).unwrap()).collect()
        }
    }

    #[tokio::test]
    async fn item_life() {
        let e = embedded();
        check_item_life(&e.backend, &|| e.events()).await;
    }

    #[tokio::test]
    async fn refused() {
        let e = embedded();
        check_refused(&e.backend, &|| e.events()).await;
    }

    #[tokio::test]
    async fn small_bytes_stay_in_sled_and_larger_ones_go_to_files() {
        let e = embedded();
        let data = Dataset::new(&e.backend, "app", "sizes").await.unwrap();
        let files = || {
            let entries = std::fs::read_dir(e.dir.path().join("items/app/sizes")).unwrap();
            let mut names: Vec<String> = entries.map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            names.sort();
            names
        };
        let in_sled = || {
            let tree = e.store.tree("item-bytes/app/sizes").unwrap();
            tree.iter().keys().map(|k| String::from_utf8(k.unwrap().to_vec()).unwrap()).collect::<Vec<_>>()
        };
        let (small, large) = (vec![1u8; INLINE_MAX], vec![2u8; INLINE_MAX + 1]);
        let s = data.upload("/", "s", None, small.clone(), None, None).await.unwrap();
        let l = data.upload("/", "l", None, large.clone(), None, None).await.unwrap();
        assert_eq!((files(), in_sled()), (vec![l.id.clone()], vec![s.id.clone()]));
        // Small bytes for an item with a file stay in its file; large ones for a small item
        // move it to a file and out of sled.
        data.upload("/", "l", None, b"now small".to_vec(), None, None).await.unwrap();
        data.upload("/", "s", None, large.clone(), None, None).await.unwrap();
        assert_eq!((files(), in_sled()), (vec![s.id.clone(), l.id.clone()], vec![]));
        assert_eq!(data.download(&l.id).await.unwrap(), b"now small");
        assert_eq!(data.download(&s.id).await.unwrap(), large);
        let other = data.upload("/", "o", None, small.clone(), None, None).await.unwrap();
        assert_eq!(data.download_at_most(&other.id, INLINE_MAX as u64 - 1).await.unwrap(), Err(INLINE_MAX as u64));
        for id in [&s.id, &l.id, &other.id] {
            data.delete(id, None).await.unwrap();
        }
        assert_eq!((files(), in_sled()), (vec![], vec![]));
    }

    #[tokio::test]
    async fn list() {
        let e = embedded();
        check_list(&e.backend).await;
    }

    #[tokio::test]
    async fn durable_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let backend = || -> Arc<dyn DatasetBackend> {
            let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
            Arc::new(SledDatasets::new(store, dir.path().join("items")))
        };
        check_durable(backend(), backend).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_uploads() {
        let e = embedded();
        check_racing_uploads(&e.backend, &|| e.events()).await;
    }
}
