//! The queue suite on NATS, and what only a cluster shows: several nodes on one queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::NatsQueues;
use crate::storage::nats::{Nats, testing};
use crate::storage::queues::suite::*;
use crate::storage::queues::{QueueBackend, QueueError, QueueSettings, QueueStats, Queues};

fn backend(nats: &Nats) -> Arc<dyn QueueBackend> {
    Arc::new(NatsQueues::new(nats.clone()))
}

const SETTINGS: QueueSettings = QueueSettings { max_attempts: 5 };

#[tokio::test]
async fn send_receive_complete() {
    check_send_receive_complete(backend(&testing::nats().await)).await;
}

#[tokio::test]
async fn receive_bounds() {
    check_receive_bounds(backend(&testing::nats().await)).await;
}

#[tokio::test]
async fn lease_expiry() {
    check_lease_expiry(backend(&testing::nats().await)).await;
}

#[tokio::test]
async fn retry_with_delay() {
    check_retry_with_delay(backend(&testing::nats().await)).await;
}

#[tokio::test]
async fn dead_letters() {
    check_dead_letters(backend(&testing::nats().await)).await;
}

#[tokio::test]
async fn receive_to_run() {
    check_receive_to_run(backend(&testing::nats().await)).await;
}

/// The NATS form of the suite's reopening check: a node stops with a message leased, and
/// another node (another connection) finds every message, the leased one as its next attempt.
#[tokio::test]
async fn leases_of_a_stopped_node_come_back() {
    let nats = testing::nats().await;
    let queues = Queues::new(backend(&nats));
    let queue = queues.open("app", "kept", SETTINGS).unwrap();
    let leased = queue.send(b"leased".to_vec(), Duration::ZERO).await.unwrap();
    let waiting = queue.send(b"waiting".to_vec(), Duration::ZERO).await.unwrap();
    assert_eq!(queue.receive(&queues, 1, Duration::from_secs(60)).await.unwrap()[0].id, leased);
    drop((queue, queues));
    let queues = Queues::new(backend(&testing::another_node(&nats).await));
    let queue = queues.open("app", "kept", SETTINGS).unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < 2 && start.elapsed() < Duration::from_secs(5) {
        got.extend(queue.receive(&queues, 10, Duration::from_secs(60)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let got = got.iter().map(|m| (m.id.as_str(), m.attempt)).collect::<Vec<_>>();
    assert_eq!(got, [(leased.as_str(), 2), (waiting.as_str(), 1)], "leases of a stopped node are given back");
}

/// A lease received on one node is completed or given back through another (the operator API
/// may run on any node) but cannot be made up, and a delayed message waits for its delay without using an attempt.
#[tokio::test]
async fn leases_settle_on_any_node() {
    let nats = testing::nats().await;
    let (a, b) = (Queues::new(backend(&nats)), Queues::new(backend(&testing::another_node(&nats).await)));
    let (on_a, on_b) = (a.open("app", "jobs", SETTINGS).unwrap(), b.open("app", "jobs", SETTINGS).unwrap());
    on_a.send(b"x".to_vec(), Duration::ZERO).await.unwrap();
    let first = on_a.receive(&a, 1, Duration::from_secs(60)).await.unwrap().remove(0);
    let (unsigned, mac) = first.lease.rsplit_once('/').unwrap();
    let forged = format!("{unsigned}/{}{}", &mac[..mac.len() - 1], if mac.ends_with('0') { '1' } else { '0' });
    assert_eq!(on_b.complete(&forged).await, Err(QueueError::LeaseExpired(forged.clone())), "a lease is signed");
    assert!(matches!(on_b.complete(unsigned).await, Err(QueueError::Invalid(_))));
    on_b.retry(&b, &first.lease, Duration::ZERO).await.unwrap();
    let second = on_b.receive(&b, 1, Duration::from_secs(60)).await.unwrap().remove(0);
    assert_eq!(second.attempt, 2);
    assert!(on_a.complete(&first.lease).await.is_err(), "the first lease is stale on every node");
    on_a.complete(&second.lease).await.unwrap();
    assert_eq!(on_b.stats().await.unwrap(), QueueStats { ready: 0, waiting: 0, leased: 0 });

    let delayed = on_a.send(b"later".to_vec(), Duration::from_millis(300)).await.unwrap();
    assert!(on_b.receive(&b, 1, Duration::from_secs(60)).await.unwrap().is_empty(), "not before its delay");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = on_b.receive(&b, 1, Duration::from_secs(60)).await.unwrap().remove(0);
    assert_eq!((got.id, got.attempt), (delayed, 1), "an early receipt is no attempt");
    on_a.complete(&got.lease).await.unwrap();
}

/// A node learns at once of a message another node sent (its trigger is woken), and sees it
/// as visible now.
#[tokio::test]
async fn other_nodes_hear_of_messages() {
    let nats = testing::nats().await;
    let (a, b) = (Queues::new(backend(&nats)), Queues::new(backend(&testing::another_node(&nats).await)));
    let (on_a, on_b) = (a.open("app", "jobs", SETTINGS).unwrap(), b.open("app", "jobs", SETTINGS).unwrap());
    on_b.stats().await.unwrap();
    assert_eq!(on_b.next_visible_ms(), None);
    let woken = tokio::spawn({
        let on_b = on_b.clone();
        async move {
            on_b.changed().await;
            on_b.next_visible_ms()
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let start = Instant::now();
    on_a.send(b"x".to_vec(), Duration::ZERO).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(2), woken).await.expect("woken").unwrap();
    println!("woken {:?} after the send began", start.elapsed());
    assert!(next.is_some_and(|at| at <= crate::clock::now_ms()), "visible now: {next:?}");
    assert_eq!(on_b.receive(&b, 10, Duration::from_secs(60)).await.unwrap().len(), 1);
}

/// A body over the cluster's largest message is refused (sled takes up to 16 MiB).
#[tokio::test]
async fn bodies_over_max_payload_are_refused() {
    let queues = Queues::new(backend(&testing::nats().await));
    let queue = queues.open("app", "big", SETTINGS).unwrap();
    let refused = queue.send(vec![0; 2 << 20], Duration::ZERO).await;
    assert!(matches!(&refused, Err(QueueError::Invalid(e)) if e.contains("max_payload")), "{refused:?}");
    queue.send(vec![0; 512 << 10], Duration::ZERO).await.unwrap();
}

/// Three nodes (three connections) consume one queue of 300 messages at once: each message is
/// completed exactly once and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn three_nodes_share_a_queue() {
    const MESSAGES: usize = 300;
    let nats = testing::nats().await;
    let queues = Queues::new(backend(&nats));
    let queue = queues.open("app", "shared", SETTINGS).unwrap();
    let start = Instant::now();
    for i in 0..MESSAGES {
        queue.send(i.to_string().into_bytes(), Duration::ZERO).await.unwrap();
    }
    let sent = start.elapsed();
    let completed = Arc::new(AtomicUsize::new(0));
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let (node, completed) = (testing::another_node(&nats).await, completed.clone());
        nodes.push(tokio::spawn(async move {
            let queues = Queues::new(backend(&node));
            let queue = queues.open("app", "shared", SETTINGS).unwrap();
            let mut done = Vec::new();
            let give_up = Instant::now() + Duration::from_secs(60);
            while completed.load(Ordering::SeqCst) < MESSAGES && Instant::now() < give_up {
                let got = queue.receive(&queues, 10, Duration::from_secs(60)).await.unwrap();
                if got.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                for message in got {
                    queue.complete(&message.lease).await.unwrap();
                    completed.fetch_add(1, Ordering::SeqCst);
                    done.push((String::from_utf8(message.body).unwrap(), message.attempt));
                }
            }
            done
        }));
    }
    let mut handled: BTreeMap<String, usize> = BTreeMap::new();
    let (mut per_node, mut redelivered) = (Vec::new(), 0);
    for node in nodes {
        let done = node.await.unwrap();
        per_node.push(done.len());
        redelivered += done.iter().filter(|(_, attempt)| *attempt > 1).count();
        for (body, _) in done {
            *handled.entry(body).or_default() += 1;
        }
    }
    println!(
        "{MESSAGES} messages: sent in {sent:?}, consumed by 3 nodes in {:?} ({per_node:?} per node), {redelivered} redelivered",
        start.elapsed() - sent
    );
    assert_eq!(handled.len(), MESSAGES, "none lost");
    assert!(handled.values().all(|&n| n == 1), "each completed once: {handled:?}");
    assert_eq!(queue.stats().await.unwrap(), QueueStats { ready: 0, waiting: 0, leased: 0 });
}

/// Latency of one message's send, receive and complete, on one node and across two.
#[tokio::test]
async fn latency() {
    const ROUNDS: u32 = 50;
    let nats = testing::nats().await;
    let (a, b) = (Queues::new(backend(&nats)), Queues::new(backend(&testing::another_node(&nats).await)));
    let (on_a, on_b) = (a.open("app", "timed", SETTINGS).unwrap(), b.open("app", "timed", SETTINGS).unwrap());
    on_b.stats().await.unwrap();
    for (name, receiver, queues) in [("same node", &on_a, &a), ("other node", &on_b, &b)] {
        let mut times = [Duration::ZERO; 3];
        for _ in 0..ROUNDS {
            let t = Instant::now();
            on_a.send(b"x".to_vec(), Duration::ZERO).await.unwrap();
            let sent = t.elapsed();
            // As the queue trigger does: more slots than messages.
            let message = receiver.receive(queues, 10, Duration::from_secs(60)).await.unwrap().remove(0);
            let received = t.elapsed();
            receiver.complete(&message.lease).await.unwrap();
            for (total, phase) in times.iter_mut().zip([sent, received - sent, t.elapsed() - received]) {
                *total += phase;
            }
        }
        let [send, receive, complete] = times.map(|t| t / ROUNDS);
        println!("{name}: send {send:?}, receive {receive:?}, complete {complete:?} (mean of {ROUNDS})");
    }
}
