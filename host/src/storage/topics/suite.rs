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

mod nats {
    use super::*;
    use crate::storage::nats::testing;
    use crate::storage::topics::NatsTopics;

    #[tokio::test]
    async fn publish_pending_accept() {
        check_publish_pending_accept(Arc::new(NatsTopics::new(testing::nats().await))).await;
    }

    #[tokio::test]
    async fn refused() {
        check_refused(Arc::new(NatsTopics::new(testing::nats().await))).await;
    }

    /// Reopening is another node: another connection to the same streams.
    #[tokio::test]
    async fn durable_across_nodes() {
        let nats = testing::nats().await;
        let other = testing::another_node(&nats).await;
        check_durable(Arc::new(NatsTopics::new(nats)), || Arc::new(NatsTopics::new(other))).await;
    }

    /// Two nodes publishing at once into one app's log: every event is there once, and ids
    /// sort in the log's order.
    #[tokio::test]
    async fn two_nodes_publish_into_one_log() {
        let nats = testing::nats().await;
        let nodes: [Arc<dyn TopicBackend>; 2] =
            [Arc::new(NatsTopics::new(testing::another_node(&nats).await)), Arc::new(NatsTopics::new(nats))];
        let publish = |node: &Arc<dyn TopicBackend>, who: &str| {
            let (node, who) = (Topics::new(node.clone()), who.to_string());
            async move {
                let mut ids = Vec::new();
                for i in 0..50 {
                    ids.push(node.publish("app", "news", format!("{who}{i}").into_bytes(), vec![]).await.unwrap());
                }
                ids
            }
        };
        let (a, b) = tokio::join!(publish(&nodes[0], "a"), publish(&nodes[1], "b"));
        let pending = nodes[0].pending("app", 200).await.unwrap();
        let ids: Vec<&str> = pending.iter().map(|e| e.id.as_str()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids sort in log order");
        let mut published: Vec<String> = a.into_iter().chain(b).collect();
        published.sort();
        assert_eq!(ids, published, "every event once");
    }
}
