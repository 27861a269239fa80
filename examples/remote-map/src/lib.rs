//! Example guest: Runhouse's remote functions as component exports. `host` calls them by name,
//! as jobs (`--async`, a "ref" that `{"$execution": ID}` passes to another call), serially
//! (`--enqueue`), or over many inputs in parallel instances (`host map`, `host starmap`).

use guest_sdk::kv::Store;

wit_bindgen::generate!({ world: "remote-map" });

/// The KV store holding `append`'s log, under [`LOG_KEY`].
const STORE: &str = "remote-map";
const LOG_KEY: &str = "log";

struct RemoteMap;

impl Guest for RemoteMap {
    fn square(x: i64) -> i64 {
        x.wrapping_mul(x)
    }

    fn add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    fn root(x: f64) -> Result<f64, String> {
        match x {
            x if x >= 0.0 => Ok(x.sqrt()),
            x => Err(format!("no real square root of {x}")),
        }
    }

    fn slow_sum(n: u32, step_ms: u32) -> u64 {
        let mut sum = 0;
        for i in 1..=u64::from(n) {
            std::thread::sleep(std::time::Duration::from_millis(step_ms.into()));
            sum += i;
            println!("step {i}/{n}: sum {sum}");
        }
        sum
    }

    fn append(entry: String) -> Vec<String> {
        let store = Store::open(STORE).expect("store `remote-map` is granted");
        let mut log: Vec<String> = store
            .get(LOG_KEY)
            .expect("read the log")
            .map(|bytes| serde_json::from_slice(&bytes).expect("the log is a JSON list"))
            .unwrap_or_default();
        log.push(entry);
        store.set(LOG_KEY, &serde_json::to_vec(&log).expect("a list serializes")).expect("write the log");
        log
    }
}

export!(RemoteMap);
