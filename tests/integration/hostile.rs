//! Guests that loop, allocate, recurse, flood, panic or make the host read more than their memory
//! limit fail their own call with a named reason; the next call on the same host succeeds.

use std::time::{Duration, Instant};

use host::{App, CallError, CallReport};
use serde_json::{Value, json};

use crate::common::{HOSTILE, app};

const TIMEOUT: Duration = Duration::from_millis(500);

async fn invoke(app: &App, function: &str, args: Value) -> CallReport {
    app.function(function).unwrap().invoke(&args).await.unwrap()
}

async fn still_fine(app: &App) {
    assert_eq!(invoke(app, "hostile.ok", json!({})).await.result, Ok(json!("still fine")));
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_times_out_within_twice_the_limit() {
    let (_data, _host, app) = app(HOSTILE);
    let started = Instant::now();
    let report = invoke(&app, "hostile.spin", json!({})).await;
    let elapsed = started.elapsed();
    assert_eq!(report.result, Err(CallError::Timeout { limit: TIMEOUT }));
    assert!(elapsed < TIMEOUT * 2, "took {elapsed:?}");
    still_fine(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sleeping_in_a_host_call_times_out_too() {
    let (_data, _host, app) = app(HOSTILE);
    let started = Instant::now();
    let report = invoke(&app, "hostile.nap", json!({ "ms": 60_000 })).await;
    assert_eq!(report.result, Err(CallError::Timeout { limit: TIMEOUT }));
    assert!(started.elapsed() < TIMEOUT * 2, "took {:?}", started.elapsed());
    still_fine(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb_hits_the_memory_limit() {
    let (_data, _host, app) = app(HOSTILE);
    assert!(invoke(&app, "hostile.bomb", json!({ "mib": 4 })).await.result.is_ok(), "4 MiB fits in 16 MiB");
    match invoke(&app, "hostile.bomb", json!({ "mib": 64 })).await.result {
        Err(CallError::MemoryLimit { limit, requested }) => {
            assert_eq!(limit, 16 << 20);
            assert!(requested > limit, "requested {requested}");
        }
        other => panic!("expected a memory limit error, got {other:?}"),
    }
    still_fine(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_traps_with_stack_overflow() {
    let (_data, _host, app) = app(HOSTILE);
    assert_eq!(invoke(&app, "hostile.recurse", json!({ "depth": 1000 })).await.result, Ok(json!(1000)));
    assert_eq!(
        invoke(&app, "hostile.recurse", json!({ "depth": 100_000_000u64 })).await.result,
        Err(CallError::StackOverflow)
    );
    still_fine(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn output_flood_is_capped_and_reported() {
    let (_data, _host, app) = app(HOSTILE);
    let report = invoke(&app, "hostile.flood", json!({ "bytes": 1 << 20 })).await;
    assert_eq!(report.result, Ok(json!(null)));
    assert_eq!(report.logs.stdout.len(), 64 << 10, "kept exactly the `output` limit");
    assert_eq!(report.logs.dropped, (1 << 20) - (64 << 10), "every dropped byte is counted");
    assert!(report.logs.stdout.starts_with("flooding stdout"));
    still_fine(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn panics_trap_with_the_message_in_stderr() {
    let (_data, _host, app) = app(HOSTILE);
    let report = invoke(&app, "hostile.fail", json!({})).await;
    match &report.result {
        Err(CallError::Trap { message }) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(report.logs.stderr.contains("deliberate panic"), "stderr: {}", report.logs.stderr);
    still_fine(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runaway_calls_do_not_block_others() {
    let (_data, _host, app) = app(HOSTILE);
    // More spinning guests than the runtime has worker threads: they must still let other calls
    // (which also need a worker) through, since guests yield at every epoch tick.
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runaways: Vec<_> = (0..workers * 2)
        .map(|_| {
            let spin = app.function("hostile.spin").unwrap();
            tokio::spawn(async move { spin.invoke(&json!({})).await.unwrap().result })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ok = app.function("hostile.ok").unwrap();
    let others = tokio::spawn(async move {
        // Few calls, so that a loaded machine still fits them in the runaways' 500 ms.
        for _ in 0..3 {
            assert_eq!(ok.call(json!({})).await.unwrap(), json!("still fine"));
        }
    });
    others.await.unwrap();
    assert!(runaways.iter().all(|r| !r.is_finished()), "the other calls waited for the runaways to end");
    for runaway in runaways {
        assert_eq!(runaway.await.unwrap(), Err(CallError::Timeout { limit: TIMEOUT }));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_see_no_environment_files_or_network() {
    let (_data, _host, app) = app(HOSTILE);
    assert!(std::env::var_os("PATH").is_some(), "the host process has an environment to leak");
    let seen = invoke(&app, "hostile.ambient", json!({})).await.result.unwrap();
    let seen: Vec<&str> = seen.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(seen.len(), 1, "the guest saw {seen:?}");
    assert!(seen[0].starts_with("no / ("), "{seen:?}");
    for path in ["/etc/passwd", "Cargo.toml", "../Cargo.toml"] {
        let read = invoke(&app, "hostile.read-file", json!([path])).await.result;
        assert!(matches!(read, Err(CallError::Guest { .. })), "{path}: {read:?}");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let connected = invoke(&app, "hostile.connect", json!([addr])).await.result;
    assert!(matches!(connected, Err(CallError::Guest { .. })), "{connected:?}");
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "a connection got through"
    );
    still_fine(&app).await;
}

/// The peak resident memory of this process so far (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Set in the child process that runs [`huge_objects_fail_with_the_memory_limit_without_being_read`]
/// alone.
const ALONE: &str = "HOSTILE_TEST_ALONE";

#[tokio::test(flavor = "multi_thread")]
async fn huge_objects_fail_with_the_memory_limit_without_being_read() {
    // The peak memory is the process's: measure it in a child process running only this test, so
    // that tests running beside it here do not count.
    if std::env::var_os(ALONE).is_none() {
        let name = "hostile::huge_objects_fail_with_the_memory_limit_without_being_read";
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let output = String::from_utf8_lossy(&child.stdout).into_owned() + &String::from_utf8_lossy(&child.stderr);
        assert!(child.status.success() && output.contains("1 passed"), "the child failed:\n{output}");
        return;
    }
    let (_data, host, app) = app(HOSTILE);
    // 200 MiB of zeros (a sparse file: no disk used) and 1 MiB, in the bucket of `reader`, whose
    // memory limit is 32 MiB, and an item of 200 MiB in its dataset.
    let bucket = host.buckets_dir("hostile").join("big");
    std::fs::create_dir_all(&bucket).unwrap();
    std::fs::File::create(bucket.join("huge")).unwrap().set_len(200 << 20).unwrap();
    std::fs::write(bucket.join("small"), vec![7u8; 1 << 20]).unwrap();
    let dataset = host.dataset("hostile", "big").await.unwrap();
    // 64 KiB: large enough for the store to keep the bytes in a file (small ones stay in sled).
    let huge_item = dataset.upload("/", "huge.bin", None, vec![0u8; 64 << 10], None, None).await.unwrap().id;
    let file = host.items_dir().join("hostile/big").join(&huge_item);
    std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(200 << 20).unwrap();
    let read = |key: &str, length: Option<u64>| invoke(&app, "reader.read-object", json!(["big", key, length]));
    assert_eq!(read("small", None).await.result, Ok(json!(1 << 20)), "1 MiB fits in 32 MiB");
    let before = peak_rss();
    for length in [None, Some(200 << 20), Some(u64::MAX)] {
        match read("huge", length).await.result {
            Err(CallError::MemoryLimit { limit, requested }) => {
                assert_eq!(limit, 32 << 20);
                assert!(requested >= 200 << 20, "requested {requested}");
            }
            other => panic!("reading 200 MiB ({length:?}) under a 32 MiB limit: expected memory-limit, got {other:?}"),
        }
    }
    assert_eq!(read("huge", Some(1 << 20)).await.result, Ok(json!(1 << 20)), "a range that fits is read");
    // An item whose file holds 200 MiB (written in place, sparse: uploading 200 MiB here would
    // raise this process's peak before the measurement).
    match invoke(&app, "reader.download-item", json!(["big", huge_item])).await.result {
        Err(CallError::MemoryLimit { limit, requested }) => {
            assert_eq!(limit, 32 << 20);
            assert!(requested >= 200 << 20, "requested {requested}");
        }
        other => panic!("downloading a 200 MiB item under a 32 MiB limit: expected memory-limit, got {other:?}"),
    }
    let grown = peak_rss().saturating_sub(before);
    println!("peak RSS grew by {} KiB while reading", grown >> 10);
    assert!(grown < 64 << 20, "the host's peak memory grew by {} MiB", grown >> 20);
    still_fine(&app).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_instance_never_sees_what_an_earlier_call_wrote() {
    let (_data, _host, app) = app(HOSTILE);
    // Each call marks a static buffer and 48 freshly grown pages (3 MiB, past the part of a pooled
    // memory slot the host keeps resident between instances) and counts the marks it found.
    for call in 0..6 {
        let report = invoke(&app, "hostile.leftovers", json!({ "pages": 48 })).await;
        assert_eq!(report.result, Ok(json!(0)), "call {call} saw bytes written by an earlier one");
    }
    // Concurrent calls take other slots; those are reset too.
    let calls = (0..4).map(|_| invoke(&app, "hostile.leftovers", json!({ "pages": 48 })));
    for report in futures_util::future::join_all(calls).await {
        assert_eq!(report.result, Ok(json!(0)));
    }
}
