//! Three `host serve` nodes on a three-node NATS JetStream cluster (every stream replicated three
//! times), all on loopback: state written through one node is read through another, queue
//! messages, topic deliveries, `once` item triggers and schedule ticks run once across the
//! cluster, and a SIGKILLed host node or NATS server loses nothing acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use host::storage::nats::cluster::{LocalCluster, nats_server};
use serde_json::{Value, json};

use crate::common::{COUNTER, MESSAGING, PROBE, ServeProcess, TRAIN_CLASSIFIER};
use crate::server::{Answer, send, try_send};

/// NATS servers and host nodes, each host node with its own data dir (its compiled-component
/// cache is the tests' shared one).
struct Cluster {
    nats: LocalCluster,
    nodes: Vec<Option<ServeProcess>>,
    data: Vec<tempfile::TempDir>,
    manifests: Vec<&'static str>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(manifests: &[&'static str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nats = LocalCluster::start(&nats_server().unwrap(), dir.path(), 3).unwrap();
        let mut cluster = Cluster {
            nats,
            nodes: Vec::new(),
            data: (0..3).map(|_| tempfile::tempdir().unwrap()).collect(),
            manifests: manifests.to_vec(),
            _dir: dir,
        };
        cluster.nodes = (0..3).map(|i| Some(cluster.serve(i))).collect();
        cluster
    }

    fn serve(&self, i: usize) -> ServeProcess {
        let backend = self.nats.backend();
        ServeProcess::start_with(self.data[i].path(), None, &self.manifests, &["--backend", &backend])
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].as_ref().expect("node running").addr
    }

    /// The address of a running node, round robin over `n`.
    fn any(&self, n: usize) -> SocketAddr {
        let running: Vec<SocketAddr> = self.nodes.iter().flatten().map(|node| node.addr).collect();
        running[n % running.len()]
    }

    /// SIGKILL host node `i`.
    fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
    }
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Answer {
    send(addr, "POST", path, &["Content-Type: application/json"], body)
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every key of KV store `store` of `app` with `prefix` and its counter value, read through `addr`.
fn counters(addr: SocketAddr, app: &str, store: &str, prefix: &str) -> BTreeMap<String, i64> {
    let mut counters = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/apps/{app}/kv/{store}?prefix={prefix}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", encode(cursor)));
        }
        let page = send(addr, "GET", &path, &[], b"").json();
        for key in page["keys"].as_array().unwrap() {
            let key = key.as_str().unwrap();
            let value = send(addr, "GET", &format!("/v1/apps/{app}/kv/{store}/{key}"), &[], b"").body;
            counters.insert(key.to_string(), i64::from_le_bytes(value[..].try_into().unwrap()));
        }
        match page["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return counters,
        }
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Execution records of `trigger` of `app`, read through `addr` (newest first).
fn executions(addr: SocketAddr, app: &str, trigger: &str) -> Vec<Value> {
    let answer = send(addr, "GET", &format!("/v1/executions?app={app}&trigger={trigger}&limit=1000"), &[], b"");
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json().as_array().unwrap().clone()
}

#[test]
fn three_nodes_share_state_and_run_each_piece_of_work_once() {
    let cluster = Cluster::start(&[MESSAGING, COUNTER, PROBE]);
    // A KV write through node 0 is read through node 1.
    let key = "/v1/apps/messaging/kv/seen/greeting";
    assert_eq!(send(cluster.addr(0), "PUT", key, &[], b"hello from node 0").status, 204);
    assert_eq!(send(cluster.addr(1), "GET", key, &[], b"").body, b"hello from node 0");
    // A bucket object written through node 1 is read through node 2, byte for byte.
    let object: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let path = "/v1/apps/counter/buckets/notes/shared/big.bin";
    assert_eq!(send(cluster.addr(1), "PUT", path, &[], &object).status, 204);
    assert!(send(cluster.addr(2), "GET", path, &[], b"").body == object, "the object read through node 2 differs");

    // 1,000 queue messages sent round robin, consumed by the queue triggers of all three nodes.
    for i in 0..1000 {
        let answer = post(cluster.any(i), "/v1/apps/messaging/queues/jobs", format!("m{i:04}").as_bytes());
        assert_eq!(answer.status, 201, "{}", answer.text());
    }
    // 20 events on a topic with two subscriptions (`news-b` fails each event's first attempt).
    let mut events = Vec::new();
    for i in 0..20 {
        let answer = post(cluster.any(i), "/v1/apps/messaging/topics/news", format!("e{i}").as_bytes());
        assert_eq!(answer.status, 201, "{}", answer.text());
        events.push(answer.json()["id"].as_str().unwrap().to_string());
    }
    // 100 new images into a dataset with a `once` trigger, uploaded round robin.
    let mut items = BTreeSet::new();
    for i in 0..100 {
        let path = format!("/v1/apps/probe/datasets/inbox/items?dir=/once&name=img{i:03}.png");
        let answer = send(cluster.any(i), "POST", &path, &["Content-Type: image/png"], b"\x89PNG\r\n\x1a\n an image");
        assert_eq!(answer.status, 201, "{}", answer.text());
        items.insert(answer.json()["id"].as_str().unwrap().to_string());
    }

    let messages = Mutex::new(BTreeMap::new());
    wait_until("every queue message is handled", Duration::from_secs(120), || {
        *messages.lock().unwrap() = counters(cluster.addr(2), "messaging", "seen", "msg/");
        messages.lock().unwrap().len() == 1000
    });
    let messages = messages.into_inner().unwrap();
    let redelivered: i64 = messages.values().map(|n| n - 1).sum();
    eprintln!("queue: 1000 messages handled across 3 nodes, {redelivered} redeliveries");
    assert!(messages.values().all(|&n| n == 1), "each message handled once: {redelivered} redeliveries");
    wait_until("the queue is empty", Duration::from_secs(30), || {
        let stats = send(cluster.addr(0), "GET", "/v1/apps/messaging/queues/jobs", &[], b"").json();
        (stats["ready"].clone(), stats["waiting"].clone()) == (json!(0), json!(0))
    });

    wait_until("each event reached both subscriptions", Duration::from_secs(60), || {
        let (a, b) = (
            counters(cluster.addr(0), "messaging", "seen", "a/"),
            counters(cluster.addr(0), "messaging", "seen", "b/"),
        );
        a.len() == 20 && b.len() == 20 && b.values().all(|&n| n == 2)
    });
    let a = counters(cluster.addr(1), "messaging", "seen", "a/");
    let b = counters(cluster.addr(1), "messaging", "seen", "b/");
    assert_eq!(a.keys().map(|k| &k[2..]).collect::<BTreeSet<_>>(), events.iter().map(String::as_str).collect());
    assert!(a.values().all(|&n| n == 1), "news-a handled each event once: {a:?}");
    assert!(b.values().all(|&n| n == 2), "news-b: one failed attempt and one retry per event: {b:?}");

    let succeeded = |records: &[Value]| -> BTreeMap<String, usize> {
        let mut per_item = BTreeMap::new();
        for record in records.iter().filter(|r| r["status"] == "succeeded") {
            *per_item.entry(record["item"][1].as_str().unwrap_or_default().to_string()).or_default() += 1;
        }
        per_item
    };
    wait_until("the `once` trigger ran for every item", Duration::from_secs(120), || {
        succeeded(&executions(cluster.addr(0), "probe", "once")).len() == 100
    });
    let runs = executions(cluster.addr(1), "probe", "once");
    let per_item = succeeded(&runs);
    assert_eq!(per_item.keys().cloned().collect::<BTreeSet<_>>(), items);
    assert!(per_item.values().all(|&n| n == 1), "each item succeeded exactly once");
    assert_eq!(runs.len(), 100, "no item ran twice");

    // The 1-second schedule, running on three nodes, fired once per tick: no tick twice, and
    // (nearly) every tick of the time the nodes ran.
    let ticks = executions(cluster.addr(2), "messaging", "every-second");
    let fire_times: Vec<u64> = ticks.iter().map(|r| r["input"]["scheduled-ms"].as_u64().unwrap()).collect();
    let distinct: BTreeSet<u64> = fire_times.iter().copied().collect();
    assert_eq!(distinct.len(), fire_times.len(), "a tick fired twice: {fire_times:?}");
    let (first, last) = (distinct.first().unwrap(), distinct.last().unwrap());
    let span = (last - first) / 1000 + 1;
    eprintln!("schedule: {} fires in {span} ticks across 3 nodes", fire_times.len());
    assert!(span >= 10 && fire_times.len() as u64 * 10 >= span * 9, "{} fires in {span} ticks", fire_times.len());
}

/// Sets its flag when dropped: a load thread stops even when the test panics meanwhile (a scope
/// waits for its threads before the panic goes on).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Writes through every node of `addrs` until `stop`: the keys acknowledged (204) go to
/// `acknowledged`. They go to a store of their own (`counter`'s `default`): a compare-and-swap
/// competes with every write to its store, and the handlers' counters should not wait on this load.
fn write_load(addrs: Vec<SocketAddr>, stop: &AtomicBool, acknowledged: &Mutex<Vec<String>>) {
    std::thread::scope(|scope| {
        for (t, addr) in addrs.into_iter().enumerate() {
            scope.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{t}-{n}");
                    let path = format!("/v1/apps/counter/kv/default/{key}");
                    if try_send(addr, "PUT", &path, &[], key.as_bytes()).is_ok_and(|a| a.status == 204) {
                        acknowledged.lock().unwrap().push(key);
                    }
                    n += 1;
                    // About 20 writes a second per node: load that leaves the 2-core machine,
                    // which runs all six servers, time for the work under test.
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
}

#[test]
fn a_killed_host_node_leaves_its_work_to_the_others_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(&[MESSAGING, COUNTER]);
    // Jobs (async executions run at once by the node that took them) and queue messages that
    // take seconds (`sleep:MS`, each a different MS: the handler counts runs by body), so that
    // the node killed has work in flight when it dies.
    // Each node opens the stores first (a store's first use creates its streams: a second or
    // more on this machine, not what this test measures).
    for i in 0..3 {
        for store in ["messaging/kv/seen", "counter/kv/default"] {
            assert_eq!(send(cluster.addr(i), "PUT", &format!("/v1/apps/{store}/warm-up"), &[], b"x").status, 204);
        }
    }
    // Two jobs and four messages per node, within each node's `concurrency` (4) and `timeout` (10s).
    let jobs: Vec<String> = (0..6)
        .map(|i| {
            let body: Vec<u8> = format!("sleep:{}", 4000 + i).into_bytes();
            let message = json!({ "message": { "id": format!("j{i}"), "body": body, "attempt": 1, "lease": "" } });
            let path = "/v1/apps/messaging/functions/messaging.handle?async=true";
            let answer = post(cluster.any(i), path, message.to_string().as_bytes());
            assert_eq!(answer.status, 202, "{}", answer.text());
            answer.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    for i in 0..12 {
        let answer = post(cluster.any(i), "/v1/apps/messaging/queues/jobs", format!("sleep:{}", 1500 + i).as_bytes());
        assert_eq!(answer.status, 201);
    }
    // Writes through every node before, during and after the kill.
    let (stop, acknowledged) = (AtomicBool::new(false), Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        let addrs = (0..3).map(|i| cluster.addr(i)).collect();
        scope.spawn(|| write_load(addrs, &stop, &acknowledged));
        let _stop = StopOnDrop(&stop);
        // Node 1 took jobs 1 and 4 (round robin) and runs them at once: kill it mid-run, once
        // one of them counted its start (a direct KV write; records are written in batches).
        wait_until("node 1 runs one of its jobs", Duration::from_secs(60), || {
            [4001, 4004].iter().any(|ms| {
                send(cluster.addr(0), "GET", &format!("/v1/apps/messaging/kv/seen/msg%2Fsleep:{ms}"), &[], b"").status
                    == 200
            })
        });
        cluster.kill(1);
        let killed = acknowledged.lock().unwrap().len();
        wait_until("more writes are acknowledged after the kill", Duration::from_secs(60), || {
            acknowledged.lock().unwrap().len() >= killed + 20
        });
    });
    wait_until("the other nodes handled every message and job", Duration::from_secs(180), || {
        counters(cluster.addr(0), "messaging", "seen", "msg/").len() == 18
    });
    for id in &jobs {
        let record = send(cluster.addr(2), "GET", &format!("/v1/executions/{id}?wait=60s"), &[], b"").json();
        assert_eq!(record["status"], "succeeded", "job {id}: {record}");
    }
    // A job or message cut off by the kill ran again on another node (at least once).
    let runs = counters(cluster.addr(2), "messaging", "seen", "msg/");
    let again: Vec<&String> = runs.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k).collect();
    eprintln!("node 1 killed; run again elsewhere: {again:?}");
    assert!(!again.is_empty(), "the killed node had work in flight: {runs:?}");
    let acknowledged = acknowledged.into_inner().unwrap();
    for key in &acknowledged {
        let answer = send(cluster.addr(2), "GET", &format!("/v1/apps/counter/kv/default/{key}"), &[], b"");
        assert_eq!(answer.body, key.as_bytes(), "acknowledged write {key} is missing");
    }
    eprintln!("{} acknowledged writes, all present", acknowledged.len());
}

#[test]
fn a_killed_nats_server_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(&[MESSAGING, COUNTER]);
    let (stop, acknowledged) = (AtomicBool::new(false), Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        let addrs = (0..3).map(|i| cluster.addr(i)).collect();
        scope.spawn(|| write_load(addrs, &stop, &acknowledged));
        let _stop = StopOnDrop(&stop);
        let acknowledged_at_least = |n: usize| {
            wait_until(&format!("{n} writes are acknowledged"), Duration::from_secs(60), || {
                acknowledged.lock().unwrap().len() >= n
            })
        };
        acknowledged_at_least(20);
        cluster.nats.kill(0);
        std::thread::sleep(Duration::from_secs(4));
        let before_restart = acknowledged.lock().unwrap().len();
        cluster.nats.restart(0).unwrap();
        acknowledged_at_least(before_restart + 20);
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    eprintln!("{} writes acknowledged while a NATS server died and came back", acknowledged.len());
    for (i, key) in acknowledged.iter().enumerate() {
        let answer = send(cluster.any(i), "GET", &format!("/v1/apps/counter/kv/default/{key}"), &[], b"");
        assert_eq!(answer.body, key.as_bytes(), "acknowledged write {key} is missing");
    }
    // The cluster carries on: a queue message sent now is handled.
    assert_eq!(post(cluster.addr(0), "/v1/apps/messaging/queues/jobs", b"after").status, 201);
    wait_until("the message sent after the restart is handled", Duration::from_secs(60), || {
        counters(cluster.addr(1), "messaging", "seen", "msg/after").len() == 1
    });
}

/// A call of `export` of the train-classifier function through `addr`: its JSON result.
fn train_call(addr: SocketAddr, export: &str, args: Value) -> Value {
    let path = format!("/v1/apps/train-classifier/functions/train-classifier.{export}");
    let answer = post(addr, &path, args.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{export}: {}", answer.text());
    answer.json()
}

#[test]
fn the_classifier_trains_on_another_node_than_the_one_that_requested_it() {
    use crate::digits::{digits, png};
    let mut cluster = Cluster::start(&[TRAIN_CLASSIFIER]);
    // The dataset goes in through node 1; every 10th digit is held out.
    let mut held_out = Vec::new();
    for (i, (label, pixels)) in digits().iter().enumerate() {
        if i % 10 == 0 {
            held_out.push((*label, png(pixels)));
            continue;
        }
        let key = format!("/v1/apps/train-classifier/buckets/datasets/digits/{label}/{i:04}.png");
        assert_eq!(send(cluster.addr(1), "PUT", &key, &[], &png(pixels)).status, 204, "upload {key}");
    }
    // Node 0 takes the request, then dies at once: the training (queue task + topic event) can
    // only run on node 1 or 2.
    let id = train_call(cluster.addr(0), "request-training", json!({ "dataset": "digits", "epochs": 30 }));
    let id = id.as_str().unwrap().to_string();
    cluster.kill(0);
    let mut seen: Vec<String> = Vec::new();
    wait_until("the model is trained", Duration::from_secs(300), || {
        let status = train_call(cluster.addr(2), "status", json!({ "id": id })).as_str().unwrap().to_string();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        status == "Model Trained!"
    });
    // The trainer writes the status before it returns, so its record may land a moment later.
    wait_until("the trainer's record says it succeeded", Duration::from_secs(60), || {
        let trainer = executions(cluster.addr(1), "train-classifier", "train-on-new-model");
        trainer.iter().any(|r| r["status"] == "succeeded")
    });
    // The saved model, read from the cluster's bucket, classifies held-out digits through node 1.
    let correct = held_out
        .iter()
        .filter(|(label, image)| {
            use base64::Engine as _;
            let image = base64::engine::general_purpose::STANDARD.encode(image);
            let prediction = train_call(cluster.addr(1), "classify", json!({ "id": id, "image": image }));
            prediction["label"].as_str().and_then(|l| l.parse().ok()) == Some(*label)
        })
        .count();
    let accuracy = correct as f64 / held_out.len() as f64;
    eprintln!("train-classifier across nodes: statuses {seen:?}, held-out accuracy {accuracy:.3}");
    assert!(accuracy >= 0.85, "held-out accuracy {accuracy}");
}
