//! Crash safety of a real `host serve` process: under mixed load from several client threads it is
//! killed (SIGKILL) at a random moment and restarted on the same data dir and address, `CRASH_ROUNDS`
//! times (default 5). After each restart every acknowledged write is still there, counters lie
//! between what was acknowledged and what was sent, every accepted queue message gets handled and
//! every accepted job (`?async=true`) succeeds, the `once` item trigger succeeds exactly once per
//! acknowledged item (at most once per item), and no temporary file is left behind.
//!
//! The kill moments and the data come from a seed, printed at the start; `CRASH_SEED=N` replays one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{COUNTER, MESSAGING, PROBE, ServeProcess};
use crate::server::{Answer, send, try_send};

const APPS: [&str; 3] = [COUNTER, PROBE, MESSAGING];
/// Client threads loading the server.
const CLIENTS: usize = 4;
/// Counters the clients share (each client increments all of them in turn).
const COUNTERS: usize = 3;
/// How long queued work (messages, item triggers) may take to finish after a restart.
const SETTLE: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64*), so that a failing run can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Bytes of a random length below `max`: printable text, so that items are `text/plain`.
    fn text(&mut self, max: u64) -> Vec<u8> {
        (0..self.below(max)).map(|_| b' ' + self.below(95) as u8).collect()
    }
}

/// What the clients were told succeeded (and, for counters, what they tried).
#[derive(Default)]
struct Ledger {
    /// Counter name -> (acknowledged increments, sent increments).
    counters: BTreeMap<String, (i64, i64)>,
    /// KV key (store `default` of `counter`) -> value; every key is written once.
    kv: BTreeMap<String, Vec<u8>>,
    /// Object key (bucket `notes` of `counter`) -> bytes; every key is written once.
    objects: BTreeMap<String, Vec<u8>>,
    /// Item id -> (size, sha256) of the uploaded bytes.
    items: BTreeMap<String, (u64, String)>,
    /// Bodies of messages the `jobs` queue accepted (each body unique).
    messages: Vec<String>,
    /// Execution id -> (note name, text) of accepted `counter.save-note` jobs (`?async=true`).
    jobs: BTreeMap<String, (String, String)>,
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The answer if it is a `2xx` with its whole body: anything else is not an acknowledgement.
fn acknowledged(answer: std::io::Result<Answer>, json: bool) -> Option<Answer> {
    let answer = answer.ok().filter(|a| (200..300).contains(&a.status))?;
    (!json || serde_json::from_slice::<Value>(&answer.body).is_ok()).then_some(answer)
}

/// One client: a mix of every kind of write until `stop`, recording acknowledgements in `ledger`.
fn client(addr: SocketAddr, name: String, seed: u64, stop: &AtomicBool, ledger: &Mutex<Ledger>) {
    let mut rng = Rng(seed | 1);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("{name}-{n}");
        match n % 6 {
            0 => {
                let counter = format!("c{}", n as usize / 6 % COUNTERS);
                ledger.lock().unwrap().counters.entry(counter.clone()).or_default().1 += 1;
                let body = json!([counter, 1]).to_string();
                let path = "/v1/apps/counter/functions/counter.increment";
                if acknowledged(
                    try_send(addr, "POST", path, &["Content-Type: application/json"], body.as_bytes()),
                    true,
                )
                .is_some()
                {
                    ledger.lock().unwrap().counters.get_mut(&counter).unwrap().0 += 1;
                }
            }
            1 => {
                let (key, value) = (format!("kv-{id}"), rng.text(2048));
                let answer = try_send(addr, "PUT", &format!("/v1/apps/counter/kv/default/{key}"), &[], &value);
                if acknowledged(answer, false).is_some() {
                    ledger.lock().unwrap().kv.insert(key, value);
                }
            }
            2 => {
                let (key, data) = (format!("dir-{}/{id}", n % 3), rng.text(8192));
                let answer = try_send(addr, "PUT", &format!("/v1/apps/counter/buckets/notes/{key}"), &[], &data);
                if acknowledged(answer, false).is_some() {
                    ledger.lock().unwrap().objects.insert(key, data);
                }
            }
            3 => {
                let data = rng.text(16384);
                let path = format!("/v1/apps/probe/datasets/inbox/items?dir=/once&name={id}.txt");
                let answer = try_send(addr, "POST", &path, &["Content-Type: text/plain"], &data);
                if let Some(item) = acknowledged(answer, true) {
                    let id = item.json()["id"].as_str().expect("an uploaded item has an id").to_string();
                    ledger.lock().unwrap().items.insert(id, (data.len() as u64, sha256(&data)));
                }
            }
            4 => {
                let (note, text) = (format!("job-{id}"), format!("text of {id}"));
                let path = "/v1/apps/counter/functions/counter.save-note?async=true";
                let answer = try_send(addr, "POST", path, &[], json!([note, text]).to_string().as_bytes());
                if let Some(job) = acknowledged(answer, true).filter(|a| a.status == 202) {
                    let execution = job.json()["id"].as_str().expect("a job has an execution id").to_string();
                    ledger.lock().unwrap().jobs.insert(execution, (note, text));
                }
            }
            _ => {
                let body = format!("m-{id}");
                let answer = try_send(addr, "POST", "/v1/apps/messaging/queues/jobs", &[], body.as_bytes());
                if acknowledged(answer, true).is_some_and(|a| a.status == 201) {
                    ledger.lock().unwrap().messages.push(body);
                }
            }
        }
    }
}

/// Every execution record matching `query` (e.g. `app=probe&trigger=once`), page by page.
fn executions(addr: SocketAddr, query: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let before = all.last().map(|e| format!("&before={}", e["id"].as_str().unwrap())).unwrap_or_default();
        let answer = send(addr, "GET", &format!("/v1/executions?{query}&limit=1000{before}"), &[], b"");
        assert_eq!(answer.status, 200, "listing executions {query}: {}", answer.text());
        let page = answer.json().as_array().expect("a list of executions").clone();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Files under `dir` whose name marks them as temporary: `*.tmp*` (the item store's staging files)
/// or anything inside a `.staging` folder (the buckets' staging area).
fn temporary_files(dir: &Path, inside_staging: bool, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let staging = inside_staging || name == ".staging";
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            temporary_files(&entry.path(), staging, found);
        } else if inside_staging || name.contains(".tmp") {
            found.push(entry.path().display().to_string());
        }
    }
}

/// The queued work still not done: accepted messages not yet handled, acknowledged items the
/// `once` trigger has not yet succeeded on, accepted jobs not yet succeeded (with their note
/// written), triggered executions still queued or running.
fn settle(addr: SocketAddr, ledger: &Ledger) -> Vec<String> {
    let handled =
        |body: &&String| send(addr, "GET", &format!("/v1/apps/messaging/kv/seen/msg/{body}"), &[], b"").status == 200;
    let messages: Vec<&String> = ledger.messages.iter().filter(|b| !handled(b)).collect();
    let succeeded: HashSet<String> = executions(addr, "app=probe&trigger=once&status=succeeded")
        .iter()
        .map(|e| e["item"][1].as_str().unwrap_or_default().to_string())
        .collect();
    let items: Vec<&String> = ledger.items.keys().filter(|id| !succeeded.contains(*id)).collect();
    let mut pending = Vec::new();
    if !messages.is_empty() {
        pending.push(format!("{} accepted messages not handled: {messages:?}", messages.len()));
    }
    if !items.is_empty() {
        pending.push(format!("`once` trigger not succeeded on {} acknowledged items: {items:?}", items.len()));
    }
    for (execution, (note, text)) in &ledger.jobs {
        let record = send(addr, "GET", &format!("/v1/executions/{execution}"), &[], b"").json();
        let saved = send(addr, "GET", &format!("/v1/apps/counter/buckets/notes/{note}"), &[], b"");
        if record["status"] != "succeeded" || saved.status != 200 || saved.body != text.as_bytes() {
            pending
                .push(format!("accepted job {execution} is {}, its note `{note}`: {}", record["status"], saved.status));
        }
    }
    for query in ["app=probe&trigger=once", "app=messaging&trigger=jobs-consumer", "app=counter&trigger=async"] {
        for status in ["queued", "running"] {
            for e in executions(addr, &format!("{query}&status={status}")) {
                pending.push(format!("execution {} ({} of {}) is {status}", e["id"], e["trigger"], e["app"]));
            }
        }
    }
    pending
}

/// Check everything the ledger says against the restarted server; the problems found.
fn check(addr: SocketAddr, data: &Path, ledger: &Ledger) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in &ledger.kv {
        let answer = send(addr, "GET", &format!("/v1/apps/counter/kv/default/{key}"), &[], b"");
        if answer.status != 200 || answer.body != *value {
            problems.push(format!(
                "KV `{key}`: {} with {} bytes, acknowledged {} bytes",
                answer.status,
                answer.body.len(),
                value.len()
            ));
        }
    }
    for (key, bytes) in &ledger.objects {
        let answer = send(addr, "GET", &format!("/v1/apps/counter/buckets/notes/{key}"), &[], b"");
        if answer.status != 200 || answer.body != *bytes {
            problems.push(format!(
                "object `{key}`: {} with {} bytes, acknowledged {} bytes",
                answer.status,
                answer.body.len(),
                bytes.len()
            ));
        }
    }
    for (name, (acked, sent)) in &ledger.counters {
        let answer =
            send(addr, "POST", "/v1/apps/counter/functions/counter.get", &[], json!([name]).to_string().as_bytes());
        let value = answer.json().as_i64().unwrap_or(0);
        if answer.status != 200 || value < *acked || value > *sent {
            problems.push(format!(
                "counter `{name}`: {} {}, acknowledged {acked} of {sent} increments",
                answer.status,
                answer.text()
            ));
        }
    }
    let base = "/v1/apps/probe/datasets/inbox/items";
    for (id, (size, hash)) in &ledger.items {
        let item = send(addr, "GET", &format!("{base}/{id}"), &[], b"");
        let bytes = send(addr, "GET", &format!("{base}/{id}/download"), &[], b"");
        if item.status != 200
            || item.json()["size"] != json!(size)
            || bytes.status != 200
            || sha256(&bytes.body) != *hash
        {
            problems.push(format!(
                "item `{id}`: {} {}, download {} with sha256 {}, uploaded {size} bytes with sha256 {hash}",
                item.status,
                item.text(),
                bytes.status,
                sha256(&bytes.body)
            ));
        }
    }
    // Queued work finishes: every accepted message handled, the `once` trigger run on every item,
    // no triggered execution left queued or running.
    let deadline = Instant::now() + SETTLE;
    let mut pending = settle(addr, ledger);
    while !pending.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        pending = settle(addr, ledger);
    }
    problems.extend(pending.into_iter().map(|p| format!("after {SETTLE:?}: {p}")));
    let mut successes: HashMap<String, usize> = HashMap::new();
    for e in executions(addr, "app=probe&trigger=once&status=succeeded") {
        *successes.entry(e["item"][1].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    for (item, n) in successes {
        if n > 1 {
            problems.push(format!("`once` trigger succeeded {n} times on item `{item}`"));
        }
    }
    let mut temporary = Vec::new();
    temporary_files(data, false, &mut temporary);
    if !temporary.is_empty() {
        problems.push(format!("temporary files left after the restart: {temporary:?}"));
    }
    problems
}

#[test]
fn acknowledged_writes_survive_sigkill_at_random_moments() {
    let rounds: usize = std::env::var("CRASH_ROUNDS").map_or(5, |r| r.parse().expect("CRASH_ROUNDS is a number"));
    let seed: u64 = std::env::var("CRASH_SEED").map_or_else(
        |_| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
        |s| s.parse().expect("CRASH_SEED is a number"),
    );
    eprintln!("crash test: {rounds} rounds, CRASH_SEED={seed}");
    let mut rng = Rng(seed | 1);
    let data = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(data.path(), None, &APPS);
    let addr = server.addr;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut problems = Vec::new();
    for round in 1..=rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (stop, ledger, seed) = (stop.clone(), ledger.clone(), rng.next());
                std::thread::spawn(move || client(addr, format!("r{round}-c{c}"), seed, &stop, &ledger))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
        drop(server); // SIGKILL, whatever the clients are doing
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        server = ServeProcess::start(data.path(), Some(addr), &APPS);
        let ledger = ledger.lock().unwrap();
        let found = check(addr, data.path(), &ledger);
        eprintln!(
            "round {round}: {} counters, {} KV values, {} objects, {} items, {} messages, {} jobs acknowledged; {} problems",
            ledger.counters.len(),
            ledger.kv.len(),
            ledger.objects.len(),
            ledger.items.len(),
            ledger.messages.len(),
            ledger.jobs.len(),
            found.len()
        );
        problems.extend(found.into_iter().map(|p| format!("round {round}: {p}")));
    }
    drop(server);
    assert!(problems.is_empty(), "CRASH_SEED={seed}:\n{}", problems.join("\n"));
}
