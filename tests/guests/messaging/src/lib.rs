//! Test guest for queues, topics and schedules: handlers that count their runs in the KV store
//! `seen` and fail on request, plus the queue and topic imports exposed as exports.

// The generated `topics.publish` import passes its arguments lowered: more than clippy likes.
#![allow(clippy::too_many_arguments)]

use guest_sdk::bindings::host::api::queues;
use guest_sdk::kv::Store;

wit_bindgen::generate!({
    world: "test:messaging/messaging",
    path: ["../../../wit", "wit"],
    // `event` is not generated in the SDK's bindings (no SDK function uses it): generate
    // `host:api/topics` here.
    with: { "host:api/queues@0.1.0": guest_sdk::bindings::host::api::queues, "host:api/topics@0.1.0": generate },
});

struct Messaging;

fn count(key: &str) -> Result<u64, String> {
    let seen = Store::open("seen").map_err(|e| e.to_string())?;
    seen.increment(key, 1).map(|n| n as u64).map_err(|e| e.to_string())
}

fn text<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

impl Guest for Messaging {
    fn handle(message: Message) -> Result<(), String> {
        let body = String::from_utf8_lossy(&message.body).into_owned();
        let n = count(&format!("msg/{body}"))?;
        println!("handle: {body} delivery {} (seen {n})", message.attempt);
        if let Some(ms) = body.strip_prefix("sleep:").and_then(|ms| ms.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if body.starts_with("fail") {
            return Err(format!("failing on purpose: {body}"));
        }
        Ok(())
    }

    fn on_event_a(event: Event) -> Result<(), String> {
        count(&format!("a/{}", event.id)).map(drop)
    }

    fn on_event_b(event: Event) -> Result<(), String> {
        match count(&format!("b/{}", event.id))? {
            1 => Err("first attempt fails on purpose".into()),
            _ => Ok(()),
        }
    }

    fn tick(scheduled_ms: u64, missed: u64) {
        let seen = Store::open("seen").expect("store `seen`");
        seen.increment("ticks", 1).expect("count ticks");
        seen.set("last-tick", format!("{scheduled_ms} {missed}").as_bytes()).expect("save the tick");
    }

    fn queue_send(queue: String, body: String, delay_ms: u64) -> Result<String, String> {
        queues::send(&queue, body.as_bytes(), delay_ms).map_err(text)
    }

    fn queue_receive(queue: String, max: u32, visibility_ms: u64) -> Result<Vec<Message>, String> {
        queues::receive(&queue, max, visibility_ms).map_err(text)
    }

    fn queue_complete(lease: String) -> Result<(), String> {
        queues::complete(&lease).map_err(text)
    }

    fn queue_retry(lease: String, delay_ms: u64) -> Result<(), String> {
        queues::retry(&lease, delay_ms).map_err(text)
    }

    fn topic_publish(topic: String, payload: String) -> Result<String, String> {
        host::api::topics::publish(&topic, payload.as_bytes(), &[("from".into(), "test".into())]).map_err(text)
    }
}

export!(Messaging);
