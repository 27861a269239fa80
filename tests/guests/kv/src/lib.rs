//! Test guest: every key-value operation of `guest-sdk` on the store `default`, errors as text.

use guest_sdk::bindings::wasi::keyvalue::atomics;
use guest_sdk::kv::{Result as KvResult, Store};

wit_bindgen::generate!({ world: "kv" });

/// The component's exports.
struct Kv;

/// Open the store `default` and run `op` on it, turning errors into their text.
fn with_store<T>(op: impl FnOnce(&Store) -> KvResult<T>) -> Result<T, String> {
    Store::open("default").and_then(|store| op(&store)).map_err(|e| e.to_string())
}

impl Guest for Kv {
    fn set(key: String, value: Vec<u8>) -> Result<(), String> {
        with_store(|s| s.set(&key, &value))
    }

    fn get(key: String) -> Result<Option<Vec<u8>>, String> {
        with_store(|s| s.get(&key))
    }

    fn delete(key: String) -> Result<(), String> {
        with_store(|s| s.delete(&key))
    }

    fn exists(key: String) -> Result<bool, String> {
        with_store(|s| s.exists(&key))
    }

    fn keys() -> Result<Vec<String>, String> {
        with_store(Store::keys)
    }

    fn keys_with_prefix(prefix: String) -> Result<Vec<String>, String> {
        with_store(|s| s.keys_with_prefix(&prefix))
    }

    fn compare_and_swap(key: String, expected: Option<Vec<u8>>, new: Vec<u8>) -> Result<bool, String> {
        with_store(|s| s.compare_and_swap(&key, expected.as_deref(), &new))
    }

    fn cas_race(key: String, intruder: Vec<u8>, new: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        let bucket = guest_sdk::bindings::wasi::keyvalue::store::open("default").map_err(|e| format!("{e:?}"))?;
        let cas = atomics::Cas::new(&bucket, &key).map_err(|e| format!("{e:?}"))?;
        bucket.set(&key, &intruder).map_err(|e| format!("{e:?}"))?;
        match atomics::swap(cas, &new) {
            Ok(()) => Ok(None),
            Err(atomics::CasError::CasFailed(fresh)) => fresh.current().map_err(|e| format!("{e:?}")),
            Err(atomics::CasError::StoreError(e)) => Err(format!("{e:?}")),
        }
    }

    fn get_many(keys: Vec<String>) -> Result<Vec<(String, Option<Vec<u8>>)>, String> {
        with_store(|s| s.get_many(keys))
    }

    fn set_many(pairs: Vec<(String, Vec<u8>)>) -> Result<(), String> {
        with_store(|s| s.set_many(pairs))
    }

    fn delete_many(keys: Vec<String>) -> Result<(), String> {
        with_store(|s| s.delete_many(keys))
    }
}

export!(Kv);
