//! Items and item triggers over the library: real components, sled on disk, executions with
//! retries, `once` and `always` modes, pause, and the image-process example end to end.

use std::time::{Duration, Instant};

use host::executions::{Execution, ExecutionFilter, Status};
use serde_json::{Value, json};

use crate::common::{FACE_DETECT, IMAGE_PROCESS, PROBE, Running, iou, root, running, skimage_image};

impl Running {
    fn upload(
        &self,
        app: &str,
        dataset: &str,
        path: &str,
        data: &[u8],
        metadata: Value,
    ) -> host::storage::datasets::Item {
        let (dir, name) = path.rsplit_once('/').unwrap();
        let dataset = self.runtime.block_on(self.host.dataset(app, dataset)).unwrap();
        let dir = if dir.is_empty() { "/" } else { dir };
        self.runtime.block_on(dataset.upload(dir, name, None, data, Some(&metadata.to_string()), None)).unwrap()
    }

    fn update(&self, app: &str, dataset: &str, id: &str, metadata: Value) {
        let dataset = self.runtime.block_on(self.host.dataset(app, dataset)).unwrap();
        self.runtime.block_on(dataset.update_metadata(id, &metadata.to_string(), None)).unwrap();
    }

    /// The executions of `trigger` on item `id`, oldest first.
    fn executions(&self, trigger: &str, id: &str) -> Vec<Execution> {
        let filter = ExecutionFilter { trigger: Some(trigger.into()), ..ExecutionFilter::default() };
        let mut found: Vec<Execution> = self
            .runtime
            .block_on(self.host.executions().list(&filter, None, 1000))
            .into_iter()
            .filter(|e| e.item.as_ref().is_some_and(|(_, item)| item == id))
            .collect();
        found.reverse();
        found
    }

    /// Wait until `trigger` has `n` finished executions on item `id`.
    fn finished(&self, trigger: &str, id: &str, n: usize) -> Vec<Execution> {
        let started = Instant::now();
        loop {
            let all = self.executions(trigger, id);
            if all.iter().filter(|e| e.status.is_final()).count() >= n {
                return all;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "waiting for {n} `{trigger}` executions on {id}: {all:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn failed_attempts_are_retried_per_policy_with_errors_and_logs_kept() {
    let r = running(&[PROBE]);
    let flaky = r.upload("probe", "inbox", "/always/flaky.txt", b"x", json!({ "fail-times": 2 }));
    let [done] = r.finished("always", &flaky.id, 1).try_into().unwrap();
    assert_eq!((done.status, done.attempt, done.max_attempts), (Status::Succeeded, 3, 3));
    assert_eq!(done.output, Some(json!(3)));
    assert_eq!(done.function, "probe.probe");
    assert_eq!(done.input[0]["id"], json!(flaky.id));
    let logs = r.runtime.block_on(r.host.executions().logs(&done.id)).unwrap();
    for line in ["--- attempt 1 ---", "probe: item", "run 1", "--- attempt 3 ---", "run 3"] {
        assert!(logs.contains(line), "{line:?} missing from {logs}");
    }

    let broken = r.upload("probe", "inbox", "/always/broken.txt", b"x", json!({ "fail-times": 99 }));
    let [failed] = r.finished("always", &broken.id, 1).try_into().unwrap();
    assert_eq!((failed.status, failed.attempt), (Status::Failed, 3));
    let error = failed.error.unwrap();
    assert_eq!(error["code"], "guest-error");
    assert_eq!(error["error"], "failing on purpose (run 3)");
    assert!(r.runtime.block_on(r.host.executions().logs(&failed.id)).unwrap().contains("--- attempt 2 ---"));
}

#[test]
fn filters_pick_items_and_always_runs_on_every_update() {
    let r = running(&[PROBE]);
    let image = r.upload("probe", "inbox", "/always/photo.png", b"png", json!({}));
    let elsewhere = r.upload("probe", "inbox", "/other/note.txt", b"x", json!({}));
    let note = r.upload("probe", "inbox", "/always/note.txt", b"x", json!({}));
    r.finished("always", &note.id, 1);
    r.update("probe", "inbox", &note.id, json!({ "v": 1 }));
    r.update("probe", "inbox", &note.id, json!({ "v": 2 }));
    let runs = r.finished("always", &note.id, 3);
    assert!(runs.iter().all(|e| e.status == Status::Succeeded), "{runs:#?}");
    // Executions of one function run concurrently (`concurrency = 2`): each got its own count.
    let mut counts: Vec<u64> = runs.iter().map(|e| e.output.as_ref().unwrap().as_u64().unwrap()).collect();
    counts.sort();
    assert_eq!(counts, [1, 2, 3]);
    // Events are accepted in order: once the note's runs exist, the earlier uploads were seen.
    assert!(r.executions("always", &image.id).is_empty(), "a PNG does not match `text/*`");
    assert!(r.executions("always", &elsewhere.id).is_empty(), "`/other` is outside `/always`");
}

#[test]
fn once_triggers_succeed_at_most_once_per_item() {
    let r = running(&[PROBE]);
    let item = r.upload("probe", "inbox", "/once/a.bin", b"x", json!({ "fail-times": 1 }));
    // No retry policy: the first execution fails, which frees the item for the next event.
    let [failed] = r.finished("once", &item.id, 1).try_into().unwrap();
    assert_eq!(failed.status, Status::Failed);
    r.update("probe", "inbox", &item.id, json!({}));
    let runs = r.finished("once", &item.id, 2);
    assert_eq!(runs[1].status, Status::Succeeded);
    for round in 0..3 {
        r.update("probe", "inbox", &item.id, json!({ "round": round }));
    }
    // A marker item on the `always` trigger: when it has run, the updates above were accepted.
    let marker = r.upload("probe", "inbox", "/always/marker.txt", b"x", json!({}));
    r.finished("always", &marker.id, 1);
    assert_eq!(r.executions("once", &item.id).len(), 2, "no execution after the success");
}

#[test]
fn paused_functions_hold_triggered_work_until_resumed() {
    let r = running(&[PROBE]);
    let guest = r.apps[0].guest("probe").unwrap().clone();
    guest.set_paused(true);
    let item = r.upload("probe", "inbox", "/always/held.txt", b"x", json!({}));
    let started = Instant::now();
    while r.executions("always", &item.id).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "the event was never accepted");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let held = r.executions("always", &item.id);
    assert_eq!(held.iter().map(|e| e.status).collect::<Vec<_>>(), [Status::Queued], "held, not lost");
    guest.set_paused(false);
    let [done] = r.finished("always", &item.id, 1).try_into().unwrap();
    assert_eq!(done.status, Status::Succeeded);
}

/// Mean and standard deviation of the luminance of a PNG (gray or RGB, 8-bit).
fn luminance(png: &[u8]) -> (f64, f64) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let values: Vec<f64> =
        pixels[..info.buffer_size()]
            .chunks(channels)
            .map(|p| {
                if channels >= 3 {
                    0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64
                } else {
                    p[0] as f64
                }
            })
            .collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    (mean, var.sqrt())
}

#[test]
fn image_process_equalizes_new_images_and_grays_updated_ones() {
    let r = running(&[IMAGE_PROCESS]);
    let original = std::fs::read(root().join("tests/data/low-contrast.png")).unwrap();
    let item = r.upload("image-process", "photos", "/hamster.png", &original, json!({}));
    let [clahe] = r.finished("clahe-on-create", &item.id, 1).try_into().unwrap();
    assert_eq!(clahe.status, Status::Succeeded, "{clahe:#?}");
    assert_eq!(clahe.function, "image-process.clahe-equalization");
    let photos = r.runtime.block_on(r.host.dataset("image-process", "photos")).unwrap();
    let linked = r.runtime.block_on(photos.get(&item.id)).unwrap();
    let equ = linked.modalities.iter().find(|m| m.name == "equ").expect("an `equ` modality");
    let equalized = r.runtime.block_on(photos.get(&equ.reference)).unwrap();
    assert_eq!(
        (equalized.dir.as_str(), equalized.name.as_str(), equalized.mimetype.as_str()),
        ("/equ", "hamster.png", "image/png")
    );
    let (before, after) =
        (luminance(&original), luminance(&r.runtime.block_on(photos.download(&equalized.id)).unwrap()));
    assert!(after.1 > 1.5 * before.1, "luminance spread {:.1} -> {:.1}: not measurably wider", before.1, after.1);
    assert!(
        r.runtime.block_on(r.host.executions().logs(&clahe.id)).unwrap().contains("clahe"),
        "the guest's steps are in the logs"
    );

    // Every update runs rgb2gray again; CLAHE (once, on created) never runs again.
    r.update("image-process", "photos", &item.id, json!({ "reviewed": true }));
    let [gray] = r.finished("gray-on-update", &item.id, 1).try_into().unwrap();
    assert_eq!(gray.status, Status::Succeeded, "{gray:#?}");
    let gray_ref = r
        .runtime
        .block_on(photos.get(&item.id))
        .unwrap()
        .modalities
        .iter()
        .find(|m| m.name == "gray")
        .unwrap()
        .reference
        .clone();
    let gray_item = r.runtime.block_on(photos.get(&gray_ref)).unwrap();
    assert_eq!((gray_item.dir.as_str(), gray_item.name.as_str()), ("/gray", "hamster.png"));
    r.update("image-process", "photos", &item.id, json!({ "reviewed": false }));
    let grays = r.finished("gray-on-update", &item.id, 2);
    assert!(grays.iter().all(|e| e.status == Status::Succeeded));
    assert_eq!(r.executions("clahe-on-create", &item.id).len(), 1);
    // Results made by triggered executions fire no triggers.
    assert!(r.executions("clahe-on-create", &equalized.id).is_empty());
    assert!(r.executions("clahe-on-create", &gray_ref).is_empty());
}

#[test]
fn face_detect_annotates_faces_on_uploaded_images() {
    let r = running(&[FACE_DETECT]);
    let photos = r.runtime.block_on(r.host.dataset("face-detect", "photos")).unwrap();
    let astronaut = std::fs::read(skimage_image("astronaut.png")).unwrap();
    let item = r.upload("face-detect", "photos", "/astronaut.png", &astronaut, json!({}));
    let [run] = r.finished("faces-on-create", &item.id, 1).try_into().unwrap();
    assert_eq!(run.status, Status::Succeeded, "{run:#?}");
    let faces = r.runtime.block_on(photos.annotations(&item.id)).unwrap();
    let [face] = faces.as_slice() else { panic!("expected one face, got {faces:#?}") };
    let host::storage::datasets::Geometry::Box { left, top, right, bottom } = face.geometry else {
        panic!("not a box: {face:?}")
    };
    let overlap = iou([left, top, right, bottom], [180.0, 80.0, 274.0, 177.0]);
    assert!(overlap >= 0.5, "IoU {overlap:.2} of {face:?} with the astronaut's face");
    assert_eq!(face.label, "face");
    assert!(face.confidence.is_some_and(|c| c >= 0.5), "{face:?}");
    assert!(face.model.as_deref().is_some_and(|m| m.contains("blazeface")), "{face:?}");
    assert_eq!(run.output.as_ref().and_then(|o| o.as_array()).map(Vec::len), Some(1), "{run:#?}");

    // No face, no box; and the trigger only takes images.
    let coffee = std::fs::read(skimage_image("coffee.png")).unwrap();
    let cup = r.upload("face-detect", "photos", "/coffee.png", &coffee, json!({}));
    let [run] = r.finished("faces-on-create", &cup.id, 1).try_into().unwrap();
    assert_eq!(run.status, Status::Succeeded, "{run:#?}");
    assert!(r.runtime.block_on(photos.annotations(&cup.id)).unwrap().is_empty());
    let note = r.upload("face-detect", "photos", "/note.txt", b"not an image", json!({}));
    std::thread::sleep(Duration::from_millis(300));
    assert!(r.executions("faces-on-create", &note.id).is_empty());
}

#[test]
fn logs_of_a_running_attempt_are_readable_before_it_ends() {
    let r = running(&[PROBE]);
    let item = r.upload("probe", "inbox", "/always/slow.txt", b"x", json!({ "sleep-ms": 1500 }));
    let started = Instant::now();
    let running = loop {
        if let Some(e) = r.executions("always", &item.id).into_iter().find(|e| e.status == Status::Running) {
            break e;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never running");
        std::thread::sleep(Duration::from_millis(10));
    };
    // The guest printed its line before sleeping: it is visible while the attempt runs.
    let live = loop {
        let logs = r.runtime.block_on(r.host.executions().logs(&running.id)).unwrap_or_default();
        if logs.contains("run 1") {
            break logs;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no live output: {logs:?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    let still = r.runtime.block_on(r.host.executions().get(&running.id)).unwrap();
    assert_eq!(still.status, Status::Running, "still running");
    let [done] = r.finished("always", &item.id, 1).try_into().unwrap();
    assert_eq!(done.status, Status::Succeeded);
    let kept = r.runtime.block_on(r.host.executions().logs(&done.id)).unwrap();
    assert!(kept.starts_with(&live), "the kept logs extend the live ones");
}
