//! Property tests (proptest): JSON <-> WIT value conversion over every parameter type of the
//! `types` guest (pure conversions and real calls), arbitrary JSON as arguments, and the manifest
//! parser on arbitrary and mutated TOML. Deterministic (a fixed seed), `PROPTEST_CASES` cases per
//! property (default 64).

use base64::Engine as _;
use host::manifest::Manifest;
use host::values::{Budget, from_json, to_json};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value, json};
use wasmtime::component::Type;

use crate::common::{TYPES, app, root};

/// A runner with a fixed seed and `PROPTEST_CASES` cases (64 unless set), persisting nothing.
fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}

/// A float as the conversion writes it: a number, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn float_json(f: f64) -> Value {
    match f {
        f if f.is_nan() => json!("NaN"),
        f if f.is_infinite() => json!(if f > 0.0 { "Infinity" } else { "-Infinity" }),
        f => json!(f),
    }
}

/// Unicode text: any characters, control and astral ones included.
fn text() -> BoxedStrategy<String> {
    vec(any::<char>(), 0..12).prop_map(String::from_iter).boxed()
}

macro_rules! integer {
    ($t:ty) => {
        prop_oneof![Just(<$t>::MIN), Just(<$t>::MAX), Just(0 as $t), any::<$t>()].prop_map(|n| json!(n)).boxed()
    };
}

/// JSON values of type `ty`, in the form `to_json` writes them (so that a round trip is the identity).
fn canonical(ty: &Type) -> BoxedStrategy<Value> {
    match ty {
        Type::Bool => any::<bool>().prop_map(Value::from).boxed(),
        Type::S8 => integer!(i8),
        Type::U8 => integer!(u8),
        Type::S16 => integer!(i16),
        Type::U16 => integer!(u16),
        Type::S32 => integer!(i32),
        Type::U32 => integer!(u32),
        Type::S64 => integer!(i64),
        Type::U64 => integer!(u64),
        Type::Float32 => prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY), any::<f32>()]
            .prop_map(|f| float_json(f64::from(f)))
            .boxed(),
        Type::Float64 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), any::<f64>()]
            .prop_map(float_json)
            .boxed(),
        Type::Char => any::<char>().prop_map(|c| json!(c.to_string())).boxed(),
        Type::String => text().prop_map(Value::String).boxed(),
        Type::List(list) if list.ty() == Type::U8 => vec(any::<u8>(), 0..24)
            .prop_map(|bytes| json!(base64::engine::general_purpose::STANDARD.encode(bytes)))
            .boxed(),
        Type::List(list) => vec(canonical(&list.ty()), 0..4).prop_map(Value::Array).boxed(),
        Type::Tuple(tuple) => tuple.types().map(|t| canonical(&t)).collect::<Vec<_>>().prop_map(Value::Array).boxed(),
        Type::Record(record) => object(record.fields().map(|f| (f.name.to_string(), f.ty))),
        Type::Variant(variant) => Union::new(variant.cases().map(|case| {
            let name = case.name.to_string();
            match case.ty {
                None => Just(json!(name)).boxed(),
                Some(ty) => canonical(&ty).prop_map(move |v| json!({ name.clone(): v })).boxed(),
            }
        }))
        .boxed(),
        Type::Enum(e) => Union::new(e.names().map(|n| Just(json!(n)))).boxed(),
        Type::Flags(flags) => {
            let names: Vec<String> = flags.names().map(str::to_string).collect();
            vec(any::<bool>(), names.len())
                .prop_map(move |set| {
                    json!(names.iter().zip(set).filter(|(_, s)| *s).map(|(n, _)| n).collect::<Vec<_>>())
                })
                .boxed()
        }
        Type::Option(option) => {
            let inner = option.ty();
            let nested = matches!(inner, Type::Option(_));
            let some = canonical(&inner).prop_map(move |v| if nested { json!({ "some": v }) } else { v });
            prop_oneof![Just(Value::Null), some].boxed()
        }
        Type::Result(result) => {
            let case = |name: &'static str, ty: Option<Type>| {
                ty.map_or_else(|| Just(Value::Null).boxed(), |t| canonical(&t)).prop_map(move |v| json!({ name: v }))
            };
            prop_oneof![case("ok", result.ok()), case("err", result.err())].boxed()
        }
        other => panic!("the `types` guest has no parameter of type {}", host::values::wit(other)),
    }
}

/// Objects with every one of `fields`, each a canonical value of its type.
fn object(fields: impl Iterator<Item = (String, Type)>) -> BoxedStrategy<Value> {
    let (names, values): (Vec<String>, Vec<BoxedStrategy<Value>>) = fields.map(|(n, t)| (n, canonical(&t))).unzip();
    values.prop_map(move |values| Value::Object(names.iter().cloned().zip(values).collect::<Map<_, _>>())).boxed()
}

#[test]
fn json_to_wit_values_and_back_is_the_identity_for_every_parameter_type() {
    let (_data, _host, app) = app(TYPES);
    for function in app.functions() {
        let params = function.export().params.clone();
        runner()
            .run(&object(params.iter().cloned()), |args| {
                for (name, ty) in &params {
                    let value = &args[name];
                    let val = from_json(ty, value, name, &mut Budget::new(u64::MAX))
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(&to_json(ty, &val), value, "{} `{}`", function.name(), name);
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{}: {e}", function.name()));
    }
}

#[test]
fn echo_returns_every_generated_value_unchanged_through_a_real_call() {
    let (_data, _host, app) = app(TYPES);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let echo = app.function("types.echo").unwrap();
    runner()
        .run(&object(echo.export().params.iter().cloned()), |args| {
            let result = runtime.block_on(echo.call(args.clone())).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&result, &args["e"]);
            Ok(())
        })
        .unwrap();
    let pair = app.function("types.pair").unwrap();
    runner()
        .run(&object(pair.export().params.iter().cloned()), |args| {
            let result = runtime.block_on(pair.call(args.clone())).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(result, json!([args["a"], args["b"]]));
            Ok(())
        })
        .unwrap();
}

/// Words that reach deeper into the conversion: the `types` guest's field, case, enum and flag
/// names, the mapping's own keys and float names.
const WORDS: &[&str] = &[
    "e",
    "a",
    "b",
    "s",
    "a-bool",
    "a-s8",
    "a-u64",
    "a-f32",
    "a-f64",
    "a-char",
    "a-string",
    "bytes",
    "strings",
    "maybe",
    "pair",
    "color",
    "perms",
    "shape",
    "outcome",
    "samples",
    "circle",
    "rect",
    "point",
    "red",
    "green",
    "blue",
    "read",
    "write",
    "exec",
    "ok",
    "err",
    "some",
    "NaN",
    "Infinity",
    "-Infinity",
    "AAEC/w==",
    "",
];

fn word() -> BoxedStrategy<String> {
    prop_oneof![3 => Union::new(WORDS.iter().map(|w| Just(w.to_string()))), 1 => text()].boxed()
}

/// Any JSON value (nested up to 4 deep), with object keys and strings mostly from [`WORDS`].
fn arbitrary_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![Just(i64::MIN), Just(-1i64), Just(256i64), any::<i64>()].prop_map(Value::from),
        prop_oneof![Just(u64::MAX), any::<u64>()].prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec((word(), inner), 0..8).prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
    .boxed()
}

#[test]
fn arbitrary_json_arguments_convert_or_fail_cleanly_never_panic() {
    let (_data, _host, app) = app(TYPES);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for function in app.functions() {
        let params = function.export().params.clone();
        let by_name = vec(arbitrary_json(), params.len()).prop_map({
            let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
            move |values| Value::Object(names.iter().cloned().zip(values).collect())
        });
        runner()
            .run(&prop_oneof![arbitrary_json(), by_name], |args| {
                for (name, ty) in &params {
                    // An error must render; a conversion that succeeds must convert back.
                    match from_json(ty, &args[name], name, &mut Budget::new(u64::MAX)) {
                        Ok(val) => drop(to_json(ty, &val)),
                        Err(e) => prop_assert!(e.to_string().contains(&e.path)),
                    }
                }
                if let Err(e) = runtime.block_on(function.invoke(&args)) {
                    prop_assert!(!e.to_string().is_empty());
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{}: {e}", function.name()));
    }
}

/// The manifest vocabulary: every key the parser knows, plus names the examples use.
const KEYS: &[&str] = &[
    "app",
    "name",
    "function",
    "source",
    "build",
    "build-inputs",
    "limits",
    "memory",
    "timeout",
    "concurrency",
    "output",
    "table-entries",
    "grants",
    "kv",
    "buckets",
    "datasets",
    "models",
    "models-from-bytes",
    "queues",
    "topics",
    "config",
    "trigger",
    "http",
    "item",
    "queue",
    "topic",
    "schedule",
    "route",
    "public",
    "dataset",
    "on",
    "filter",
    "dir",
    "mimetype",
    "metadata",
    "mode",
    "retry",
    "attempts",
    "backoff",
    "every",
    "cron",
    "model",
    "path",
    "bucket",
    "key",
    "inputs",
    "warm",
    "site",
    "max-attempts",
    "probe",
    "jobs",
    "default",
    "",
];

/// Strings the manifest's values take, valid and nearly valid.
const TEXTS: &[&str] = &[
    "probe",
    "probe.probe",
    "hello.greet",
    "x.wasm",
    "../x.wasm",
    "10s",
    "0s",
    "50ms",
    "1ns",
    "25h",
    "24h",
    "18446744073709551615s",
    "99999999999999999999999h",
    "1KiB",
    "4GiB",
    "5GiB",
    "0B",
    "18446744073709551615GB",
    "64KiB",
    "/",
    "/hello",
    "/hello/...",
    "/...",
    "/v1",
    "/v1/x",
    "//",
    "/a/../b",
    "created",
    "updated",
    "deleted",
    "once",
    "always",
    "text/*",
    "*/*",
    "/once",
    "* * * * * *",
    "0 0 * * * *",
    "@daily",
    "61 * * * * *",
    "1s",
    "0.5s",
    "-1s",
    "a b",
    "ü",
    "",
    "default",
    "jobs",
    "news",
    "notes",
    "inbox",
    "runs",
];

fn toml_key() -> BoxedStrategy<String> {
    prop_oneof![4 => Union::new(KEYS.iter().map(|k| Just(k.to_string()))), 1 => text()].boxed()
}

/// Any TOML value (nested up to 4 deep) with keys from [`KEYS`] and strings mostly from [`TEXTS`].
fn toml_value() -> BoxedStrategy<toml::Value> {
    let leaf = prop_oneof![
        4 => prop_oneof![3 => Union::new(TEXTS.iter().map(|t| Just(t.to_string()))), 1 => text()].prop_map(toml::Value::String),
        2 => prop_oneof![Just(0i64), Just(1), Just(-1), Just(i64::MAX), Just(i64::MIN), any::<i64>()].prop_map(toml::Value::Integer),
        1 => any::<f64>().prop_map(toml::Value::Float),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            vec((toml_key(), inner), 0..6).prop_map(|pairs| toml::Value::Table(pairs.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Parsing `text` answers a manifest or an error, whatever the text.
fn parses_or_fails_cleanly(text: &str) -> Result<(), TestCaseError> {
    let path = root().join("tests/guests/fuzz/host.toml");
    match Manifest::parse(&path, text) {
        Ok(manifest) => prop_assert!(!manifest.functions.is_empty()),
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

#[test]
fn the_manifest_parser_never_panics_on_arbitrary_toml() {
    let documents = vec((toml_key(), toml_value()), 0..8).prop_map(|pairs| pairs.into_iter().collect::<toml::Table>());
    runner()
        .run(&documents, |table| match toml::to_string(&table) {
            Ok(text) => parses_or_fails_cleanly(&text),
            Err(_) => Ok(()), // a shape TOML cannot write (e.g. a value after a table): not a manifest
        })
        .unwrap();
    runner().run(&text(), |text| parses_or_fails_cleanly(&text)).unwrap();
}

/// Replace (or, with `None`, remove) the value reached by following `steps` (each picks a child
/// of a table or array, modulo its size) from `value`.
fn mutate(value: &mut toml::Value, steps: &[usize], new: Option<toml::Value>) {
    let Some((step, rest)) = steps.split_first() else { return };
    let child = match value {
        toml::Value::Table(t) if !t.is_empty() => {
            let key = t.keys().nth(step % t.len()).unwrap().clone();
            if rest.is_empty() || !matches!(t[&key], toml::Value::Table(_) | toml::Value::Array(_)) {
                match new {
                    Some(new) => t.insert(key, new),
                    None => t.remove(&key),
                };
                return;
            }
            t.get_mut(&key).unwrap()
        }
        toml::Value::Array(a) if !a.is_empty() => {
            let i = step % a.len();
            if rest.is_empty() || !matches!(a[i], toml::Value::Table(_) | toml::Value::Array(_)) {
                match new {
                    Some(new) => a[i] = new,
                    None => drop(a.remove(i)),
                }
                return;
            }
            &mut a[i]
        }
        _ => return,
    };
    mutate(child, rest, new);
}

#[test]
fn the_manifest_parser_never_panics_on_mutated_real_manifests() {
    let manifests: Vec<toml::Value> = ["examples", "tests/guests"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root().join(dir)).unwrap().flatten())
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("host.toml")).ok())
        .map(|text| toml::Value::Table(toml::from_str(&text).unwrap()))
        .collect();
    assert!(manifests.len() > 10, "the example and test manifests");
    let mutation = (vec(any::<usize>(), 1..5), prop::option::weighted(0.8, toml_value()));
    let cases = (0..manifests.len(), vec(mutation, 1..4));
    runner()
        .run(&cases, |(which, mutations)| {
            let mut manifest = manifests[which].clone();
            for (steps, new) in mutations {
                mutate(&mut manifest, &steps, new);
            }
            match toml::to_string(&manifest) {
                Ok(text) => parses_or_fails_cleanly(&text),
                Err(_) => Ok(()),
            }
        })
        .unwrap();
}

#[test]
fn generated_values_cover_the_bounds() {
    // The strategies reach the extremes they claim to (a check on the generators themselves).
    let mut runner = runner();
    let (_data, _host, app) = app(TYPES);
    let echo = app.function("types.echo").unwrap();
    let strategy = object(echo.export().params.iter().cloned());
    let (mut min_s8, mut nan) = (false, false);
    for _ in 0..512 {
        let value = strategy.new_tree(&mut runner).unwrap().current();
        min_s8 |= value["e"]["a-s8"] == json!(i8::MIN);
        nan |= value["e"]["a-f64"] == json!("NaN");
    }
    assert!(min_s8 && nan, "s8 minimum seen: {min_s8}, NaN seen: {nan}");
}
