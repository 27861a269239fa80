//! `host:api/topics` through its view: grants, and what publishing leaves in the topic log.

use crate::capabilities::host::api::topics::{Error, Host};
use crate::capabilities::topics::View;
use crate::manifest::{Grants, TopicsGrant};
use crate::storage::topics::{SledTopics, TopicBackend};

use super::{Declared, Env, TestCall, names};

#[tokio::test]
async fn topics_view_publishes_only_to_granted_topics() {
    let env = Env::new();
    let mut nothing = TestCall::new(&env.services, Grants::default(), Declared::default(), 1 << 20);
    let denied = Host::publish(&mut View::from(nothing.parts()), "news".into(), vec![1], vec![]).await.unwrap();
    assert!(matches!(denied, Err(Error::AccessDenied)), "no grant, no topic");

    // A name the manifest would refuse, granted here to reach the library's own check.
    let grants = Grants { topics: TopicsGrant(names(&["news", "bad name"])), ..Grants::default() };
    let mut call = TestCall::new(&env.services, grants, Declared::default(), 1 << 20);
    let mut view = View::from(call.parts());
    let other = Host::publish(&mut view, "sports".into(), vec![1], vec![]).await.unwrap();
    assert!(matches!(other, Err(Error::AccessDenied)));
    let bad = Host::publish(&mut view, "bad name".into(), vec![1], vec![]).await.unwrap();
    assert!(matches!(bad, Err(Error::Invalid(m)) if m.starts_with("topic ")), "an invalid name is invalid");
    let attributes = vec![("lang".to_string(), "en".to_string())];
    let id = Host::publish(&mut view, "news".into(), b"hello".to_vec(), attributes.clone()).await.unwrap().unwrap();

    let log = SledTopics::new(env.store.clone()).pending("app", 10).await.unwrap();
    assert_eq!(log.len(), 1, "only the granted, valid publish reached the log");
    let event = &log[0];
    assert_eq!((event.id.as_str(), event.topic.as_str()), (id.as_str(), "news"));
    assert_eq!((event.payload.as_slice(), &event.attributes), (&b"hello"[..], &attributes));
}
