//! The index and the retention over a real sled store on disk.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Retention, SledExecutions};
use crate::outcome::{CallError, Logs};
use crate::storage::executions::{Execution, ExecutionBackend, ExecutionFilter, Status, now_ms};
use crate::store::Store;

fn open(dir: &std::path::Path, retention: Retention) -> Arc<SledExecutions> {
    // A store reopened right after it was dropped may still be locked by sled's own threads for
    // a moment.
    let mut tries = 0;
    let store = loop {
        match Store::open(&dir.join("db")) {
            Ok(store) => break Arc::new(store),
            Err(_) if tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open the store: {e}"),
        }
    };
    SledExecutions::open(&store, retention).unwrap()
}

/// A final record of a direct call of `app`/`function`, with a line of logs.
fn call(executions: &SledExecutions, app: &str, function: &str, trigger: &str, ok: bool) {
    let logs = Logs { stdout: "hi\n".into(), ..Logs::default() };
    let failure = CallError::Host { message: "no".into() };
    let result = if ok { Ok(&json!(1)) } else { Err(&failure) };
    let record = Execution::ran(executions.new_id().unwrap(), (app, function, trigger, 1), json!([]), now_ms(), result);
    executions.record_final(record, logs);
}

/// A record written as it is, like a queued execution's.
fn put(executions: &SledExecutions, app: &str, edit: impl FnOnce(&mut Execution)) -> String {
    let mut record = Execution::queued(executions.new_id().unwrap(), app, "f.run", "async", json!([]));
    edit(&mut record);
    executions.put_now(&record, Some((&Logs { stdout: "out\n".into(), ..Logs::default() }, 1))).unwrap();
    record.id
}

fn ids(records: &[Execution]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

/// Every page of `filter`, `page` records at a time, following `before`.
fn paged(executions: &SledExecutions, filter: &ExecutionFilter, page: usize) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let records = executions.list_now(filter, all.last().map(String::as_str), page);
        if records.is_empty() {
            return all;
        }
        all.extend(ids(&records));
    }
}

#[test]
fn time_ranges_and_items_filter_the_record_log_and_the_tree_alike() {
    let dir = tempfile::tempdir().unwrap();
    let executions = open(dir.path(), Retention::default());
    let mut logged = Vec::new();
    for i in 0..6 {
        let id = executions.new_id().unwrap();
        let record = Execution::ran(id.clone(), ("a", "f.x", "call", 1), json!([]), 1_000 + i, Ok(&json!(i)));
        executions.record_final(record, Logs::default());
        logged.push(id);
    }
    let on_item = put(&executions, "a", |r| {
        r.queued_ms = 1_003;
        r.item = Some(("photos".into(), "p1".into()));
    });
    let later = put(&executions, "a", |r| r.queued_ms = 1_009);
    let range = ExecutionFilter { since_ms: Some(1_002), until_ms: Some(1_005), ..Default::default() };
    let expected = [on_item.clone(), logged[4].clone(), logged[3].clone(), logged[2].clone()];
    assert_eq!(ids(&executions.list_now(&range, None, 100)), expected);
    assert_eq!(paged(&executions, &range, 1), expected, "pages of 1");
    let since = ExecutionFilter { since_ms: Some(1_005), ..Default::default() };
    assert_eq!(ids(&executions.list_now(&since, None, 100)), [later, logged[5].clone()]);
    let item = ExecutionFilter { item: Some(("photos".into(), "p1".into())), ..Default::default() };
    assert_eq!(ids(&executions.list_now(&item, None, 100)), [on_item]);
    let other_item = ExecutionFilter { item: Some(("photos".into(), "p2".into())), ..Default::default() };
    assert!(executions.list_now(&other_item, None, 100).is_empty());
}

#[test]
fn filtered_lists_read_only_what_the_index_matches_and_page_with_before() {
    let dir = tempfile::tempdir().unwrap();
    let executions = open(dir.path(), Retention::default());
    for i in 0..40 {
        let app = if i % 3 == 0 { "a" } else { "b" };
        let function = if i % 2 == 0 { "f.x" } else { "f.y" };
        call(&executions, app, function, if i % 5 == 0 { "map" } else { "call" }, i % 4 != 0);
    }
    let queued = put(&executions, "a", |_| {});
    let running = put(&executions, "a", |r| r.status = Status::Running);
    let everything = executions.list_now(&ExecutionFilter::default(), None, 1000);
    assert_eq!(everything.len(), 42);
    let filters = [
        ExecutionFilter { app: Some("a".into()), ..Default::default() },
        ExecutionFilter { app: Some("b".into()), function: Some("f.x".into()), ..Default::default() },
        ExecutionFilter { trigger: Some("map".into()), status: Some(Status::Failed), ..Default::default() },
        ExecutionFilter { status: Some(Status::Succeeded), function: Some("f.y".into()), ..Default::default() },
        ExecutionFilter { app: Some("a".into()), status: Some(Status::Queued), ..Default::default() },
    ];
    for filter in &filters {
        let expected: Vec<String> = ids(&everything.iter().filter(|r| filter.matches(r)).cloned().collect::<Vec<_>>());
        assert!(!expected.is_empty(), "{filter:?} matches something");
        assert_eq!(ids(&executions.list_now(filter, None, 1000)), expected, "{filter:?}");
        assert_eq!(paged(&executions, filter, 3), expected, "{filter:?}, pages of 3");
        // Only the records listed are read.
        let before = executions.decoded();
        executions.list_now(filter, None, 1000);
        assert_eq!(executions.decoded() - before, expected.len() as u64, "{filter:?}");
    }
    let queued_only = ExecutionFilter { status: Some(Status::Queued), ..Default::default() };
    assert_eq!(ids(&executions.list_now(&queued_only, None, 10)), [queued]);

    // A filter that matches nothing reads no record.
    let before = executions.decoded();
    let nope = ExecutionFilter { app: Some("nope".into()), ..Default::default() };
    assert!(executions.list_now(&nope, None, 100).is_empty());
    let nope = ExecutionFilter { app: Some("a".into()), function: Some("nope.x".into()), ..Default::default() };
    assert!(executions.list_now(&nope, None, 100).is_empty());
    assert_eq!(executions.decoded(), before, "nothing decoded for filters that match nothing");

    // A status change moves the record in the status index.
    let mut record = executions.get_now(&running).unwrap();
    record.finish_with(Ok(&json!(2)));
    executions.put_now(&record, None).unwrap();
    let running_only = ExecutionFilter { status: Some(Status::Running), ..Default::default() };
    assert!(executions.list_now(&running_only, None, 10).is_empty());
    let succeeded = ExecutionFilter { status: Some(Status::Succeeded), app: Some("a".into()), ..Default::default() };
    assert_eq!(executions.list_now(&succeeded, None, 1)[0].id, running);
    executions.stop_writer();
}

#[test]
fn an_index_is_built_for_records_written_before_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let executions = open(dir.path(), Retention::default());
        put(&executions, "old", |_| {});
        executions.stop_writer();
        executions.index.clear().unwrap();
    }
    let executions = open(dir.path(), Retention::default());
    let old = ExecutionFilter { app: Some("old".into()), ..Default::default() };
    assert_eq!(executions.list_now(&old, None, 10).len(), 1);
    executions.stop_writer();
}

#[test]
fn pruning_keeps_the_newest_final_records_of_each_app_and_never_unfinished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let executions = open(dir.path(), Retention { max_count: 3, ..Retention::default() });
    let queued = put(&executions, "a", |_| {});
    for _ in 0..6 {
        call(&executions, "a", "f.x", "call", true);
    }
    let running = put(&executions, "a", |r| r.status = Status::Running);
    call(&executions, "b", "f.x", "call", false);
    call(&executions, "b", "f.x", "call", true);
    let all_a = executions.list_now(&ExecutionFilter { app: Some("a".into()), ..Default::default() }, None, 100);
    let finals: Vec<String> = ids(&all_a).into_iter().filter(|id| *id != queued && *id != running).collect();

    assert_eq!(executions.prune_now().unwrap(), 3);
    let kept = executions.list_now(&ExecutionFilter { app: Some("a".into()), ..Default::default() }, None, 100);
    let expected: Vec<String> =
        [running.clone()].into_iter().chain(finals[..3].iter().cloned()).chain([queued.clone()]).collect();
    assert_eq!(ids(&kept), expected, "the newest 3 final records, and every unfinished one");
    for deleted in &finals[3..] {
        assert_eq!(executions.get_now(deleted), None);
        assert_eq!(executions.logs_now(deleted), None, "its logs go too");
        assert_eq!(
            executions
                .index
                .scan_prefix(b"")
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.ends_with(deleted.as_bytes()))
                .count(),
            0
        );
    }
    let b = ExecutionFilter { app: Some("b".into()), ..Default::default() };
    assert_eq!(executions.list_now(&b, None, 100).len(), 2, "another app's records count apart");
    assert_eq!(executions.prune_now().unwrap(), 0, "nothing more to prune");
    executions.stop_writer();
}

#[test]
fn pruning_removes_final_records_older_than_the_age_limit() {
    let dir = tempfile::tempdir().unwrap();
    let executions = open(dir.path(), Retention { max_age: Duration::from_secs(3600), ..Retention::default() });
    let hours_ago = |hours: u64| now_ms() - hours * 3600 * 1000;
    let old = put(&executions, "a", |r| {
        r.queued_ms = hours_ago(3);
        r.status = Status::Succeeded;
        r.finished_ms = Some(hours_ago(2));
    });
    let old_queued = put(&executions, "a", |r| r.queued_ms = hours_ago(3));
    let recent = put(&executions, "a", |r| {
        r.status = Status::Failed;
        r.finished_ms = Some(now_ms());
    });
    call(&executions, "a", "f.x", "call", true);
    assert_eq!(executions.prune_now().unwrap(), 1);
    assert_eq!(executions.get_now(&old), None);
    assert_eq!(executions.logs_now(&old), None);
    assert!(executions.get_now(&old_queued).is_some(), "an unfinished record stays");
    assert!(executions.get_now(&recent).is_some());
    assert_eq!(executions.list_now(&ExecutionFilter::default(), None, 100).len(), 3);
    executions.stop_writer();
}

#[test]
fn direct_call_records_are_appended_in_batches_and_read_one_by_one_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let listed = {
        let executions = open(dir.path(), Retention::default());
        // The writer thread waits meanwhile, so that one pass writes every record.
        let writing = executions.writing.lock().unwrap();
        for i in 0..1500 {
            call(&executions, if i % 2 == 0 { "a" } else { "b" }, "f.x", "call", i % 7 != 0);
        }
        drop(writing);
        executions.write_pending();
        assert_eq!(executions.log_batches.len(), 2, "1,500 records in two batches of at most 1,024");
        assert_eq!(executions.records.len(), 0, "no record written one by one");
        let listed = ids(&executions.list_now(&ExecutionFilter::default(), None, 2000));
        assert_eq!(listed.len(), 1500);
        assert!(listed.windows(2).all(|w| w[0] > w[1]), "newest first");
        executions.stop_writer();
        listed
    };
    let executions = open(dir.path(), Retention::default());
    assert_eq!(ids(&executions.list_now(&ExecutionFilter::default(), None, 2000)), listed);
    let before = executions.decoded();
    let record = executions.get_now(&listed[700]).unwrap();
    assert_eq!(executions.decoded() - before, 1, "a get reads one record, not its batch");
    assert_eq!((record.app.as_str(), record.id.as_str()), (["a", "b"][(1499 - 700) % 2], listed[700].as_str()));
    assert_eq!(executions.logs_now(&listed[700]).unwrap(), "--- attempt 1 ---\n[stdout]\nhi\n");
    let failed = ExecutionFilter { app: Some("b".into()), status: Some(Status::Failed), ..Default::default() };
    let expected: Vec<String> =
        (0..1500).filter(|i| i % 2 == 1 && i % 7 == 0).rev().map(|i| listed[1499 - i].clone()).collect();
    let before = executions.decoded();
    assert_eq!(ids(&executions.list_now(&failed, None, 2000)), expected);
    assert_eq!(executions.decoded() - before, expected.len() as u64, "only matching records are read");
    assert_eq!(paged(&executions, &failed, 7), expected);
    executions.stop_writer();
}

#[test]
fn records_leave_the_log_for_good_when_pruned_or_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let hours_ago = |hours: u64| now_ms() - hours * 3600 * 1000;
    let (kept, rewritten) = {
        let retention = Retention { max_count: 5, max_age: Duration::from_secs(3600) };
        let executions = open(dir.path(), retention);
        let ok = Ok(&json!(1));
        let old = Execution::ran(executions.new_id().unwrap(), ("a", "f.x", "call", 1), json!([]), hours_ago(2), ok);
        let writing = executions.writing.lock().unwrap();
        executions.record_final(old.clone(), Logs::default());
        for _ in 0..12 {
            call(&executions, "a", "f.x", "call", true);
        }
        drop(writing);
        executions.write_pending();
        assert_eq!(executions.log_batches.len(), 1);
        let all = ids(&executions.list_now(&ExecutionFilter::default(), None, 100));
        assert_eq!(executions.prune_now().unwrap(), 8, "the old one by age, then 7 over the count");
        assert_eq!(executions.get_now(&old.id), None);
        assert_eq!(ids(&executions.list_now(&ExecutionFilter::default(), None, 100)), all[..5]);

        // A logged record written again moves to the records tree, its logs with it.
        let mut record = executions.get_now(&all[2]).unwrap();
        record.output = Some(json!("changed"));
        executions.put_now(&record, None).unwrap();
        executions.stop_writer();
        (all[..5].to_vec(), all[2].clone())
    };
    let executions = open(dir.path(), Retention::default());
    assert_eq!(ids(&executions.list_now(&ExecutionFilter::default(), None, 100)), kept, "nothing comes back");
    assert_eq!(executions.get_now(&rewritten).unwrap().output, Some(json!("changed")));
    assert_eq!(executions.logs_now(&rewritten).unwrap(), "--- attempt 1 ---\n[stdout]\nhi\n");
    assert_eq!(executions.log_index.len(), 1, "the batch's summary, rewritten");
    executions.stop_writer();
}

#[test]
fn the_sled_backend_passes_the_backend_suite() {
    let dir = tempfile::tempdir().unwrap();
    let executions = open(dir.path(), Retention::default());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(crate::storage::executions::suite::suite(executions.as_ref()));
    executions.stop_writer();
}

/// A record in the execution queue is rewritten without a transaction: a crash between the
/// record and its index entry (made here by writing the record alone) leaves a stale entry, which
/// taking the execution off the queue writes again.
#[tokio::test]
async fn a_stale_index_entry_of_a_queued_record_is_healed_when_it_leaves_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let executions = open(dir.path(), Retention::default());
    let mut record = Execution::queued(executions.new_id().unwrap(), "app", "f.run", "async", json!([]));
    executions.enqueue(&record).await.unwrap();
    record.status = Status::Succeeded;
    record.finished_ms = Some(now_ms());
    executions.records.insert(record.id.as_bytes(), serde_json::to_vec(&record).unwrap()).unwrap();
    let succeeded = ExecutionFilter { status: Some(Status::Succeeded), ..Default::default() };
    assert!(executions.list_now(&succeeded, None, 10).is_empty(), "the index entry still says queued");
    // What the dispatcher does with a final record it finds in the queue.
    let stored = executions.get(&record.id).await.unwrap().unwrap();
    executions.dequeue(&stored).await.unwrap();
    assert_eq!(ids(&executions.list_now(&succeeded, None, 10)), [record.id.clone()]);
    assert!(executions.queued_ids().await.unwrap().is_empty());
    // A queued record is rewritten (record and index entry) while it is in the queue.
    let mut queued = Execution::queued(executions.new_id().unwrap(), "app", "f.run", "async", json!([]));
    executions.enqueue(&queued).await.unwrap();
    queued.status = Status::Running;
    executions.put(&queued, None).await.unwrap();
    let running = ExecutionFilter { status: Some(Status::Running), ..Default::default() };
    assert_eq!(ids(&executions.list_now(&running, None, 10)), [queued.id.clone()]);
    executions.stop_writer();
}

/// Events accepted in one call: each leaves its log, their records are queued in order, and a
/// `once` claim taken by an earlier event of the call leaves a later event's record out.
#[tokio::test]
async fn events_accepted_together_take_once_claims_in_order() {
    use crate::storage::executions::{EventLog, EventRef};
    let dir = tempfile::tempdir().unwrap();
    let executions = open(dir.path(), Retention::default());
    let log = crate::storage::datasets::events_tree(&executions.store, "app").unwrap();
    let keys = [1u64, 2, 3].map(u64::to_be_bytes);
    for key in &keys {
        log.insert(key, b"event".as_slice()).unwrap();
    }
    let record = |claim: &str| Execution {
        claim: Some(claim.to_string()),
        ..Execution::queued(executions.new_id().unwrap(), "app", "f.run", "t", json!([]))
    };
    let (first, again, other) = (record("once/t/a"), record("once/t/a"), record("once/t/b"));
    let events: Vec<_> = keys
        .iter()
        .zip([&first, &again, &other])
        .map(|(key, record)| (EventRef { log: EventLog::Items, app: "app", key }, vec![record.clone()]))
        .collect();
    executions.accept_events(&events).await.unwrap();
    assert!(log.is_empty(), "every event left its log");
    assert_eq!(executions.queued_ids().await.unwrap(), [first.id.clone(), other.id.clone()]);
    assert!(executions.get(&again.id).await.unwrap().is_none(), "its claim was taken by the first event");
    executions.stop_writer();
}
