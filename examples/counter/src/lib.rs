//! Example guest: counters in a key-value store, notes in a bucket and a configured greeting, all
//! through `guest-sdk`. Errors are returned as the SDK errors' display text.

use std::error::Error;

use guest_sdk::buckets::Bucket;
use guest_sdk::config;
use guest_sdk::kv::Store;

wit_bindgen::generate!({ world: "counter" });

/// The key-value store holding the counters.
const STORE: &str = "default";
/// The bucket holding the notes.
const NOTES: &str = "notes";

/// The component's exports.
struct Counter;

/// Runs `body`, turning its error into its display text.
fn run<T>(body: impl FnOnce() -> Result<T, Box<dyn Error>>) -> Result<T, String> {
    body().map_err(|error| error.to_string())
}

impl Guest for Counter {
    fn increment(key: String, by: i64) -> Result<i64, String> {
        run(|| Ok(Store::open(STORE)?.increment(&key, by)?))
    }

    fn get(key: String) -> Result<Option<i64>, String> {
        run(|| {
            let Some(bytes) = Store::open(STORE)?.get(&key)? else {
                return Ok(None);
            };
            let bytes: [u8; 8] = bytes
                .try_into()
                .map_err(|bytes: Vec<u8>| format!("{key:?} holds {} bytes, not an 8-byte counter", bytes.len()))?;
            Ok(Some(i64::from_le_bytes(bytes)))
        })
    }

    fn greeting() -> Result<String, String> {
        run(|| Ok(config::get("greeting")?.ok_or("config key \"greeting\" is not set")?))
    }

    fn save_note(name: String, text: String) -> Result<u64, String> {
        run(|| {
            let notes = Bucket::open(NOTES)?;
            notes.write(&name, text.as_bytes())?;
            Ok(notes.stat(&name)?.size)
        })
    }

    fn read_note(name: String) -> Result<String, String> {
        run(|| Ok(String::from_utf8(Bucket::open(NOTES)?.read(&name)?)?))
    }

    fn delete_note(name: String) -> Result<(), String> {
        run(|| Ok(Bucket::open(NOTES)?.delete(&name)?))
    }

    fn list_notes(prefix: String) -> Result<Vec<String>, String> {
        run(|| Ok(Bucket::open(NOTES)?.list(&prefix)?))
    }

    fn open_store(name: String) -> Result<(), String> {
        run(|| Ok(Store::open(&name).map(drop)?))
    }

    fn open_bucket(name: String) -> Result<(), String> {
        run(|| Ok(Bucket::open(&name).map(drop)?))
    }

    fn config_value(key: String) -> Result<Option<String>, String> {
        run(|| Ok(config::get(&key)?))
    }

    fn kv_gets(key: String, n: u32) -> Result<u32, String> {
        if n > MAX_GETS {
            return Err(format!("n is {n}; at most {MAX_GETS} reads per call"));
        }
        run(|| {
            let store = Store::open(STORE)?;
            let mut found = 0;
            for _ in 0..n {
                if store.get(&key)?.is_some() {
                    found += 1;
                }
            }
            Ok(found)
        })
    }
}

/// Most reads one `kv-gets` call makes, so that no request can keep an instance busy for long.
const MAX_GETS: u32 = 100_000;

export!(Counter);
