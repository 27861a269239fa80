//! The embedded queue's own layout: data dirs from before one key per message are converted,
//! and a message a crash left under two keys is kept once.

use std::sync::Arc;
use std::time::Duration;

use super::{SledQueues, Stored, key};
use crate::storage::queues::{QueueSettings, Queues};
use crate::store::Store;

fn old_entry(tree: &sled::Tree, id: u64, stored: &Stored) {
    let mut index = [b'v'; 17];
    index[1..9].copy_from_slice(&stored.visible_ms.to_be_bytes());
    index[9..].copy_from_slice(&id.to_be_bytes());
    tree.insert(index, &[]).unwrap();
    let mut message = [b'm'; 9];
    message[1..].copy_from_slice(&id.to_be_bytes());
    tree.insert(message, stored.encode()).unwrap();
}

#[tokio::test]
async fn old_layouts_are_converted_and_a_message_under_two_keys_is_kept_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let tree = store.tree("queue/app/jobs").unwrap();
    let ready = Stored { visible_ms: 1, attempt: 0, leased: false, nonce: None, body: b"ready".to_vec() };
    old_entry(&tree, 1, &ready);
    let leased =
        Stored { visible_ms: u64::MAX / 2, attempt: 1, leased: true, nonce: Some(7), body: b"leased".to_vec() };
    old_entry(&tree, 2, &leased);
    // A move interrupted between its two writes: the message at two times.
    let moved = Stored { visible_ms: 5, attempt: 2, leased: false, nonce: None, body: b"moved".to_vec() };
    tree.insert(key(3, 3), Stored { attempt: 1, visible_ms: 3, ..moved.clone() }.encode()).unwrap();
    tree.insert(key(5, 3), moved.encode()).unwrap();

    let queues = Queues::new(Arc::new(SledQueues::new(store)));
    let queue = queues.open("app", "jobs", QueueSettings { max_attempts: 5 }).unwrap();
    assert_eq!(tree.scan_prefix(b"m").count() + tree.scan_prefix(b"v").count(), 0, "no old key is left");
    let got = queue.receive(&queues, 10, Duration::from_secs(60)).await.unwrap();
    let seen: Vec<(&[u8], u32)> = got.iter().map(|m| (m.body.as_slice(), m.attempt)).collect();
    // Oldest visible first: the released lease became visible when the queue was opened.
    assert_eq!(seen, [(&b"ready"[..], 1), (&b"moved"[..], 3), (&b"leased"[..], 2)]);
    for message in &got {
        queue.complete(&message.lease).await.unwrap();
    }
    assert!(tree.is_empty());
}
