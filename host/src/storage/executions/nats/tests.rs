use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use serde_json::json;

use super::NatsExecutions;
use crate::outcome::Logs;
use crate::storage::executions::{
    EventLog, EventRef, Execution, ExecutionBackend, ExecutionFilter, Retention, Status, now_ms,
};
use crate::storage::nats::{self, event_key, testing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_backend_passes_the_backend_suite() {
    let executions = NatsExecutions::new(testing::nats().await, Retention::default());
    crate::storage::executions::suite::suite(executions.as_ref()).await;
    executions.close();
}

#[test]
fn ids_sort_in_creation_order_and_carry_their_time() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let nats = runtime.block_on(testing::nats());
    let executions = NatsExecutions::new(nats, Retention::default());
    let before = now_ms();
    let ids: Vec<String> = (0..1000).map(|_| executions.new_id().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "unique, in creation order");
    let made = super::id_time(&ids[0]).unwrap();
    assert!(made >= before && made <= now_ms());
}

/// Two nodes accepting the same events at the same moment queue each event's executions once,
/// and a `once` claim held already leaves its record out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_accept_an_event_once() {
    let (one, two) = testing::two_nodes().await;
    let log = nats::EventLog::open(&one, "ITEMS", "app").await.unwrap();
    let nodes = [NatsExecutions::new(one, Retention::default()), NatsExecutions::new(two, Retention::default())];
    let held = Execution { claim: Some("once/t/held".into()), ..record(nodes[0].as_ref(), "held") };
    nodes[0].accept_events(&[(event(&log, EventLog::Items, "first").await.as_ref(), vec![held])]).await.unwrap();
    for round in 0..5 {
        let key = event(&log, EventLog::Items, &format!("e{round}")).await;
        let accepting = nodes.iter().map(|node| {
            let records = vec![
                record(node.as_ref(), "a"),
                Execution { claim: Some(format!("once/t/{round}")), ..record(node.as_ref(), "b") },
                Execution { claim: Some("once/t/held".into()), ..record(node.as_ref(), "c") },
            ];
            let (node, key) = (node.clone(), key.clone());
            tokio::spawn(async move { node.accept_events(&[(key.as_ref(), records)]).await })
        });
        for accepted in futures_util::future::join_all(accepting).await {
            accepted.unwrap().unwrap();
        }
    }
    let queued = nodes[1].queued_ids().await.unwrap();
    assert_eq!(queued.len(), 1 + 5 * 2, "each event once, without the record whose claim is held");
    let mut functions = Vec::new();
    for id in &queued {
        functions.push(nodes[1].get(id).await.unwrap().unwrap().function);
    }
    functions.sort();
    assert_eq!(functions, [vec!["f.a"; 5], vec!["f.b"; 5], vec!["f.held"]].concat());
    assert!(log.pending(10).await.unwrap().is_empty(), "every event left its log");
    // A failed execution gives its `once` claim back; a succeeded one keeps it.
    let mut failed = nodes[0].get(&queued[0]).await.unwrap().unwrap();
    failed.status = Status::Failed;
    nodes[0].dequeue(&failed).await.unwrap();
    assert!(nodes[1].take_once("once/t/held", "another").await.unwrap(), "released by the failure");
}

/// A node that took an event and died before writing its executions: another writes them under
/// its ids once [`super::accept::OUTBOX_GRACE`] passed (the wait is shortened by dating the entry
/// back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_taken_by_a_dead_node_is_written_by_another() {
    let (one, two) = testing::two_nodes().await;
    let log = nats::EventLog::open(&one, "TOPICS", "app").await.unwrap();
    let key = event(&log, EventLog::Topics, "e").await;
    let dead = NatsExecutions::new(one, Retention::default());
    let alive = NatsExecutions::new(two, Retention::default());
    let id = dead.new_id().unwrap();
    let accepted = &dead.buckets().await.unwrap().accepted;
    let taken = json!({ "ids": [id], "written": false, "taken_ms": now_ms() - 60_000 });
    accepted.put(&format!("TOPICS/app/{}", key.key), Bytes::from(taken.to_string())).await.unwrap();
    alive.accept_events(&[(key.as_ref(), vec![record(alive.as_ref(), "x")])]).await.unwrap();
    assert_eq!(alive.queued_ids().await.unwrap(), [id.as_str()], "the dead node's id");
    assert_eq!(alive.get(&id).await.unwrap().unwrap().function, "f.x");
    assert!(log.pending(10).await.unwrap().is_empty());
}

/// A claim of one node keeps the other out until it is released or its ttl passes unrenewed;
/// the holder renews it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_hold_across_nodes_until_released_or_expired() {
    let (one, two) = testing::two_nodes().await;
    let (a, b) = (NatsExecutions::new(one, Retention::default()), NatsExecutions::new(two, Retention::default()));
    let ttl = Duration::from_millis(600);
    assert!(a.claim("k", ttl).await.unwrap());
    assert!(!b.claim("k", ttl).await.unwrap());
    assert!(!b.renew("k", ttl).await.unwrap(), "only the holder renews");
    for _ in 0..3 {
        tokio::time::sleep(ttl / 3).await;
        assert!(a.renew("k", ttl).await.unwrap());
        assert!(!b.claim("k", ttl).await.unwrap(), "renewed: still held");
    }
    b.release("k").await.unwrap();
    assert!(!b.claim("k", ttl).await.unwrap(), "a release by another node does nothing");
    a.release("k").await.unwrap();
    assert!(b.claim("k", ttl).await.unwrap(), "free once released");
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert!(a.claim("k", ttl).await.unwrap(), "taken over once expired");
    assert!(!b.renew("k", ttl).await.unwrap(), "its old holder lost it");
    // Racing takeovers of an expired claim: one winner.
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    let (won_a, won_b) = tokio::join!(a.claim("k", ttl), b.claim("k", ttl));
    assert!(won_a.unwrap() ^ won_b.unwrap());
    assert_eq!(a.prune_claims().await.unwrap(), 0, "nothing expired yet");
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(a.prune_claims().await.unwrap(), 1);
}

/// Schedule fire times are shared and only move forward.
#[tokio::test]
async fn fire_times_only_move_forward() {
    let executions = NatsExecutions::new(testing::nats().await, Retention::default());
    assert_eq!(executions.last_fire("app/s").await.unwrap(), None);
    executions.save_fire("app/s", 20).await.unwrap();
    executions.save_fire("app/s", 10).await.unwrap();
    assert_eq!(executions.last_fire("app/s").await.unwrap(), Some(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_keeps_the_newest_final_records_and_unfinished_ones() {
    let executions = NatsExecutions::new(testing::nats().await, Retention { max_count: 2, ..Retention::default() });
    let queued = record(executions.as_ref(), "q");
    executions.put(&queued, None).await.unwrap();
    let mut finals = Vec::new();
    for _ in 0..4 {
        let mut done = record(executions.as_ref(), "d");
        done.finish_with(Ok(&json!(1)));
        executions.record(done.clone(), Logs { stdout: "x".into(), ..Logs::default() });
        finals.push(done.id);
    }
    let mut old = record(executions.as_ref(), "old");
    old.finish_with(Ok(&json!(1)));
    old.id = format!("{:016x}{:08x}", 1u64 << super::ID_COUNTER_BITS, 0);
    executions.put(&old, None).await.unwrap();
    assert_eq!(executions.prune().await.unwrap(), 3);
    let kept: Vec<String> =
        executions.list(&ExecutionFilter::default(), None, 10).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(kept, [finals[3].clone(), finals[2].clone(), queued.id.clone()]);
    assert_eq!(executions.logs(&finals[0]).await.unwrap(), None, "its logs went too");
    executions.close();
}

fn record(backend: &dyn ExecutionBackend, name: &str) -> Execution {
    Execution::queued(backend.new_id().unwrap(), "app", &format!("f.{name}"), "t", json!([]))
}

/// An event appended to `log` (of kind `kind`) of app `app`.
async fn event(log: &nats::EventLog, kind: EventLog, id: &str) -> Event {
    let sequence = log.append(id, PublishMessage::build().payload(Bytes::from(id.to_string()))).await.unwrap();
    Event { log: kind, key: event_key(sequence) }
}

/// An event of app `app`: its log and its key.
#[derive(Clone)]
struct Event {
    log: EventLog,
    key: String,
}

impl Event {
    fn as_ref(&self) -> EventRef<'_> {
        EventRef { log: self.log, app: "app", key: self.key.as_bytes() }
    }
}

/// Serial calls of one function run on one node at a time: the node that claimed their line
/// runs them (in order, one at a time), the others wait for it to leave the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_at_a_time_runs_a_line_of_serial_calls() {
    use crate::storage::executions::Executions;
    let (one, two) = testing::two_nodes().await;
    let a = Executions::new(NatsExecutions::new(one, Retention::default()));
    let b = Executions::new(NatsExecutions::new(two, Retention::default()));
    let [first, second, third] = ["1", "2", "3"].map(|id| format!("{id:0>24}"));
    for (node, id) in [(&a, &first), (&b, &second), (&a, &third)] {
        assert!(node.claim(id));
        node.join_line("app/f.x", id);
    }
    assert!(a.claim_store(&first).await);
    assert!(!b.claim_store(&second).await, "node a holds the line");
    assert!(a.claim_store(&third).await, "a holds the line for all of its calls");
    a.release(&first).await;
    assert!(b.claim(&second));
    b.join_line("app/f.x", &second);
    assert!(!b.claim_store(&second).await, "a still runs one of the line");
    a.release(&third).await;
    assert!(b.claim(&second));
    b.join_line("app/f.x", &second);
    assert!(b.claim_store(&second).await, "free once a left the line");
    b.release(&second).await;
}

/// Records and logs larger than a NATS message are kept in pieces, and deleted with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_and_logs_of_any_size() {
    let executions = NatsExecutions::new(testing::nats().await, Retention { max_count: 0, ..Retention::default() });
    let big = "x".repeat(700 * 1024);
    let mut record = Execution { input: json!([big]), ..record(executions.as_ref(), "big") };
    let output = Logs { stdout: "y".repeat(1500 * 1024), ..Logs::default() };
    executions.put(&record, Some((&output, 1))).await.unwrap();
    assert_eq!(executions.get(&record.id).await.unwrap().as_ref(), Some(&record));
    let logs = executions.logs(&record.id).await.unwrap().unwrap();
    assert!(logs.len() > 1500 * 1024 && logs.starts_with("--- attempt 1 ---\n[stdout]\nyyy"));
    record.finish_with(Ok(&json!(1)));
    executions.put(&record, None).await.unwrap();
    assert_eq!(executions.prune().await.unwrap(), 1);
    assert_eq!(executions.get(&record.id).await.unwrap(), None);
    let buckets = executions.buckets().await.unwrap();
    assert!(buckets.records.keys().await.unwrap().is_empty(), "no piece left");
    assert!(buckets.logs.keys().await.unwrap().is_empty(), "no piece left");
}

/// An event appended by one node wakes the triggers of every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_appended_anywhere_wake_every_node() {
    let (one, two) = testing::two_nodes().await;
    let log = nats::EventLog::open(&one, "TOPICS", "app").await.unwrap();
    let watching = NatsExecutions::new(two, Retention::default());
    watching.new_events();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let woken = watching.new_events().notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    event(&log, EventLog::Topics, "e").await;
    tokio::time::timeout(Duration::from_secs(5), woken).await.expect("woken by the append");
    watching.close();
}

/// Cancelling on one node an execution another node runs interrupts it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_node_running_the_execution() {
    use crate::storage::executions::Executions;
    let (one, two) = testing::two_nodes().await;
    let a = Arc::new(Executions::new(NatsExecutions::new(one, Retention::default())));
    let b = Executions::new(NatsExecutions::new(two, Retention::default()));
    let mut record = Execution::queued(a.new_id().unwrap(), "app", "f.x", "async", json!([]));
    record.status = Status::Running;
    a.enqueue(&record).await.unwrap();
    assert!(a.claim(&record.id) && a.claim_store(&record.id).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let running = tokio::spawn({
        let (a, mut record) = (a.clone(), record.clone());
        async move {
            a.cancel_handle(&record.id).unwrap().wait().await;
            record.finish_with(Err(&crate::outcome::CallError::Cancelled));
            a.put(&record, None).await.unwrap();
        }
    });
    let cancelled = b.cancel(&record.id).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    running.await.unwrap();
}

/// With the host's claim ttl: the execution of a node that stopped renewing (killed) is taken
/// over by another node once the ttl passed; one whose node renews it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_executions_are_taken_over_after_the_claim_ttl() {
    use crate::storage::executions::{CLAIM_TTL, Executions};
    let (one, two) = testing::two_nodes().await;
    let a = Arc::new(Executions::new(NatsExecutions::new(one, Retention::default())));
    let b = Executions::new(NatsExecutions::new(two, Retention::default()));
    let [dead, alive] = ["d", "a"].map(|_| a.new_id().unwrap());
    for id in [&dead, &alive] {
        assert!(a.claim(id) && a.claim_store(id).await);
    }
    let renewing = tokio::spawn({
        let (a, alive) = (a.clone(), alive.clone());
        async move { a.keep_claimed(&alive).await }
    });
    assert!(b.claim(&dead) && !b.claim_store(&dead).await, "held by a");
    assert!(b.refused_lately(&dead), "the dispatcher leaves it for a while");
    tokio::time::sleep(CLAIM_TTL + Duration::from_millis(500)).await;
    assert!(b.claim(&dead) && b.claim_store(&dead).await, "taken over once a's claim expired");
    assert!(b.claim(&alive) && !b.claim_store(&alive).await, "still renewed by a");
    renewing.abort();
}

/// A node whose claim was taken over stops keeping it (and the runner stops the work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeping_a_claim_ends_when_another_node_took_it() {
    use crate::storage::executions::{CLAIM_RENEW_EVERY, Executions};
    let backend = NatsExecutions::new(testing::nats().await, Retention::default());
    let executions = Executions::new(backend.clone());
    let id = executions.new_id().unwrap();
    assert!(executions.claim(&id) && executions.claim_store(&id).await);
    let claims = &backend.buckets().await.unwrap().claims;
    claims.put(&id, Bytes::from(format!("{} 00000000", now_ms() + 60_000))).await.unwrap();
    tokio::time::timeout(CLAIM_RENEW_EVERY * 2, executions.keep_claimed(&id)).await.expect("lost at the next renewal");
}
