//! Test guest for item triggers. `probe` counts its runs per item in the KV store `runs`, prints
//! a line, fails while the count is at most metadata `fail-times`, sleeps metadata `sleep-ms`,
//! then adds a `classification` annotation `probed` and returns the count.

use guest_sdk::items::Dataset;
use guest_sdk::kv::Store;

wit_bindgen::generate!({
    world: "test:item-probe/item-probe",
    path: ["../../../wit", "wit"],
    with: { "host:api/items@0.1.0": guest_sdk::bindings::host::api::items },
});

use guest_sdk::bindings::host::api::items::{AnnotationInput, Geometry};

struct Probe;

impl Guest for Probe {
    fn probe(item: Item) -> Result<u32, String> {
        let metadata: Vec<(String, u64)> =
            ["fail-times", "sleep-ms"].iter().map(|k| (k.to_string(), number(&item.metadata, k))).collect();
        let runs = Store::open("runs").map_err(|e| e.to_string())?;
        let count = runs.increment(&format!("runs/{}", item.id), 1).map_err(|e| e.to_string())? as u32;
        println!("probe: item {} run {count}", item.id);
        if u64::from(count) <= metadata[0].1 {
            return Err(format!("failing on purpose (run {count})"));
        }
        if metadata[1].1 > 0 {
            std::thread::sleep(std::time::Duration::from_millis(metadata[1].1));
        }
        let dataset = Dataset::open(&item.dataset).map_err(|e| e.to_string())?;
        let probed = AnnotationInput {
            geometry: Geometry::Classification,
            label: "probed".into(),
            confidence: None,
            model: None,
        };
        dataset.add_annotations(&item.id, &[probed]).map_err(|e| e.to_string())?;
        Ok(count)
    }
}

/// A number field of the item's metadata JSON text, or 0 (a tiny scan: no JSON parser needed).
fn number(metadata: &str, key: &str) -> u64 {
    let Some(at) = metadata.find(&format!("\"{key}\"")) else { return 0 };
    let rest = &metadata[at + key.len() + 2..];
    let rest = rest.trim_start().trim_start_matches(':').trim_start();
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0)
}

export!(Probe);
