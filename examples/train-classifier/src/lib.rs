//! Example guest: Nitric's "train an image classifier" tutorial.
//!
//! `request-training` plays the tutorial's training requester, `train-model` its TensorFlow
//! service (here a small neural network trained in the guest by the `classifier` crate, saved
//! as ONNX), `status` its status updater; `classify` uses a trained model through the host's
//! `wasi:nn`. Statuses overwrite each other in KV store `training-updates` under the training id,
//! as in the tutorial, so the site polling `status` sees the latest. A dataset is a folder of
//! bucket `datasets`, or the URL of a tar archive of one (the tutorial's download step), which
//! the trainer fetches through the host's `wasi:http` and unpacks into the bucket.

// The generated `topics.publish` import passes its arguments lowered: more than clippy likes.
#![allow(clippy::too_many_arguments)]

mod archive;

use std::time::Duration;

use classifier::{Mlp, TrainOptions};
use guest_sdk::buckets::Bucket;
use guest_sdk::http;
use guest_sdk::kv::Store;
use guest_sdk::nn::{Model, Tensor};
use guest_sdk::queues::Queue;
use guest_sdk::{config, topics};
use serde_json::json;

wit_bindgen::generate!({
    world: "example:train-classifier/train-classifier",
    path: ["../../wit", "wit"],
    with: { "host:api/topics@0.1.0": generate },
});

/// Where statuses go, by training id.
const STATUS_STORE: &str = "training-updates";
/// Where datasets, requests and trained models are.
const BUCKET: &str = "datasets";
/// The training tasks.
const QUEUE: &str = "training-queue";
/// Published for every request; `train-model` subscribes to it.
const TOPIC: &str = "new-model";
/// The trainer's lease on a task: longer than any training.
const LEASE: Duration = Duration::from_secs(15 * 60);
/// The last status, which the site waits for.
const TRAINED: &str = "Model Trained!";

struct TrainClassifier;

fn text(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

fn set_status(id: &str, update: &str) -> Result<(), String> {
    println!("{id}: {update}");
    Store::open(STATUS_STORE).and_then(|s| s.set(id, update.as_bytes())).map_err(text)
}

/// The images of `dataset` by class: `DATASET/CLASS/FILE` keys of the bucket.
fn dataset_files(bucket: &Bucket, dataset: &str) -> Result<Vec<(String, String)>, String> {
    let prefix = format!("{}/", dataset.trim_end_matches('/'));
    let keys = bucket.list(&prefix).map_err(text)?;
    let mut files = Vec::new();
    for key in keys {
        if let Some((class, _file)) = key[prefix.len()..].split_once('/') {
            files.push((class.to_string(), key.clone()));
        }
    }
    Ok(files)
}

/// Whether a dataset is given as the URL of an archive rather than a folder of the bucket.
fn is_url(dataset: &str) -> bool {
    dataset.starts_with("http://") || dataset.starts_with("https://")
}

/// The folder of the bucket an archive at `url` unpacks into: its file name up to the first dot
/// (the tutorial's `dataset_url.split('/')[-1].split('.')[0]`), `dataset` if that is empty.
fn archive_folder(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let file = path.rsplit('/').next().unwrap_or_default();
    let stem: String = file
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_".contains(*c))
        .collect();
    if stem.is_empty() { "dataset".into() } else { stem }
}

/// Fetches the archive at `url` and writes its images to the bucket as `FOLDER/CLASS/FILE`;
/// returns the folder.
fn download(id: &str, bucket: &Bucket, url: &str) -> Result<String, String> {
    let response = http::get(url).map_err(|e| format!("downloading the dataset: {e}"))?;
    if !response.is_success() {
        return Err(format!("downloading the dataset: GET {} answered {}", response.url, response.status));
    }
    let images = archive::images(&response.body).map_err(|e| format!("the archive at {url}: {e}"))?;
    if images.is_empty() {
        return Err(format!("the archive at {url} has no PNG or JPEG images in class folders (CLASS/FILE)"));
    }
    let folder = archive_folder(url);
    for image in &images {
        bucket.write(&format!("{folder}/{}/{}", image.class, image.file), &image.bytes).map_err(text)?;
    }
    set_status(
        id,
        &format!("Downloaded {} bytes from {url}: {} images into `{folder}/`", response.body.len(), images.len()),
    )?;
    Ok(folder)
}

/// The model input of an image (PNG or JPEG bytes).
fn features(bytes: &[u8]) -> Result<[f32; classifier::INPUTS], String> {
    let (_, image) = vision::codec::decode(bytes)?;
    Ok(classifier::features(image.width, image.height, &image.pixels))
}

impl Guest for TrainClassifier {
    fn request_training(dataset: String, epochs: Option<u32>) -> Result<String, String> {
        let bucket = Bucket::open(BUCKET).map_err(text)?;
        if is_url(&dataset) {
            // As in the tutorial, the requester only stores the URL: the trainer downloads it.
            http::Url::parse(&dataset).map_err(|e| format!("dataset URL `{dataset}`: {e}"))?;
        } else if dataset_files(&bucket, &dataset)?.is_empty() {
            return Err(format!("dataset `{dataset}`: no images under `{dataset}/CLASS/` in bucket `{BUCKET}`"));
        }
        let epochs = match epochs {
            Some(epochs) => epochs,
            None => config::get("epochs").map_err(text)?.and_then(|e| e.parse().ok()).unwrap_or(30),
        };
        if !(1..=1000).contains(&epochs) {
            return Err(format!("epochs: {epochs}, expected 1 to 1000"));
        }
        let counter = Store::open(STATUS_STORE).and_then(|s| s.increment("next-id", 1)).map_err(text)?;
        let id = format!("model-{counter:04}");
        bucket.write(&format!("{id}-url"), dataset.as_bytes()).map_err(text)?;
        set_status(&id, "Training Pending...")?;
        let task = json!({ "id": id, "epochs": epochs }).to_string();
        Queue::new(QUEUE).send(task.as_bytes()).map_err(text)?;
        let payload = json!({ "id": id, "worker_index": 0, "value": "Train new model please :)" }).to_string();
        topics::publish(TOPIC, payload.as_bytes(), &[]).map_err(text)?;
        Ok(id)
    }

    fn train_model(_event: Event) -> Result<String, String> {
        let queue = Queue::new(QUEUE);
        let mut trained = Vec::new();
        for task in queue.receive(1, LEASE).map_err(text)? {
            let body: serde_json::Value = serde_json::from_slice(&task.body).map_err(text)?;
            let id = body["id"].as_str().ok_or("task without an id")?.to_string();
            let epochs = body["epochs"].as_u64().unwrap_or(30) as usize;
            set_status(&id, &format!("Training Starting... (delivery {})", task.attempt))?;
            match train(&id, epochs) {
                Ok(()) => {
                    set_status(&id, TRAINED)?;
                    task.complete().map_err(text)?;
                    trained.push(id);
                }
                Err(error) => {
                    set_status(&id, &format!("Training failed: {error}"))?;
                    task.complete().map_err(text)?;
                    return Err(error);
                }
            }
        }
        Ok(match trained.is_empty() {
            true => "no training task waiting".into(),
            false => format!("Model trained: {}", trained.join(", ")),
        })
    }

    fn status(id: String) -> Result<String, String> {
        let status = Store::open(STATUS_STORE).and_then(|s| s.get(&id)).map_err(text)?;
        let status = status.ok_or_else(|| format!("no training `{id}`"))?;
        String::from_utf8(status).map_err(text)
    }

    fn classify(id: String, image: Vec<u8>) -> Result<Prediction, String> {
        let bucket = Bucket::open(BUCKET).map_err(text)?;
        let model = bucket.read(&format!("{id}-model.onnx")).map_err(|e| format!("no model for `{id}`: {e:?}"))?;
        let classes: Vec<String> =
            serde_json::from_slice(&bucket.read(&format!("{id}-classes.json")).map_err(text)?).map_err(text)?;
        let input = features(&image)?;
        let model = Model::from_onnx(&model).map_err(text)?;
        let outputs = model.compute(vec![("image".into(), Tensor::f32(&[1, 64], &input))]).map_err(text)?;
        let probabilities = outputs.f32("probabilities").map_err(text)?;
        let mut scores: Vec<Score> =
            classes.into_iter().zip(probabilities).map(|(label, probability)| Score { label, probability }).collect();
        scores.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        let best = scores.first().ok_or("the model has no classes")?;
        Ok(Prediction { label: best.label.clone(), confidence: best.probability, scores })
    }
}

/// The tutorial's training stages, each with its status.
fn train(id: &str, epochs: usize) -> Result<(), String> {
    let bucket = Bucket::open(BUCKET).map_err(text)?;
    let dataset = String::from_utf8(bucket.read(&format!("{id}-url")).map_err(text)?).map_err(text)?;
    set_status(id, "Loading Images...")?;
    let dataset = match is_url(&dataset) {
        true => download(id, &bucket, &dataset)?,
        false => dataset,
    };
    let files = dataset_files(&bucket, &dataset)?;
    let mut classes: Vec<String> = files.iter().map(|(class, _)| class.clone()).collect();
    classes.sort();
    classes.dedup();
    let mut images = Vec::new();
    for (class, key) in &files {
        images.push((class, bucket.read(key).map_err(text)?));
    }
    set_status(id, "Images Loaded! Starting image preprocessing...")?;
    let mut samples = Vec::new();
    for (class, bytes) in &images {
        let label = classes.binary_search(class).expect("every class is listed");
        samples.push((features(bytes)?, label));
    }
    let (training, validation) = classifier::split(&samples, 0.2, 123);
    set_status(id, &format!("Images processed! Classes found: {classes:?}. Building model..."))?;
    let options = TrainOptions { epochs, ..TrainOptions::default() };
    set_status(id, "Model Built! Training model...")?;
    let model: Mlp = classifier::train(&training, classes.len(), &options, |epoch, loss, accuracy| {
        let update = format!("Training: epoch {epoch}/{epochs}, loss {loss:.3}, accuracy {:.1}%", accuracy * 100.0);
        if let Err(error) = set_status(id, &update) {
            eprintln!("{error}");
        }
    });
    let accuracy = model.accuracy(&validation);
    set_status(
        id,
        &format!(
            "Training Complete! Validation accuracy {:.1}% on {} images. Saving model...",
            accuracy * 100.0,
            validation.len()
        ),
    )?;
    bucket.write(&format!("{id}-model.onnx"), &model.to_onnx(&classes)).map_err(text)?;
    bucket.write(&format!("{id}-classes.json"), json!(classes).to_string().as_bytes()).map_err(text)?;
    set_status(id, "Model Saved!")
}

export!(TrainClassifier);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_unpacks_into_its_file_name_up_to_the_first_dot() {
        assert_eq!(archive_folder("https://h/x/flower_photos.tgz"), "flower_photos");
        assert_eq!(archive_folder("http://127.0.0.1:8/digits.tar.gz?sig=a.b#f"), "digits");
        assert_eq!(archive_folder("http://h/"), "dataset");
        assert_eq!(archive_folder("http://h/../.tgz"), "dataset");
    }
}
