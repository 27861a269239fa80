//! The semantics every queue backend must have, as functions over [`QueueBackend`] so that each
//! backend runs the same checks; run here on the sled backend in a temporary folder.

use std::sync::Arc;
use std::time::Duration;

use super::{Queue, QueueBackend, QueueError, QueueSettings, QueueStats, Queues, SledQueues};

const LONG: Duration = Duration::from_secs(60);

fn settings(max_attempts: u32) -> QueueSettings {
    QueueSettings { max_attempts }
}

/// Sent messages are received oldest first, once each, and completed messages are gone.
pub(crate) async fn check_send_receive_complete(backend: Arc<dyn QueueBackend>) {
    let queues = Queues::new(backend);
    let queue = queues.open("app", "jobs", settings(5)).unwrap();
    let first = queue.send(b"one".to_vec(), Duration::ZERO).await.unwrap();
    let second = queue.send(b"two".to_vec(), Duration::ZERO).await.unwrap();
    assert!(first < second, "ids sort in sending order");
    assert_eq!(queue.stats().await.unwrap(), QueueStats { ready: 2, waiting: 0, leased: 0 });
    let got = queue.receive(&queues, 10, LONG).await.unwrap();
    assert_eq!(
        got.iter().map(|m| (m.id.as_str(), m.body.as_slice(), m.attempt)).collect::<Vec<_>>(),
        [(first.as_str(), &b"one"[..], 1), (second.as_str(), &b"two"[..], 1)]
    );
    assert_eq!(queue.stats().await.unwrap(), QueueStats { ready: 0, waiting: 2, leased: 2 });
    assert!(queue.receive(&queues, 10, LONG).await.unwrap().is_empty(), "leased messages are not handed out twice");
    for message in &got {
        queue.complete(&message.lease).await.unwrap();
    }
    assert_eq!(queue.stats().await.unwrap(), QueueStats { ready: 0, waiting: 0, leased: 0 });
    assert_eq!(queue.next_visible_ms(), None);
    let done = queue.complete(&got[0].lease).await;
    assert_eq!(done, Err(QueueError::LeaseExpired(got[0].lease.clone())), "a completed lease is stale");
    // A delayed message waits without being leased; leased, it counts as both.
    queue.send(b"later".to_vec(), Duration::from_millis(300)).await.unwrap();
    queue.send(b"now".to_vec(), Duration::ZERO).await.unwrap();
    assert_eq!(queue.stats().await.unwrap(), QueueStats { ready: 1, waiting: 1, leased: 0 });
    let now = queue.receive(&queues, 1, LONG).await.unwrap();
    assert_eq!(queue.stats().await.unwrap(), QueueStats { ready: 0, waiting: 2, leased: 1 });
    queue.complete(&now[0].lease).await.unwrap();
}

/// `max` and `max_bytes` bound one receive; arguments out of range are refused.
pub(crate) async fn check_receive_bounds(backend: Arc<dyn QueueBackend>) {
    let queues = Queues::new(backend);
    let queue = queues.open("app", "bounded", settings(5)).unwrap();
    for body in [&b"aaaa"[..], b"bbbb", b"cccc"] {
        queue.send(body.to_vec(), Duration::ZERO).await.unwrap();
    }
    assert_eq!(queue.receive(&queues, 1, LONG).await.unwrap().len(), 1);
    assert_eq!(queue.receive_within(&queues, 10, LONG, 5).await.unwrap().len(), 1, "the byte budget holds one");
    assert!(matches!(queue.receive(&queues, 0, LONG).await, Err(QueueError::Invalid(_))));
    assert!(matches!(queue.receive(&queues, 1, Duration::ZERO).await, Err(QueueError::Invalid(_))));
    assert!(matches!(queues.open("app", "Bad Name", settings(5)), Err(QueueError::Invalid(_))));
}

/// A lease that runs out makes the message visible again as its next attempt; the old lease is
/// refused from then on.
pub(crate) async fn check_lease_expiry(backend: Arc<dyn QueueBackend>) {
    let queues = Queues::new(backend);
    let queue = queues.open("app", "expiring", settings(5)).unwrap();
    queue.send(b"x".to_vec(), Duration::ZERO).await.unwrap();
    let first = queue.receive(&queues, 1, Duration::from_millis(20)).await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(40)).await;
    let second = queue.receive(&queues, 1, LONG).await.unwrap().remove(0);
    assert_eq!((second.id.as_str(), second.attempt), (first.id.as_str(), 2));
    assert_eq!(queue.complete(&first.lease).await, Err(QueueError::LeaseExpired(first.lease.clone())));
    assert!(matches!(queue.retry(&queues, &first.lease, Duration::ZERO).await, Err(QueueError::LeaseExpired(_))));
    queue.complete(&second.lease).await.unwrap();
    let other = queues.open("app", "other", settings(5)).unwrap();
    assert!(matches!(other.complete(&second.lease).await, Err(QueueError::Invalid(_))), "a lease of another queue");
    assert!(matches!(queue.complete("nonsense").await, Err(QueueError::Invalid(_))));
}

/// A message given back waits for its delay, then comes back as its next attempt.
pub(crate) async fn check_retry_with_delay(backend: Arc<dyn QueueBackend>) {
    let queues = Queues::new(backend);
    let queue = queues.open("app", "retried", settings(5)).unwrap();
    queue.send(b"x".to_vec(), Duration::ZERO).await.unwrap();
    let first = queue.receive(&queues, 1, LONG).await.unwrap().remove(0);
    queue.retry(&queues, &first.lease, Duration::from_millis(50)).await.unwrap();
    assert_eq!(queue.stats().await.unwrap(), QueueStats { ready: 0, waiting: 1, leased: 0 });
    assert!(queue.receive(&queues, 1, LONG).await.unwrap().is_empty(), "not before its delay");
    assert!(queue.next_visible_ms().is_some());
    tokio::time::sleep(Duration::from_millis(80)).await;
    let second = queue.receive(&queues, 1, LONG).await.unwrap().remove(0);
    assert_eq!(second.attempt, 2);
    assert_eq!(queue.complete(&first.lease).await, Err(QueueError::LeaseExpired(first.lease.clone())));
    queue.complete(&second.lease).await.unwrap();
}

/// After `max_attempts` deliveries a message moves to `NAME.dead`, whether it was given back or
/// its lease ran out.
pub(crate) async fn check_dead_letters(backend: Arc<dyn QueueBackend>) {
    let queues = Queues::new(backend);
    let queue = queues.open("app", "fragile", settings(2)).unwrap();
    let given_back = queue.send(b"given back".to_vec(), Duration::ZERO).await.unwrap();
    for attempt in 1..=2 {
        let message = queue.receive(&queues, 1, LONG).await.unwrap().remove(0);
        assert_eq!((message.id.as_str(), message.attempt), (given_back.as_str(), attempt));
        queue.retry(&queues, &message.lease, Duration::ZERO).await.unwrap();
    }
    let timed_out = queue.send(b"timed out".to_vec(), Duration::ZERO).await.unwrap();
    for _ in 1..=2 {
        queue.receive(&queues, 1, Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(queue.receive(&queues, 10, LONG).await.unwrap().is_empty(), "exhausted messages are not delivered");
    assert_eq!(queue.stats().await.unwrap(), QueueStats { ready: 0, waiting: 0, leased: 0 });
    let dead = queues.open("app", "fragile.dead", settings(u32::MAX)).unwrap();
    let mut got = dead.receive(&queues, 10, LONG).await.unwrap();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        got.iter().map(|m| (m.id.as_str(), m.body.as_slice())).collect::<Vec<_>>(),
        [(given_back.as_str(), &b"given back"[..]), (timed_out.as_str(), &b"timed out"[..])]
    );
    for message in got {
        dead.retry(&queues, &message.lease, Duration::ZERO).await.unwrap();
    }
    assert_eq!(dead.stats().await.unwrap().ready, 2, "given back to the dead-letter queue");

    // Listing changes nothing; a requeued dead letter is back in its queue under its id, with
    // its attempts counted anew; a removed one is gone.
    let listed = |queue: Arc<Queue>| async move {
        let mut listed = queue.list(10).await.unwrap();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        listed.into_iter().map(|m| (m.id, m.body)).collect::<Vec<_>>()
    };
    let both = [(given_back.clone(), b"given back".to_vec()), (timed_out.clone(), b"timed out".to_vec())];
    assert_eq!(listed(dead.clone()).await, both);
    assert_eq!(listed(dead.clone()).await, both, "listing leases nothing");
    assert_eq!(dead.list(1).await.unwrap().len(), 1);
    dead.requeue(&queues, &given_back).await.unwrap();
    assert_eq!(listed(queue.clone()).await, [both[0].clone()]);
    let again = queue.receive(&queues, 10, LONG).await.unwrap();
    assert_eq!(again.iter().map(|m| (m.id.as_str(), m.attempt)).collect::<Vec<_>>(), [(given_back.as_str(), 1)]);
    queue.complete(&again[0].lease).await.unwrap();
    assert_eq!(listed(dead.clone()).await, [both[1].clone()]);
    dead.remove(&timed_out).await.unwrap();
    assert!(dead.list(10).await.unwrap().is_empty());
    assert_eq!(dead.stats().await.unwrap(), QueueStats { ready: 0, waiting: 0, leased: 0 });
    let unknown = dead.requeue(&queues, &timed_out).await.unwrap_err().to_string();
    assert!(unknown.contains(&format!("no message `{timed_out}`")), "{unknown}");
    let not_dead = queue.requeue(&queues, &given_back).await.unwrap_err().to_string();
    assert!(not_dead.contains("is not a dead-letter queue"), "{not_dead}");
}

/// `receive_to_run` leases as `receive` does: oldest first, at most `max`, each lease current
/// for `complete` and `retry`.
pub(crate) async fn check_receive_to_run(backend: Arc<dyn QueueBackend>) {
    let queues = Queues::new(backend);
    let queue = queues.open("app", "run", settings(5)).unwrap();
    let mut sent = Vec::new();
    for body in ["a", "b", "c"] {
        sent.push(queue.send(body.as_bytes().to_vec(), Duration::ZERO).await.unwrap());
    }
    let ids = |got: &[super::Message]| got.iter().map(|m| (m.id.clone(), m.attempt)).collect::<Vec<_>>();
    let first = queue.receive_to_run(&queues, 2, LONG).await.unwrap();
    assert_eq!(ids(&first), [(sent[0].clone(), 1), (sent[1].clone(), 1)]);
    let last = queue.receive_to_run(&queues, 2, LONG).await.unwrap();
    assert_eq!(ids(&last), [(sent[2].clone(), 1)]);
    assert!(
        queue.receive_to_run(&queues, 2, LONG).await.unwrap().is_empty(),
        "leased messages are not handed out twice"
    );
    queue.complete(&first[0].lease).await.unwrap();
    queue.retry(&queues, &first[1].lease, Duration::ZERO).await.unwrap();
    let again = queue.receive_to_run(&queues, 2, LONG).await.unwrap();
    assert_eq!(ids(&again), [(sent[1].clone(), 2)]);
    queue.complete(&again[0].lease).await.unwrap();
    queue.complete(&last[0].lease).await.unwrap();
    assert_eq!(queue.stats().await.unwrap(), QueueStats { ready: 0, waiting: 0, leased: 0 });
}

/// Messages sent through one backend are there when another opens the same data, and the
/// messages leased by the first are delivered again at once.
pub(crate) async fn check_durable(first: Arc<dyn QueueBackend>, reopen: impl FnOnce() -> Arc<dyn QueueBackend>) {
    let queues = Queues::new(first);
    let queue = queues.open("app", "kept", settings(5)).unwrap();
    let leased = queue.send(b"leased".to_vec(), Duration::ZERO).await.unwrap();
    let waiting = queue.send(b"waiting".to_vec(), Duration::ZERO).await.unwrap();
    assert_eq!(queue.receive(&queues, 1, LONG).await.unwrap()[0].id, leased);
    drop((queue, queues));
    let queues = Queues::new(reopen());
    let queue = queues.open("app", "kept", settings(5)).unwrap();
    let mut got = queue.receive(&queues, 10, LONG).await.unwrap();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let got = got.iter().map(|m| (m.id.as_str(), m.attempt)).collect::<Vec<_>>();
    assert_eq!(got, [(leased.as_str(), 2), (waiting.as_str(), 1)], "leases of a stopped host are released");
}

mod sled {
    use super::*;
    use crate::store::Store;

    fn backend(dir: &tempfile::TempDir) -> Arc<dyn QueueBackend> {
        Arc::new(SledQueues::new(Arc::new(Store::open(&dir.path().join("db")).unwrap())))
    }

    #[tokio::test]
    async fn send_receive_complete() {
        let dir = tempfile::tempdir().unwrap();
        check_send_receive_complete(backend(&dir)).await;
    }

    #[tokio::test]
    async fn receive_bounds() {
        let dir = tempfile::tempdir().unwrap();
        check_receive_bounds(backend(&dir)).await;
    }

    #[tokio::test]
    async fn lease_expiry() {
        let dir = tempfile::tempdir().unwrap();
        check_lease_expiry(backend(&dir)).await;
    }

    #[tokio::test]
    async fn retry_with_delay() {
        let dir = tempfile::tempdir().unwrap();
        check_retry_with_delay(backend(&dir)).await;
    }

    #[tokio::test]
    async fn dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        check_dead_letters(backend(&dir)).await;
    }

    #[tokio::test]
    async fn receive_to_run() {
        let dir = tempfile::tempdir().unwrap();
        check_receive_to_run(backend(&dir)).await;
    }

    /// A completion made through `receive_to_run` is durable with its lease: after reopening,
    /// the completed message is gone and the other one is delivered again.
    #[tokio::test]
    async fn receive_to_run_completions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let queues = Queues::new(backend(&dir));
        let queue = queues.open("app", "run", settings(5)).unwrap();
        let done = queue.send(b"done".to_vec(), Duration::ZERO).await.unwrap();
        let open = queue.send(b"open".to_vec(), Duration::ZERO).await.unwrap();
        let got = queue.receive_to_run(&queues, 2, LONG).await.unwrap();
        queue.complete(&got[0].lease).await.unwrap();
        drop((queue, queues));
        let queues = Queues::new(backend(&dir));
        let queue = queues.open("app", "run", settings(5)).unwrap();
        let again = queue.receive(&queues, 10, LONG).await.unwrap();
        assert_eq!(got[0].id, done);
        assert_eq!(again.iter().map(|m| (m.id.as_str(), m.attempt)).collect::<Vec<_>>(), [(open.as_str(), 2)]);
    }

    #[tokio::test]
    async fn durable_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        check_durable(backend(&dir), || backend(&dir)).await;
    }
}
