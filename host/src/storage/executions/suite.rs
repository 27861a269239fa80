//! The semantics every [`ExecutionBackend`] must have, as tests that take the backend: run on
//! sled in `sled/tests.rs`, and on any other backend by calling [`suite`] with a fresh one.

use std::time::Duration;

use serde_json::json;

use super::{Execution, ExecutionBackend, ExecutionFilter, Status};
use crate::outcome::{CallError, Logs};

/// Every check below, on a backend holding no records yet.
pub(crate) async fn suite(backend: &dyn ExecutionBackend) {
    records_and_logs(backend).await;
    calls_that_ran_at_once(backend).await;
    lists_filter_and_page(backend).await;
    the_queue(backend).await;
    claims_are_exclusive(backend).await;
    waiting_ends_when_final(backend).await;
}

fn logs(stdout: &str) -> Logs {
    Logs { stdout: stdout.into(), ..Logs::default() }
}

async fn queued(backend: &dyn ExecutionBackend, app: &str, function: &str, trigger: &str) -> Execution {
    Execution::queued(backend.new_id().unwrap(), app, function, trigger, json!([1]))
}

/// A record reads back as written; each attempt's output is appended under its own header.
async fn records_and_logs(backend: &dyn ExecutionBackend) {
    let mut record = queued(backend, "records", "f.run", "async").await;
    assert_eq!(backend.get(&record.id).await.unwrap(), None);
    assert_eq!(backend.logs(&record.id).await.unwrap(), None);
    backend.put(&record, None).await.unwrap();
    assert_eq!(backend.get(&record.id).await.unwrap().as_ref(), Some(&record));
    backend.put(&record, Some((&logs("one\n"), 1))).await.unwrap();
    record.attempt = 2;
    record.finish_with(Ok(&json!("done")));
    backend.put(&record, Some((&logs("two"), 2))).await.unwrap();
    assert_eq!(backend.get(&record.id).await.unwrap().as_ref(), Some(&record));
    let text = backend.logs(&record.id).await.unwrap().unwrap();
    assert_eq!(text, "--- attempt 1 ---\n[stdout]\none\n--- attempt 2 ---\n[stdout]\ntwo\n");
}

/// The final record of a call that ran at once is readable soon after, with its output.
async fn calls_that_ran_at_once(backend: &dyn ExecutionBackend) {
    let failure = CallError::Guest { value: json!("no") };
    let id = backend.new_id().unwrap();
    let record = Execution::ran(id.clone(), ("direct", "f.x", "call", 1), json!([]), 5, Err(&failure));
    backend.record(record, logs("hi\n"));
    let read = backend.get(&id).await.unwrap().expect("readable after it was recorded");
    assert_eq!((read.status, read.trigger.as_str(), read.started_ms), (Status::Failed, "call", Some(5)));
    assert_eq!(read.error, Some(json!({ "code": "guest-error", "message": failure.to_string(), "error": "no" })));
    assert!(backend.logs(&id).await.unwrap().unwrap().contains("[stdout]\nhi\n"));
}

/// Lists are newest first, filtered by app, function, trigger and status, and paged by cursor.
async fn lists_filter_and_page(backend: &dyn ExecutionBackend) {
    let mut written = Vec::new();
    for i in 0..9 {
        let app = if i % 3 == 0 { "list-a" } else { "list-b" };
        let mut record = queued(backend, app, if i % 2 == 0 { "f.x" } else { "f.y" }, "call").await;
        record.queued_ms = 1_000 + i;
        if i % 3 == 1 {
            record.item = Some(("photos".into(), format!("item-{}", i % 2)));
        }
        if i % 4 == 0 {
            record.finish_with(Ok(&json!(i)));
        }
        backend.put(&record, None).await.unwrap();
        written.push(record);
    }
    written.reverse();
    let filters = [
        ExecutionFilter { app: Some("list-b".into()), ..Default::default() },
        ExecutionFilter { app: Some("list-a".into()), function: Some("f.x".into()), ..Default::default() },
        ExecutionFilter { app: Some("list-b".into()), status: Some(Status::Queued), ..Default::default() },
        ExecutionFilter { app: Some("list-a".into()), trigger: Some("call".into()), ..Default::default() },
        ExecutionFilter { since_ms: Some(1_002), until_ms: Some(1_007), ..Default::default() },
        ExecutionFilter { app: Some("list-b".into()), until_ms: Some(1_004), ..Default::default() },
        ExecutionFilter { item: Some(("photos".into(), "item-0".into())), ..Default::default() },
    ];
    for filter in &filters {
        let expected: Vec<&str> = written.iter().filter(|r| filter.matches(r)).map(|r| r.id.as_str()).collect();
        assert!(!expected.is_empty(), "{filter:?} matches something");
        let all = backend.list(filter, None, 100).await.unwrap();
        assert_eq!(all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), expected, "{filter:?}");
        let mut paged = Vec::new();
        loop {
            let page = backend.list(filter, paged.last().map(String::as_str), 2).await.unwrap();
            assert!(page.len() <= 2);
            if page.is_empty() {
                break;
            }
            paged.extend(page.into_iter().map(|r| r.id));
        }
        assert_eq!(paged, expected, "{filter:?}, pages of 2");
    }
    let none = ExecutionFilter { app: Some("list-none".into()), ..Default::default() };
    assert!(backend.list(&none, None, 10).await.unwrap().is_empty());
    let empty_range = ExecutionFilter { since_ms: Some(1_005), until_ms: Some(1_005), ..Default::default() };
    assert!(backend.list(&empty_range, None, 10).await.unwrap().is_empty());
}

/// A queued execution stays in the queue, oldest first, until it is taken off.
async fn the_queue(backend: &dyn ExecutionBackend) {
    let first = queued(backend, "queue", "f.x", "async").await;
    let second = queued(backend, "queue", "f.x", "enqueue").await;
    backend.enqueue(&first).await.unwrap();
    backend.enqueue(&second).await.unwrap();
    assert_eq!(backend.get(&second.id).await.unwrap().as_ref(), Some(&second), "the record is written too");
    let ids = backend.queued_ids().await.unwrap();
    let ours: Vec<&String> = ids.iter().filter(|id| [&first.id, &second.id].contains(id)).collect();
    assert_eq!(ours, [&first.id, &second.id]);
    backend.dequeue(&first).await.unwrap();
    let ids = backend.queued_ids().await.unwrap();
    assert!(!ids.contains(&first.id) && ids.contains(&second.id));
    backend.dequeue(&second).await.unwrap();
    backend.durable().await.unwrap();
}

/// One claimant at a time; the holder renews it; a released claim can be taken again; an
/// expired one too.
async fn claims_are_exclusive(backend: &dyn ExecutionBackend) {
    let ttl = Duration::from_secs(30);
    assert!(backend.claim("claim-1", ttl).await.unwrap());
    assert!(!backend.claim("claim-1", ttl).await.unwrap(), "held already");
    assert!(backend.renew("claim-1", ttl).await.unwrap(), "renewed by its holder");
    assert!(!backend.claim("claim-1", ttl).await.unwrap(), "still held once renewed");
    assert!(!backend.renew("claim-3", ttl).await.unwrap(), "no claim to renew");
    assert!(backend.claim("claim-4", Duration::from_millis(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(backend.claim("claim-4", ttl).await.unwrap(), "taken again once expired");
    assert!(backend.claim("claim-2", ttl).await.unwrap(), "claims are by key");
    backend.release("claim-1").await.unwrap();
    assert!(backend.claim("claim-1", ttl).await.unwrap(), "free again once released");
    backend.release("claim-1").await.unwrap();
    backend.release("claim-2").await.unwrap();
}

/// `wait` answers once the record is final, or with the record as it is at the timeout.
async fn waiting_ends_when_final(backend: &dyn ExecutionBackend) {
    assert_eq!(backend.wait("no-such-id", Duration::from_millis(10)).await.unwrap(), None);
    let mut record = queued(backend, "wait", "f.x", "async").await;
    backend.put(&record, None).await.unwrap();
    let timed_out = backend.wait(&record.id, Duration::from_millis(20)).await.unwrap().unwrap();
    assert_eq!(timed_out.status, Status::Queued);
    let id = record.id.clone();
    let waiting = backend.wait(&id, Duration::from_secs(10));
    let finishing = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        record.finish_with(Ok(&json!(7)));
        backend.put(&record, None).await.unwrap();
    };
    let (waited, ()) = tokio::join!(waiting, finishing);
    let waited = waited.unwrap().unwrap();
    assert_eq!((waited.status, waited.output), (Status::Succeeded, Some(json!(7))));
}
