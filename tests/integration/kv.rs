//! Every wasi:keyvalue operation (store, atomics, batch) and kv-ext, through guest-sdk.

use base64::Engine as _;
use host::{App, CallError, Error};
use serde_json::{Value, json};

use crate::common::{KV, app};

fn b64(bytes: &[u8]) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
}

async fn call(app: &App, function: &str, args: Value) -> Result<Value, Error> {
    app.function(function).unwrap().call(args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn store_operations() {
    let (_data, _host, app) = app(KV);
    assert_eq!(call(&app, "kv.get", json!(["k"])).await.unwrap(), json!(null));
    assert_eq!(call(&app, "kv.exists", json!(["k"])).await.unwrap(), json!(false));
    call(&app, "kv.set", json!(["k", b64(b"value")])).await.unwrap();
    assert_eq!(call(&app, "kv.get", json!(["k"])).await.unwrap(), b64(b"value"));
    assert_eq!(call(&app, "kv.exists", json!(["k"])).await.unwrap(), json!(true));
    call(&app, "kv.delete", json!(["k"])).await.unwrap();
    call(&app, "kv.delete", json!(["k"])).await.unwrap();
    assert_eq!(call(&app, "kv.exists", json!(["k"])).await.unwrap(), json!(false));
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_follows_pages_in_key_order() {
    let (_data, _host, app) = app(KV);
    // More keys than one page (1000) holds, inserted out of order.
    let pairs: Vec<Value> = (0..2500).rev().map(|i| json!([format!("user/{i:04}"), b64(b"x")])).collect();
    call(&app, "kv.set-many", json!([pairs])).await.unwrap();
    call(&app, "kv.set-many", json!([[["other", b64(b"y")]]])).await.unwrap();
    let keys = call(&app, "kv.keys", json!({})).await.unwrap();
    let keys: Vec<&str> = keys.as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(keys.len(), 2501);
    assert_eq!((keys[0], keys[2499], keys[2500]), ("other", "user/2498", "user/2499"));
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys are sorted and unique");
    let prefixed = call(&app, "kv.keys-with-prefix", json!(["user/1"])).await.unwrap();
    assert_eq!(prefixed.as_array().unwrap().len(), 1000);
    assert_eq!(prefixed[0], json!("user/1000"));
    assert_eq!(call(&app, "kv.keys-with-prefix", json!(["nobody"])).await.unwrap(), json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn compare_and_swap() {
    let (_data, _host, app) = app(KV);
    let cas = |expected: Value, new: &[u8]| json!(["k", expected, b64(new)]);
    assert_eq!(call(&app, "kv.compare-and-swap", cas(json!(null), b"one")).await.unwrap(), json!(true));
    assert_eq!(call(&app, "kv.compare-and-swap", cas(json!(null), b"two")).await.unwrap(), json!(false));
    assert_eq!(call(&app, "kv.compare-and-swap", cas(b64(b"nope"), b"two")).await.unwrap(), json!(false));
    assert_eq!(call(&app, "kv.get", json!(["k"])).await.unwrap(), b64(b"one"));
    assert_eq!(call(&app, "kv.compare-and-swap", cas(b64(b"one"), b"two")).await.unwrap(), json!(true));
    assert_eq!(call(&app, "kv.get", json!(["k"])).await.unwrap(), b64(b"two"));
    // A write between taking the handle and swapping makes the swap fail; the fresh handle it
    // returns sees the new value, and the value is not overwritten.
    let seen = call(&app, "kv.cas-race", json!(["k", b64(b"intruder"), b64(b"mine")])).await.unwrap();
    assert_eq!(seen, b64(b"intruder"));
    assert_eq!(call(&app, "kv.get", json!(["k"])).await.unwrap(), b64(b"intruder"));
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_and_their_memory_cap() {
    let (_data, _host, app) = app(KV);
    call(&app, "kv.set-many", json!([[["a", b64(b"1")], ["b", b64(b"2")]]])).await.unwrap();
    let many = call(&app, "kv.get-many", json!([["a", "missing", "b"]])).await.unwrap();
    assert_eq!(many, json!([["a", b64(b"1")], ["missing", null], ["b", b64(b"2")]]));
    call(&app, "kv.delete-many", json!([["a", "missing"]])).await.unwrap();
    assert_eq!(call(&app, "kv.keys", json!({})).await.unwrap(), json!(["b"]));
    // The host builds a get-many answer before the guest's memory limit (16 MiB) applies: asking
    // for a 1 MiB value 20 times is refused there, and the host carries on.
    call(&app, "kv.set", json!(["big", b64(&vec![7u8; 1 << 20])])).await.unwrap();
    match call(&app, "kv.get-many", json!([vec!["big"; 20]])).await {
        Err(Error::Call(CallError::Guest { value })) => {
            assert!(value.as_str().unwrap().contains("over 16777216 bytes"), "{value}")
        }
        other => panic!("expected the cap, got {other:?}"),
    }
    assert_eq!(call(&app, "kv.exists", json!(["big"])).await.unwrap(), json!(true));
}
