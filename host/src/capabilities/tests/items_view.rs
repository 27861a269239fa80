//! `host:api/items` through its view: grants, the item life, causes on events, the memory limit.

use crate::capabilities::host::api::items::{AnnotationInput, Error, Filter, Geometry, Host, HostDataset, Point};
use crate::capabilities::items::View;
use crate::manifest::{DatasetsGrant, Grants};
use crate::storage::datasets::{Action, Cause, ItemEvent, events_tree};

use super::{Declared, Env, TestCall, borrow, names};

fn granted(env: &Env, memory: u64) -> TestCall {
    let grants = Grants { datasets: DatasetsGrant(names(&["photos"])), ..Grants::default() };
    TestCall::new(&env.services, grants, Declared::default(), memory)
}

/// The item events of app `app`, oldest first, as item triggers read them.
fn events(env: &Env) -> Vec<ItemEvent> {
    let tree = events_tree(&env.store, "app").unwrap();
    tree.iter().values().map(|v| serde_json::from_slice(&v.unwrap()).unwrap()).collect()
}

fn filter(metadata: &[(&str, &str)]) -> Filter {
    let metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Filter { dir: None, mimetype: None, metadata }
}

#[tokio::test]
async fn items_view_opens_only_granted_datasets() {
    let env = Env::new();
    let mut nothing = TestCall::new(&env.services, Grants::default(), Declared::default(), 1 << 20);
    let opened = Host::open(&mut View::from(nothing.parts()), "photos".into()).await.unwrap();
    assert!(matches!(opened, Err(Error::AccessDenied)), "no grant, no dataset");
    let mut call = granted(&env, 1 << 20);
    let mut view = View::from(call.parts());
    assert!(matches!(Host::open(&mut view, "other".into()).await.unwrap(), Err(Error::AccessDenied)));
    assert!(Host::open(&mut view, "photos".into()).await.unwrap().is_ok());
}

#[tokio::test]
async fn items_view_uploads_lists_annotates_and_deletes() {
    let env = Env::new();
    let mut call = granted(&env, 1 << 20);
    let mut view = View::from(call.parts());
    let photos = Host::open(&mut view, "photos".into()).await.unwrap().unwrap();
    let ds = || borrow(&photos);
    let meta = Some(r#"{"kind":"cat"}"#.to_string());
    let item = HostDataset::upload(&mut view, ds(), "/a".into(), "x.png".into(), None, b"png".to_vec(), meta)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((item.dataset.as_str(), item.dir.as_str(), item.name.as_str()), ("photos", "/a", "x.png"));
    assert_eq!((item.mimetype.as_str(), item.size), ("image/png", 3), "mimetype guessed from the name");
    let got = HostDataset::get(&mut view, ds(), item.id.clone()).await.unwrap().unwrap();
    assert_eq!(got.metadata, r#"{"kind":"cat"}"#);
    assert_eq!(HostDataset::download(&mut view, ds(), item.id.clone()).await.unwrap().unwrap(), b"png");

    let cats = HostDataset::list(&mut view, ds(), filter(&[("kind", r#""cat""#)]), None, 10).await.unwrap().unwrap();
    assert_eq!(cats.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [item.id.as_str()]);
    let dogs = HostDataset::list(&mut view, ds(), filter(&[("kind", r#""dog""#)]), None, 10).await.unwrap().unwrap();
    assert!(dogs.items.is_empty() && dogs.cursor.is_none());
    let bad = HostDataset::list(&mut view, ds(), filter(&[("kind", "not json")]), None, 10).await.unwrap();
    assert!(matches!(bad, Err(Error::Invalid(m)) if m.starts_with("filter metadata `kind`: not JSON")));

    let updated = HostDataset::update_metadata(&mut view, ds(), item.id.clone(), r#"{"kind":"dog"}"#.into());
    assert_eq!(updated.await.unwrap().unwrap().metadata, r#"{"kind":"dog"}"#);
    let not_object = HostDataset::update_metadata(&mut view, ds(), item.id.clone(), "[1]".into()).await.unwrap();
    assert!(matches!(not_object, Err(Error::Invalid(_))), "metadata is a JSON object");

    let point = AnnotationInput {
        geometry: Geometry::Point(Point { x: 1.0, y: 2.0 }),
        label: "eye".into(),
        confidence: Some(0.5),
        model: None,
    };
    let added = HostDataset::add_annotations(&mut view, ds(), item.id.clone(), vec![point]).await.unwrap().unwrap();
    assert_eq!(added.len(), 1);
    let stored = HostDataset::annotations(&mut view, ds(), item.id.clone()).await.unwrap().unwrap();
    assert_eq!((stored[0].label.as_str(), stored[0].confidence), ("eye", Some(0.5)));
    assert!(matches!(stored[0].geometry, Geometry::Point(Point { x: 1.0, y: 2.0 })));
    HostDataset::delete_annotation(&mut view, ds(), item.id.clone(), stored[0].id.clone()).await.unwrap().unwrap();
    assert!(HostDataset::annotations(&mut view, ds(), item.id.clone()).await.unwrap().unwrap().is_empty());

    HostDataset::delete(&mut view, ds(), item.id.clone()).await.unwrap().unwrap();
    let gone = HostDataset::get(&mut view, ds(), item.id.clone()).await.unwrap();
    assert!(matches!(gone, Err(Error::NoSuchItem)));
    let download = HostDataset::download(&mut view, ds(), item.id.clone()).await.unwrap();
    assert!(matches!(download, Err(Error::NoSuchItem)));
    HostDataset::delete(&mut view, ds(), item.id.clone()).await.unwrap().expect("deleting an absent item is fine");
    let actions: Vec<Action> = events(&env).iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [Action::Created, Action::Updated, Action::Deleted],
        "one event a change; none for nothing deleted"
    );
    HostDataset::drop(&mut view, photos).await.unwrap();
}

#[tokio::test]
async fn items_view_changes_carry_the_calls_cause() {
    let env = Env::new();
    let mut call = granted(&env, 1 << 20);
    let mut view = View::from(call.parts());
    let photos = Host::open(&mut view, "photos".into()).await.unwrap().unwrap();
    let first = HostDataset::upload(&mut view, borrow(&photos), "/".into(), "a.txt".into(), None, vec![1], None);
    first.await.unwrap().unwrap();
    let cause = Cause { trigger: "on-photo".into(), execution: "e1".into() };
    call.cause = Some(cause.clone());
    let mut view = View::from(call.parts());
    let second = HostDataset::upload(&mut view, borrow(&photos), "/".into(), "b.txt".into(), None, vec![2], None);
    let second = second.await.unwrap().unwrap();
    HostDataset::delete(&mut view, borrow(&photos), second.id.clone()).await.unwrap().unwrap();
    let causes: Vec<_> = events(&env).into_iter().map(|e| (e.action, e.item.name, e.cause)).collect();
    assert_eq!(
        causes,
        [
            (Action::Created, "a.txt".to_string(), None),
            (Action::Created, "b.txt".to_string(), Some(cause.clone())),
            (Action::Deleted, "b.txt".to_string(), Some(cause)),
        ],
        "a change made by a triggered call carries its cause; others carry none"
    );
}

#[tokio::test]
async fn items_view_refuses_downloads_past_the_memory_limit() {
    let env = Env::new();
    let mut call = granted(&env, 1 << 10);
    let mut view = View::from(call.parts());
    let photos = Host::open(&mut view, "photos".into()).await.unwrap().unwrap();
    let upload =
        HostDataset::upload(&mut view, borrow(&photos), "/".into(), "big".into(), None, vec![3; 4 << 10], None);
    let big = upload.await.unwrap().unwrap();
    let download = HostDataset::download(&mut view, borrow(&photos), big.id.clone()).await;
    let message = download.expect_err("an item bigger than the memory limit ends the call").to_string();
    assert!(message.contains(&format!("downloading item `{}` would need 4096 bytes", big.id)), "{message}");
    assert_eq!(call.memory.denied_memory(), Some(4 << 10), "reported as the memory limit");
}
