//! JSON arguments and results for every kind of WIT type, and the errors for bad arguments.

use host::{App, Error};
use serde_json::{Value, json};

use crate::common::{TYPES, app};

fn everything() -> Value {
    json!({
        "a-bool": true, "a-s8": -128, "a-u8": 255, "a-s16": -32768, "a-u16": 65535,
        "a-s32": -2147483648i64, "a-u32": 4294967295u64, "a-s64": i64::MIN, "a-u64": u64::MAX,
        "a-f32": 1.5, "a-f64": "-Infinity", "a-char": "ü", "a-string": "hello \u{1F600}",
        "bytes": "AAEC/w==", "strings": ["a", ""], "maybe": 7, "pair": [1, "one"],
        "color": "green", "perms": ["read", "exec"], "shape": { "rect": [2.0, 3.5] },
        "outcome": { "err": "bad" }, "samples": [1, null, -3],
    })
}

async fn call(app: &App, function: &str, args: Value) -> Result<Value, String> {
    app.function(function).unwrap().call(args).await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips() {
    let (_data, _host, app) = app(TYPES);
    let e = everything();
    assert_eq!(call(&app, "types.echo", json!({ "e": e })).await.unwrap(), e);
    let mut other = everything();
    other["maybe"] = json!(null);
    other["shape"] = json!("point");
    other["outcome"] = json!({ "ok": 3 });
    other["bytes"] = json!("");
    other["a-f64"] = json!("NaN");
    other["perms"] = json!([]);
    assert_eq!(call(&app, "types.echo", json!([other])).await.unwrap(), other);
    // Bytes may be given as an array of numbers; they come back as base64.
    let mut bytes = everything();
    bytes["bytes"] = json!([0, 1, 2, 255]);
    assert_eq!(call(&app, "types.echo", json!([bytes])).await.unwrap()["bytes"], json!("AAEC/w=="));
    // An option field may be left out.
    let mut missing = everything();
    missing.as_object_mut().unwrap().remove("maybe");
    assert_eq!(call(&app, "types.echo", json!([missing])).await.unwrap()["maybe"], json!(null));
}

#[tokio::test(flavor = "multi_thread")]
async fn arguments_by_name_or_position_and_interface_exports() {
    let (_data, _host, app) = app(TYPES);
    assert_eq!(call(&app, "types.pair", json!({ "a": 7, "b": "x" })).await.unwrap(), json!([7, "x"]));
    assert_eq!(call(&app, "types.pair", json!([7, "x"])).await.unwrap(), json!([7, "x"]));
    assert_eq!(
        call(&app, "types.shape-area", json!([{ "circle": 1.0 }])).await.unwrap().as_f64().unwrap(),
        std::f64::consts::PI
    );
    assert_eq!(call(&app, "types.shape-area", json!(["point"])).await.unwrap(), json!(0.0));
    assert_eq!(call(&app, "types.math.add", json!({ "a": 40, "b": 2 })).await.unwrap(), json!(42));
    assert_eq!(call(&app, "types.test:types/math#add", json!([i64::MAX, 1])).await.unwrap(), json!(i64::MIN));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_name_the_path_and_the_expectation() {
    let (_data, _host, app) = app(TYPES);
    let with = |field: &str, value: Value| {
        let mut e = everything();
        e[field] = value;
        json!({ "e": e })
    };
    let cases = [
        (with("a-u64", json!("ten")), r#"argument e.a-u64: expected u64, got "ten""#),
        (with("a-u8", json!(300)), "argument e.a-u8: expected u8 (0..=255), got 300"),
        (with("a-s8", json!(1.5)), "argument e.a-s8: expected s8, got 1.5"),
        (with("a-char", json!("ab")), r#"argument e.a-char: expected char (a one-character string), got "ab""#),
        (with("color", json!("purple")), r#"argument e.color: expected one of "red", "green", "blue", got "purple""#),
        (
            with("perms", json!(["fly"])),
            r#"argument e.perms: expected array of flags from "read", "write", "exec", got "fly""#,
        ),
        (with("pair", json!([1])), "argument e.pair: expected array of 2 elements, got [1]"),
        (with("pair", json!([1, 2])), "argument e.pair[1]: expected string, got 2"),
        (with("samples", json!([1, "x"])), r#"argument e.samples[1]: expected s16, got "x""#),
        (with("shape", json!({ "rect": [1.0] })), "argument e.shape.rect: expected array of 2 elements, got [1.0]"),
        (
            with("shape", json!("hexagon")),
            r#"argument e.shape: expected one of {"circle": …}, {"rect": …}, "point", got "hexagon""#,
        ),
        (
            with("outcome", json!({ "maybe": 1 })),
            r#"argument e.outcome: expected {"ok": value} or {"err": value}, got {"maybe":1}"#,
        ),
        (
            with("bytes", json!("not base64!")),
            r#"argument e.bytes: expected bytes (base64 string or array of u8), got "not base64!""#,
        ),
        (
            with("extra", json!(1)),
            "argument e.extra: expected a known field (a-bool, a-s8, a-u8, a-s16, a-u16, a-s32, a-u32, a-s64, a-u64, a-f32, a-f64, a-char, a-string, bytes, strings, maybe, pair, color, perms, shape, outcome, samples), got unknown field `extra`",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(call(&app, "types.echo", args).await.unwrap_err(), expected);
    }
    let mut missing = everything();
    missing.as_object_mut().unwrap().remove("a-bool");
    assert_eq!(
        call(&app, "types.echo", json!([missing])).await.unwrap_err(),
        "argument e.a-bool: expected bool, got nothing (missing)"
    );
    assert_eq!(
        call(&app, "types.pair", json!({ "a": 1 })).await.unwrap_err(),
        "argument b: expected string, got nothing (missing)"
    );
    assert_eq!(
        call(&app, "types.pair", json!({ "a": 1, "b": "x", "c": 2 })).await.unwrap_err(),
        "argument c: expected a known parameter (a, b), got unknown parameter `c`"
    );
    assert_eq!(
        call(&app, "types.pair", json!([1])).await.unwrap_err(),
        "argument (arguments): expected an object with parameters {a, b} or an array of 2 values, got [1]"
    );
    // Argument errors are caught before any instance is made.
    assert!(matches!(app.function("types.pair").unwrap().call(json!("x")).await, Err(Error::Argument(_))));
}

#[test]
fn schemas_describe_parameters_and_results() {
    let (_data, _host, app) = app(TYPES);
    let pair = app.function("types.pair").unwrap();
    let export = pair.export();
    assert_eq!(export.signature(), "func(a: u32, b: string) -> tuple<u32, string>");
    let params = export.params_schema();
    assert_eq!(params["required"], json!(["a", "b"]));
    assert_eq!(params["properties"]["a"]["maximum"], json!(u32::MAX));
    assert_eq!(params["additionalProperties"], json!(false));
    assert_eq!(export.result_schema()["prefixItems"][1], json!({ "type": "string" }));
    let echo = app.function("types.echo").unwrap();
    let e = &echo.export().params_schema()["properties"]["e"];
    assert_eq!(e["properties"]["color"]["enum"], json!(["red", "green", "blue"]));
    let required = e["required"].as_array().unwrap();
    assert!(!required.contains(&json!("maybe")) && required.contains(&json!("a-bool")), "option fields are optional");
}
