//! `[model.NAME]`: ONNX models the host runs for the app's functions (`wasi:nn`).

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::names::ResourceName;

/// One `[model.NAME]`: an ONNX model functions granted it load with `wasi:nn` `load-by-name`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Where the model's bytes are.
    pub source: ModelSource,
    /// Concrete input shapes by input name, for models whose declared shapes are symbolic or wrong.
    pub inputs: BTreeMap<String, Vec<usize>>,
    /// Load (parse, type, optimize) when the app loads instead of on first use.
    pub warm: bool,
    /// Computations of this model running at once; more wait their turn.
    pub concurrency: u32,
    /// What runs it.
    pub engine: ModelEngine,
}

/// What runs a model (`engine = "tract" | "onnxruntime"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ModelEngine {
    /// tract, built into the host (pure Rust): the default.
    #[default]
    Tract,
    /// ONNX Runtime, from the shared library `ORT_DYLIB_PATH` names, loaded when the app loads.
    OnnxRuntime,
}

impl ModelEngine {
    /// Its manifest name.
    pub fn name(self) -> &'static str {
        match self {
            ModelEngine::Tract => "tract",
            ModelEngine::OnnxRuntime => "onnxruntime",
        }
    }
}

/// Where a model's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A file, resolved against the manifest's folder.
    Path(PathBuf),
    /// An object in one of the app's buckets (e.g. written by a training function); reloaded when
    /// it changes.
    Bucket {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
    },
}

/// A model's default `concurrency`: one computation per CPU.
fn default_model_concurrency() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// A `[model.NAME]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    path: Option<PathBuf>,
    bucket: Option<ResourceName>,
    key: Option<String>,
    #[serde(default)]
    inputs: BTreeMap<String, Vec<NonZeroUsize>>,
    #[serde(default)]
    warm: bool,
    concurrency: Option<NonZeroU32>,
    engine: Option<String>,
}

impl RawModel {
    /// The model `name`, checked: exactly one source, a valid bucket key; a `path` resolves
    /// against `base` (the manifest's folder).
    pub(super) fn check(self, name: &str, base: &Path) -> Result<ModelSpec, String> {
        let source = match (self.path, self.bucket, self.key) {
            (Some(path), None, None) => ModelSource::Path(base.join(path)),
            (None, Some(bucket), Some(key)) => {
                crate::names::check_bucket_key(&key).map_err(|reason| format!("model.{name}.key: {reason}"))?;
                ModelSource::Bucket { bucket: bucket.0, key }
            }
            _ => {
                return Err(format!("model.{name}: expected either `path` (an .onnx file) or both `bucket` and `key`"));
            }
        };
        let engine = match self.engine.as_deref() {
            None => ModelEngine::default(),
            Some(given) => [ModelEngine::Tract, ModelEngine::OnnxRuntime]
                .into_iter()
                .find(|engine| engine.name() == given)
                .ok_or_else(|| {
                    format!("model.{name}.engine: unknown engine `{given}`; expected `tract` or `onnxruntime`")
                })?,
        };
        let inputs = self.inputs.into_iter().map(|(n, dims)| (n, dims.into_iter().map(NonZeroUsize::get).collect()));
        Ok(ModelSpec {
            source,
            inputs: inputs.collect(),
            warm: self.warm,
            concurrency: self.concurrency.map_or_else(default_model_concurrency, NonZeroU32::get),
            engine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(toml: &str) -> Result<ModelSpec, String> {
        let raw: RawModel = toml::from_str(toml).map_err(|e| e.to_string())?;
        raw.check("m", Path::new("/apps/x"))
    }

    #[test]
    fn a_model_comes_from_a_file_or_a_bucket_object() {
        let m = model("path = \"m.onnx\"\ninputs = { x = [1, 3] }\nconcurrency = 2\n").unwrap();
        assert_eq!(m.source, ModelSource::Path("/apps/x/m.onnx".into()));
        assert_eq!((m.inputs["x"].as_slice(), m.warm, m.concurrency), ([1, 3].as_slice(), false, 2));
        let m = model("bucket = \"b\"\nkey = \"models/m.onnx\"\nwarm = true\n").unwrap();
        assert_eq!(m.source, ModelSource::Bucket { bucket: "b".into(), key: "models/m.onnx".into() });
        assert!(m.warm && m.concurrency >= 1);
    }

    #[test]
    fn the_engine_is_tract_unless_named() {
        assert_eq!(model("path = \"m.onnx\"\n").unwrap().engine, ModelEngine::Tract);
        let m = model("path = \"m.onnx\"\nengine = \"onnxruntime\"\n").unwrap();
        assert_eq!((m.engine, m.engine.name()), (ModelEngine::OnnxRuntime, "onnxruntime"));
        assert_eq!(model("path = \"m.onnx\"\nengine = \"tract\"\n").unwrap().engine.name(), "tract");
        assert_eq!(
            model("path = \"m.onnx\"\nengine = \"ort\"\n").unwrap_err(),
            "model.m.engine: unknown engine `ort`; expected `tract` or `onnxruntime`"
        );
    }

    #[test]
    fn sources_must_be_whole_and_keys_valid() {
        let expected = "model.m: expected either `path` (an .onnx file) or both `bucket` and `key`";
        for toml in ["", "bucket = \"b\"\n", "path = \"m.onnx\"\nkey = \"k\"\n"] {
            assert_eq!(model(toml).unwrap_err(), expected);
        }
        let err = model("bucket = \"b\"\nkey = \"../m.onnx\"\n").unwrap_err();
        assert!(err.starts_with("model.m.key: key \"../m.onnx\""), "{err}");
        assert!(model("path = \"m.onnx\"\ninputs = { x = [0] }\n").is_err());
    }
}
