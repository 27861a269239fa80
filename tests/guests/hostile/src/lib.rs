//! Test guest that misbehaves on request, to check the host's limits: time, memory (its own and
//! what it makes the host read for it), stack and output. `black_box` keeps the optimiser from removing or flattening the misbehaviour.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

wit_bindgen::generate!({ world: "hostile" });

/// The component's exports.
struct Hostile;

/// A buffer in the module's own data, zero in every fresh instance.
struct Scratch(std::cell::UnsafeCell<[u8; 4096]>);

// SAFETY: a component instance runs one call at a time; only `leftovers` touches the buffer.
unsafe impl Sync for Scratch {}

static SCRATCH: Scratch = Scratch(std::cell::UnsafeCell::new([0; 4096]));

/// The non-zero bytes of `bytes`, which are then all set to 0xA5.
fn count_and_mark(bytes: &mut [u8]) -> u64 {
    let found = bytes.iter().filter(|&&b| b != 0).count() as u64;
    bytes.fill(0xA5);
    black_box(bytes);
    found
}

/// Recurses `depth` calls deep; the addition after the call keeps it from being a tail call.
fn descend(depth: u64) -> u64 {
    if depth == 0 { 0 } else { black_box(descend(black_box(depth - 1))) + 1 }
}

impl Guest for Hostile {
    fn spin() {
        let mut turns = 0u64;
        loop {
            turns = black_box(turns.wrapping_add(1));
        }
    }

    fn bomb(mib: u32) -> u32 {
        let memory = black_box(vec![0xA5u8; (mib as usize).saturating_mul(1 << 20)]);
        memory.iter().step_by(4096).fold(0, |sum, &byte| sum.wrapping_add(u32::from(byte)))
    }

    fn recurse(depth: u64) -> u64 {
        descend(depth)
    }

    fn flood(bytes: u64) {
        const LINE: &[u8; 64] = b"flooding stdout flooding stdout flooding stdout flooding stdout\n";
        let chunk = LINE.repeat(128);
        let mut stdout = std::io::stdout().lock();
        let mut left = bytes;
        while left > 0 {
            let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            // A hostile guest keeps writing whatever the host answers.
            let _ = stdout.write_all(&chunk[..n]);
            left -= n as u64;
        }
        let _ = stdout.flush();
    }

    fn nap(ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn fail() {
        panic!("deliberate panic");
    }

    fn ok() -> String {
        "still fine".into()
    }

    fn ambient() -> Vec<String> {
        let vars = std::env::vars().map(|(k, v)| format!("env {k}={v}"));
        let args = std::env::args().map(|a| format!("arg {a}"));
        let root = match std::fs::read_dir("/") {
            Ok(entries) => entries.flatten().map(|e| format!("file /{}", e.file_name().to_string_lossy())).collect(),
            Err(e) => vec![format!("no / ({e})")],
        };
        vars.chain(args).chain(root).collect()
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn connect(addr: String) -> Result<(), String> {
        std::net::TcpStream::connect(addr).map(drop).map_err(|e| e.to_string())
    }

    fn read_object(bucket: String, key: String, length: Option<u64>) -> Result<u64, String> {
        let bucket = guest_sdk::buckets::Bucket::open(&bucket).map_err(|e| e.to_string())?;
        let data = match length {
            None => bucket.read(&key),
            Some(length) => bucket.read_range(&key, 0, length),
        };
        data.map(|d| black_box(d).len() as u64).map_err(|e| e.to_string())
    }

    fn download_item(dataset: String, id: String) -> Result<u64, String> {
        let dataset = guest_sdk::items::Dataset::open(&dataset).map_err(|e| e.to_string())?;
        dataset.download(&id).map(|d| black_box(d).len() as u64).map_err(|e| e.to_string())
    }

    fn leftovers(pages: u32) -> u64 {
        // SAFETY: see `Scratch`; nothing else holds a reference to the buffer.
        let mut found = count_and_mark(unsafe { &mut *SCRATCH.0.get() });
        let first = core::arch::wasm32::memory_grow(0, pages as usize);
        if first == usize::MAX {
            return u64::MAX;
        }
        // SAFETY: memory.grow just added these pages; the allocator does not know them, so nothing
        // else refers to them.
        let grown = unsafe { std::slice::from_raw_parts_mut((first << 16) as *mut u8, (pages as usize) << 16) };
        found += count_and_mark(grown);
        found
    }
}

export!(Hostile);
