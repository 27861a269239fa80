//! The storage layer under real concurrency, through a real server on loopback: item uploads,
//! updates, deletes and annotations racing each other; bucket key conflicts; temporary files
//! left by a crash; a full disk.

use std::sync::Barrier;
use std::time::Duration;

use host::server::ServerConfig;
use serde_json::{Value, json};
use sha2::Digest;

use crate::common::{COUNTER, MESSAGING, PROBE, ServeProcess, host_on};
use crate::server::{Answer, send, serve_apps};

const ITEMS: &str = "/v1/apps/probe/datasets/inbox/items";

fn sha256(data: &[u8]) -> String {
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Every byte but ASCII letters and digits percent-encoded, for a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Upload `data` to `/race/NAME`, with metadata `{"sha": SHA256}` when `tagged`.
fn upload(addr: std::net::SocketAddr, name: &str, data: &[u8], tagged: bool) -> Answer {
    let metadata = if tagged {
        format!("&metadata={}", encode(&json!({ "sha": sha256(data) }).to_string()))
    } else {
        String::new()
    };
    send(
        addr,
        "POST",
        &format!("{ITEMS}?dir=/race&name={name}{metadata}"),
        &["Content-Type: application/octet-stream"],
        data,
    )
}

/// Distinct contents: `n`'s bytes, `(n + 1) * 1000` of them.
fn content(n: usize) -> Vec<u8> {
    (0..(n + 1) * 1000).map(|i| (i * 7 + n * 31) as u8).collect()
}

/// Run `work(i)` for `i` in `0..n` on `n` threads released at once; their results in order.
fn at_once<T: Send>(n: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let start = Barrier::new(n);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (start, work) = (&start, &work);
                scope.spawn(move || {
                    start.wait();
                    work(i)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// The items at `/race/NAME`.
fn at_path(addr: std::net::SocketAddr, name: &str) -> Vec<Value> {
    let listed = send(addr, "GET", &format!("{ITEMS}?dir=/race&limit=1000"), &[], b"").json();
    listed["items"].as_array().unwrap().iter().filter(|i| i["name"] == name).cloned().collect()
}

/// The item's record agrees with its stored bytes: size, and the sha256 its metadata names.
fn assert_complete(addr: std::net::SocketAddr, item: &Value) {
    let download = send(addr, "GET", &format!("{ITEMS}/{}/download", item["id"].as_str().unwrap()), &[], b"");
    assert_eq!(download.status, 200, "{item}: {}", download.text());
    assert_eq!(item["size"], json!(download.body.len()), "{item}: size of the record and of the bytes");
    assert_eq!(item["metadata"]["sha"], json!(sha256(&download.body)), "{item}: sha256 of the bytes");
}

fn probe_server() -> crate::server::Served {
    serve_apps(&[PROBE], ServerConfig::default(), Duration::from_secs(5))
}

#[test]
fn concurrent_uploads_to_one_new_path_make_one_complete_item() {
    let server = probe_server();
    let addr = server.addr;
    let answers = at_once(16, |i| upload(addr, "new.bin", &content(i), true));
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let ids: std::collections::BTreeSet<String> = answers.iter().map(|a| a.json()["id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "every upload went to the same item: {ids:?}");
    let [item] = at_path(addr, "new.bin").try_into().expect("exactly one item at the path");
    assert_complete(addr, &item);
}

#[test]
fn concurrent_updates_of_one_item_keep_its_record_and_bytes_together() {
    let server = probe_server();
    let addr = server.addr;
    let first = upload(addr, "updated.bin", b"first", true).json();
    let answers = at_once(16, |i| upload(addr, "updated.bin", &content(i), true));
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let [item] = at_path(addr, "updated.bin").try_into().expect("exactly one item at the path");
    assert_eq!(item["id"], first["id"]);
    assert_complete(addr, &item);
}

#[test]
fn deletes_racing_updates_leave_the_item_complete_or_absent() {
    let server = probe_server();
    let addr = server.addr;
    for round in 0..40 {
        let name = format!("r{round}.bin");
        let id = upload(addr, &name, b"before", true).json()["id"].as_str().unwrap().to_string();
        let answers = at_once(2, |i| match i {
            0 => send(addr, "DELETE", &format!("{ITEMS}/{id}"), &[], b""),
            _ => upload(addr, &name, &content(round), true),
        });
        assert_eq!((answers[0].status, answers[1].status), (204, 201), "round {round}: {}", answers[1].text());
        match at_path(addr, &name).as_slice() {
            [] => {}
            [item] => assert_complete(addr, item),
            more => panic!("round {round}: {} items at one path: {more:?}", more.len()),
        }
        // Whichever ran first, the delete removed the original item: record and bytes.
        assert_eq!(send(addr, "GET", &format!("{ITEMS}/{id}"), &[], b"").status, 404, "round {round}");
        assert_eq!(send(addr, "GET", &format!("{ITEMS}/{id}/download"), &[], b"").status, 404, "round {round}");
    }
}

#[test]
fn concurrent_metadata_annotations_and_upload_all_take_effect() {
    let server = probe_server();
    let addr = server.addr;
    for round in 0..10 {
        let name = format!("m{round}.bin");
        let id = upload(addr, &name, b"before", false).json()["id"].as_str().unwrap().to_string();
        let new = content(round);
        let annotation = json!([{ "geometry": "classification", "label": "cat" }]).to_string();
        let answers = at_once(3, |i| match i {
            0 => send(addr, "PUT", &format!("{ITEMS}/{id}/metadata"), &[], br#"{"reviewed": true}"#),
            1 => send(addr, "POST", &format!("{ITEMS}/{id}/annotations"), &[], annotation.as_bytes()),
            _ => upload(addr, &name, &new, false),
        });
        let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [200, 201, 201], "round {round}");
        let item = send(addr, "GET", &format!("{ITEMS}/{id}"), &[], b"").json();
        assert_eq!(item["metadata"], json!({ "reviewed": true }), "round {round}: the metadata change was lost");
        assert_eq!(item["size"], json!(new.len()), "round {round}: the upload was lost");
        assert_eq!(send(addr, "GET", &format!("{ITEMS}/{id}/download"), &[], b"").body, new);
        let annotations = send(addr, "GET", &format!("{ITEMS}/{id}/annotations"), &[], b"").json();
        assert_eq!(annotations.as_array().map(Vec::len), Some(1), "round {round}: {annotations}");
    }
}

#[test]
fn bucket_keys_in_conflict_or_too_long_are_refused_with_the_rule() {
    let server = serve_apps(&[COUNTER], ServerConfig::default(), Duration::from_secs(5));
    let addr = server.addr;
    let notes = "/v1/apps/counter/buckets/notes";
    let long = format!("a/{}", "s".repeat(300));
    let refused = send(addr, "PUT", &format!("{notes}/{long}"), &[], b"x");
    assert_eq!(refused.code(), (400, "invalid-key".into()), "{}", refused.text());
    assert!(refused.json()["message"].as_str().unwrap().contains("255 bytes per"), "{}", refused.text());

    assert_eq!(send(addr, "PUT", &format!("{notes}/f"), &[], b"object").status, 204);
    let under_object = send(addr, "PUT", &format!("{notes}/f/g"), &[], b"x");
    assert_eq!(under_object.code(), (409, "key-conflict".into()), "{}", under_object.text());
    let message = under_object.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains(r#""f/g""#) && message.contains(r#"object "f""#), "{message}");

    assert_eq!(send(addr, "PUT", &format!("{notes}/d/x"), &[], b"inside").status, 204);
    let over_folder = send(addr, "PUT", &format!("{notes}/d"), &[], b"x");
    assert_eq!(over_folder.code(), (409, "key-conflict".into()), "{}", over_folder.text());
    let message = over_folder.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains(r#"key "d""#) && message.contains(r#""d/x""#), "{message}");
    // Nothing was changed by the refused writes.
    assert_eq!(send(addr, "GET", &format!("{notes}/f"), &[], b"").text(), "object");
    assert_eq!(send(addr, "GET", &format!("{notes}/d/x"), &[], b"").text(), "inside");

    // A guest gets the same explanations, as `invalid-key`.
    let save = |key: &str| {
        let call = send(
            addr,
            "POST",
            "/v1/apps/counter/functions/counter.save-note",
            &[],
            json!([key, "x"]).to_string().as_bytes(),
        );
        assert_eq!(call.code(), (422, "guest-error".into()), "{key}: {}", call.text());
        call.json()["error"].as_str().unwrap().to_string()
    };
    let error = save("f/g");
    assert!(error.contains(r#""f/g""#) && error.contains(r#"object "f""#), "{error}");
    let error = save("d");
    assert!(error.contains(r#"key "d""#) && error.contains(r#""d/x""#), "{error}");
    assert!(save(&long).contains("255 bytes per"));
}

#[test]
fn temporary_files_left_by_a_crash_are_removed_when_a_host_starts() {
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let item = {
        let host = host_on(data.path());
        let inbox = runtime.block_on(host.dataset("probe", "inbox")).unwrap();
        runtime.block_on(inbox.upload("/", "kept.txt", None, b"kept".as_slice(), None, None)).unwrap()
    };
    let dataset_dir = data.path().join("items/probe/inbox");
    let staging = data.path().join("buckets/counter/.staging");
    let bucket = data.path().join("buckets/counter/notes");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::create_dir_all(&bucket).unwrap();
    let orphans =
        [dataset_dir.join(".4242-0.tmp"), dataset_dir.join(format!(".{}.tmp-4242", item.id)), staging.join("4242-7")];
    for orphan in &orphans {
        std::fs::write(orphan, b"half written").unwrap();
    }
    std::fs::write(bucket.join("object"), b"whole").unwrap();

    let host = host_on(data.path());
    for orphan in &orphans {
        assert!(!orphan.exists(), "{} is still there", orphan.display());
    }
    assert_eq!(std::fs::read(bucket.join("object")).unwrap(), b"whole");
    let inbox = runtime.block_on(host.dataset("probe", "inbox")).unwrap();
    assert_eq!(runtime.block_on(inbox.download(&item.id)).unwrap(), b"kept");
}

#[test]
fn bucket_writes_and_deletes_sharing_a_folder_never_fail() {
    let server = serve_apps(&[COUNTER], ServerConfig::default(), Duration::from_secs(5));
    let addr = server.addr;
    // Deleting `shared/N` removes the folder `shared` when it empties, while the other thread is
    // writing into it.
    let failures = at_once(2, |n| {
        let key = format!("/v1/apps/counter/buckets/notes/shared/{n}");
        let mut failures = Vec::new();
        for _ in 0..200 {
            for method in ["PUT", "DELETE"] {
                let answer = send(addr, method, &key, &[], b"x");
                if answer.status != 204 {
                    failures.push(format!("{method} {key}: {} {}", answer.status, answer.text()));
                }
            }
        }
        failures
    });
    assert_eq!(failures.concat(), Vec::<String>::new());
}

/// A full disk (here: the process may not grow a file past 16 MiB) fails writes with a
/// `store-error` naming the cause, and `/healthz` says the store is failing, since sled refuses
/// writes from then on; calls fail on their own while reads carry on. A restart with room again
/// finds every acknowledged write, and `/healthz` is ok.
#[test]
fn a_full_disk_fails_writes_and_healthz_and_a_restart_finds_every_acknowledged_write() {
    let data = tempfile::tempdir().unwrap();
    let value = |n: usize| (0..64 * 1024).map(|i| (i * 13 + n * 7) as u8).collect::<Vec<u8>>();
    let kv = |n: usize| format!("/v1/apps/counter/kv/default/k{n}");
    let server = ServeProcess::start_with_file_limit(data.path(), &[COUNTER, MESSAGING], 16 * 1024);
    let health = send(server.addr, "GET", "/healthz", &[], b"");
    assert_eq!((health.status, health.json()), (200, json!({ "status": "ok" })));

    let mut acknowledged = 0;
    let refused = loop {
        let answer = send(server.addr, "PUT", &kv(acknowledged), &[], &value(acknowledged));
        if answer.status != 204 {
            break answer;
        }
        acknowledged += 1;
        assert!(acknowledged < 1024, "64 MiB written under a 16 MiB file limit");
    };
    assert!(acknowledged > 0, "the first write was refused: {}", refused.text());
    assert_eq!(refused.code(), (500, "store-error".into()), "{}", refused.text());
    assert!(refused.text().contains("File too large"), "the cause is named: {}", refused.text());

    let health = send(server.addr, "GET", "/healthz", &[], b"");
    assert_eq!(health.code(), (503, "store-failed".into()), "{}", health.text());
    assert!(health.text().contains("File too large"), "{}", health.text());
    let again = send(server.addr, "PUT", &kv(acknowledged), &[], b"small");
    assert_eq!(again.code(), (500, "store-error".into()), "writes stay refused: {}", again.text());
    let increment = "/v1/apps/counter/functions/counter.increment";
    let call = send(server.addr, "POST", increment, &[], br#"["c", 1]"#);
    assert_eq!(call.code(), (422, "guest-error".into()), "the call fails on its own: {}", call.text());
    assert!(call.text().contains("File too large"), "{}", call.text());
    // Whatever else needs a write says so the same way.
    for (what, path) in [
        ("a job", format!("{increment}?async=true")),
        ("an event", "/v1/apps/messaging/topics/news".to_string()),
        ("a message", "/v1/apps/messaging/queues/jobs".to_string()),
    ] {
        let refused = send(server.addr, "POST", &path, &[], br#"["c", 1]"#);
        assert_eq!(refused.code(), (500, "store-error".into()), "{what}: {}", refused.text());
        assert!(refused.text().contains("File too large"), "{what}: {}", refused.text());
        assert!(!refused.text().contains("Storage("), "{what}: a message, not a Rust value: {}", refused.text());
    }
    let read = send(server.addr, "GET", &kv(0), &[], b"");
    assert_eq!((read.status, read.body == value(0)), (200, true), "reads carry on");

    drop(server);
    let server = ServeProcess::start(data.path(), None, &[COUNTER, MESSAGING]);
    let health = send(server.addr, "GET", "/healthz", &[], b"");
    assert_eq!((health.status, health.json()), (200, json!({ "status": "ok" })));
    for n in 0..acknowledged {
        let read = send(server.addr, "GET", &kv(n), &[], b"");
        assert_eq!((read.status, read.body.len()), (200, 64 * 1024), "k{n} of {acknowledged} acknowledged");
        assert!(read.body == value(n), "k{n}: the bytes read back differ");
    }
    assert_eq!(send(server.addr, "PUT", &kv(acknowledged), &[], b"room again").status, 204);
}
