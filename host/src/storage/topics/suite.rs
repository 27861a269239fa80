//! The semantics every topic backend must have, as functions over [`TopicBackend`] so that each
//! backend runs the same checks; run here on the sled backend in a temporary folder.

use std::sync::Arc;

use super::{PublishError, SledTopics, TopicBackend, Topics};

/// Published events are pending in publishing order, per app, until accepted; each is read once
/// more only if it was not accepted.
pub(crate) async fn check_publish_pending_accept(backend: Arc<dyn TopicBackend>) {
    let topics = Topics::new(backend.clone());
    let attributes = vec![("from".to_string(), "test".to_string())];
    let first = topics.publish("app", "news", b"one".to_vec(), attributes.clone()).await.unwrap();
    let second = topics.publish("app", "sport", b"two".to_vec(), vec![]).await.unwrap();
    topics.publish("other", "news", b"elsewhere".to_vec(), vec![]).await.unwrap();
    assert!(first < second, "ids sort in publishing order");
    let pending = backend.pending("app", 10).await.unwrap();
    let seen = pending.iter().map(|e| (e.id.as_str(), e.topic.as_str(), e.payload.as_slice())).collect::<Vec<_>>();
    assert_eq!(seen, [(first.as_str(), "news", &b"one"[..]), (second.as_str(), "sport", &b"two"[..])]);
    assert_eq!(pending[0].attributes, attributes);
    assert!(pending[0].published_ms > 0);
    assert_eq!(backend.pending("app", 1).await.unwrap().len(), 1, "limit holds");
    backend.accept("app", &first).await.unwrap();
    backend.accept("app", &first).await.unwrap();
    let left = backend.pending("app", 10).await.unwrap();
    assert_eq!(left.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [second.as_str()], "accepted once, gone");
    assert_eq!(backend.pending("other", 10).await.unwrap().len(), 1, "apps have their own logs");
}

/// Bad topic names and oversized payloads are refused before anything is written.
pub(crate) async fn check_refused(backend: Arc<dyn TopicBackend>) {
    let topics = Topics::new(backend.clone());
    let bad = topics.publish("app", "Bad Topic", vec![], vec![]).await;
    assert!(matches!(bad, Err(PublishError::Invalid(e)) if e.starts_with("topic invalid name `Bad Topic`")));
    let big = topics.publish("app", "news", vec![0; super::MAX_PAYLOAD + 1], vec![]).await;
    assert!(matches!(big, Err(PublishError::Invalid(_))));
    assert!(backend.pending("app", 10).await.unwrap().is_empty());
}

/// Events not accepted are still pending after the log is opened again.
pub(crate) async fn check_durable(first: Arc<dyn TopicBackend>, reopen: impl FnOnce() -> Arc<dyn TopicBackend>) {
    let topics = Topics::new(first.clone());
    let kept = topics.publish("app", "news", b"kept".to_vec(), vec![]).await.unwrap();
    let accepted = topics.publish("app", "news", b"accepted".to_vec(), vec![]).await.unwrap();
    first.accept("app", &accepted).await.unwrap();
    drop((topics, first));
    let pending = reopen().pending("app", 10).await.unwrap();
    assert_eq!(pending.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [kept.as_str()]);
}

mod sled {
    use super::*;
    use crate::store::Store;

    fn backend(dir: &tempfile::TempDir) -> Arc<dyn TopicBackend> {
        Arc::new(SledTopics::new(Arc::new(Store::open(&dir.path().join("db")).unwrap())))
    }

    #[tokio::test]
    async fn publish_pending_accept() {
        let dir = tempfile::tempdir().unwrap();
        check_publish_pending_accept(backend(&dir)).await;
    }

    #[tokio::test]
    async fn refused() {
        let dir = tempfile::tempdir().unwrap();
        check_refused(backend(&dir)).await;
    }

    #[tokio::test]
    async fn durable_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        check_durable(backend(&dir), || backend(&dir)).await;
    }
}
