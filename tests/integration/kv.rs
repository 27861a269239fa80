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
    // The host builds a get-many answer before it is copied into the guest: asking for a 1 MiB
    // value 20 times cannot fit in the 16 MiB memory limit, and is refused there as the memory
    // limit (before the host builds the rest); the host carries on.
    call(&app, "kv.set", json!(["big", b64(&vec![7u8; 1 << 20])])).await.unwrap();
    match call(&app, "kv.get-many", json!([vec!["big"; 20]])).await {
        Err(Error::Call(CallError::MemoryLimit { limit, requested })) => {
            assert_eq!(limit, 16 << 20);
            assert!(requested > limit, "requested {requested}");
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    assert_eq!(call(&app, "kv.exists", json!(["big"])).await.unwrap(), json!(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn values_bigger_than_the_memory_limit_are_not_copied_for_the_guest() {
    let (_data, host, app) = app(KV);
    // Written by something with more memory than `kv` (16 MiB): here, the host itself.
    let tree = host.store().unwrap().kv_tree("kv", "default").unwrap();
    tree.insert("huge", vec![1u8; 20 << 20]).unwrap();
    match call(&app, "kv.get", json!(["huge"])).await {
        Err(Error::Call(CallError::MemoryLimit { limit, requested })) => {
            assert_eq!(limit, 16 << 20);
            assert!(requested >= 20 << 20, "requested {requested}");
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    assert_eq!(call(&app, "kv.exists", json!(["huge"])).await.unwrap(), json!(true), "the host carries on");
}

#[tokio::test(flavor = "multi_thread")]
async fn arguments_that_could_not_fit_in_the_guest_are_refused_before_they_are_built() {
    let (_data, _host, app) = app(KV);
    // 17 MiB of bytes cannot be copied into a guest limited to 16 MiB: refused as an argument
    // error naming where, before any instance is made (the host does not build 17 million values).
    let refused = |error: Result<Value, Error>, path: &str| match error {
        Err(Error::Argument(e)) => {
            assert_eq!(e.path, path);
            assert!(e.expected.contains("16777216 bytes") && e.expected.contains("`memory` limit"), "{e}");
        }
        other => panic!("expected an argument error at {path}, got {other:?}"),
    };
    refused(call(&app, "kv.set", json!(["k", b64(&vec![0u8; 17 << 20])])).await, "value");
    let nine = b64(&vec![0u8; 9 << 20]);
    refused(call(&app, "kv.set-many", json!([[["a", nine], ["b", nine]]])).await, "pairs[1][1]");
    // What fits still works.
    call(&app, "kv.set", json!(["k", b64(&vec![0u8; 4 << 20])])).await.unwrap();
}
