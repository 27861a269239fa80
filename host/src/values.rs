//! JSON <-> component values, by WIT type; JSON Schemas and WIT text for types.
//!
//! The mapping, used the same way by the CLI, the library and (later) REST:
//!
//! | WIT | JSON |
//! |---|---|
//! | `bool`, integers, floats | booleans and numbers (`NaN`, `Infinity`, `-Infinity` as strings) |
//! | `char`, `string` | strings (a `char` is a one-character string) |
//! | `list<u8>` | a base64 string (an array of numbers is accepted too) |
//! | `list<T>`, `tuple<..>` | arrays |
//! | `record` | an object keyed by field name; `option` fields may be left out |
//! | `variant` | `"case"` without payload, `{"case": payload}` with one |
//! | `enum` | `"case"` |
//! | `flags` | an array of the set flag names |
//! | `option<T>` | `null` or the value (`{"some": v}` when `T` is itself an option) |
//! | `result<T, E>` | `{"ok": v}` or `{"err": e}` |

use base64::Engine as _;
use serde_json::{Map, Value, json};
use wasmtime::component::{Type, Val};

/// A JSON value did not match the WIT type expected at `path`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argument {path}: expected {expected}, got {got}")]
pub struct ArgumentError {
    /// Where in the arguments, e.g. `who.tags[2]`.
    pub path: String,
    /// What the WIT type needs, e.g. `u64`.
    pub expected: String,
    /// A short rendering of what was given.
    pub got: String,
}

fn mismatch(path: &str, expected: impl Into<String>, got: &Value) -> ArgumentError {
    ArgumentError { path: path.to_string(), expected: expected.into(), got: show(got) }
}

/// A short rendering of a JSON value for error messages.
fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 { format!("{}…", text.chars().take(40).collect::<String>()) } else { text }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

/// Whether values of this type can cross the JSON boundary at all.
pub fn representable(ty: &Type) -> bool {
    match ty {
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => false,
        Type::List(l) => representable(&l.ty()),
        Type::FixedLengthList(l) => representable(&l.ty()),
        Type::Map(m) => representable(&m.key()) && representable(&m.value()),
        Type::Record(r) => r.fields().all(|f| representable(&f.ty)),
        Type::Tuple(t) => t.types().all(|t| representable(&t)),
        Type::Variant(v) => v.cases().all(|c| c.ty.as_ref().is_none_or(representable)),
        Type::Option(o) => representable(&o.ty()),
        Type::Result(r) => r.ok().as_ref().is_none_or(representable) && r.err().as_ref().is_none_or(representable),
        _ => true,
    }
}

macro_rules! int {
    ($value:expr, $path:expr, $name:literal, $variant:ident, $ty:ty) => {{
        let n = $value
            .as_i64()
            .map(i128::from)
            .or_else(|| $value.as_u64().map(i128::from))
            .ok_or_else(|| mismatch($path, $name, $value))?;
        <$ty>::try_from(n)
            .map(Val::$variant)
            .map_err(|_| mismatch($path, format!("{} ({}..={})", $name, <$ty>::MIN, <$ty>::MAX), $value))
    }};
}

fn float(value: &Value, path: &str, name: &str) -> Result<f64, ArgumentError> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| mismatch(path, name, value)),
        Value::String(s) if s == "NaN" => Ok(f64::NAN),
        Value::String(s) if s == "Infinity" => Ok(f64::INFINITY),
        Value::String(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => Err(mismatch(path, name, value)),
    }
}

/// Convert a JSON value to a component value of type `ty`; `path` names the value in errors.
pub fn from_json(ty: &Type, value: &Value, path: &str) -> Result<Val, ArgumentError> {
    Ok(match ty {
        Type::Bool => Val::Bool(value.as_bool().ok_or_else(|| mismatch(path, "bool", value))?),
        Type::S8 => int!(value, path, "s8", S8, i8)?,
        Type::U8 => int!(value, path, "u8", U8, u8)?,
        Type::S16 => int!(value, path, "s16", S16, i16)?,
        Type::U16 => int!(value, path, "u16", U16, u16)?,
        Type::S32 => int!(value, path, "s32", S32, i32)?,
        Type::U32 => int!(value, path, "u32", U32, u32)?,
        Type::S64 => int!(value, path, "s64", S64, i64)?,
        Type::U64 => int!(value, path, "u64", U64, u64)?,
        Type::Float32 => Val::Float32(float(value, path, "f32")? as f32),
        Type::Float64 => Val::Float64(float(value, path, "f64")?),
        Type::Char => {
            let s = value.as_str().ok_or_else(|| mismatch(path, "char (a one-character string)", value))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(mismatch(path, "char (a one-character string)", value)),
            }
        }
        Type::String => Val::String(value.as_str().ok_or_else(|| mismatch(path, "string", value))?.to_string()),
        Type::List(list) => {
            let elem = list.ty();
            match (value, &elem) {
                (Value::String(text), Type::U8) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|_| mismatch(path, "bytes (base64 string or array of u8)", value))?;
                    Val::List(bytes.into_iter().map(Val::U8).collect())
                }
                (Value::Array(items), _) => Val::List(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| from_json(&elem, v, &format!("{path}[{i}]")))
                        .collect::<Result<_, _>>()?,
                ),
                (_, Type::U8) => return Err(mismatch(path, "bytes (base64 string or array of u8)", value)),
                _ => return Err(mismatch(path, format!("array of {}", wit(&elem)), value)),
            }
        }
        Type::FixedLengthList(list) => {
            let items = exact_array(value, path, list.len() as usize)?;
            let elem = list.ty();
            Val::FixedLengthList(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| from_json(&elem, v, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Map(map) => {
            let (key_ty, value_ty) = (map.key(), map.value());
            let pairs = match value {
                Value::Object(obj) if key_ty == Type::String => obj
                    .iter()
                    .map(|(k, v)| Ok((Val::String(k.clone()), from_json(&value_ty, v, &join(path, k))?)))
                    .collect::<Result<_, ArgumentError>>()?,
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, pair)| {
                        let pair_path = format!("{path}[{i}]");
                        let kv = exact_array(pair, &pair_path, 2)?;
                        Ok((
                            from_json(&key_ty, &kv[0], &format!("{pair_path}[0]"))?,
                            from_json(&value_ty, &kv[1], &format!("{pair_path}[1]"))?,
                        ))
                    })
                    .collect::<Result<_, ArgumentError>>()?,
                _ => return Err(mismatch(path, "map (object or array of [key, value])", value)),
            };
            Val::Map(pairs)
        }
        Type::Record(record) => {
            let obj = value.as_object().ok_or_else(|| mismatch(path, "record (an object)", value))?;
            Val::Record(named_from_json(record.fields().map(|f| (f.name, f.ty)), obj, path, "field")?)
        }
        Type::Tuple(tuple) => {
            let items = exact_array(value, path, tuple.types().len())?;
            Val::Tuple(
                tuple
                    .types()
                    .zip(items)
                    .enumerate()
                    .map(|(i, (t, v))| from_json(&t, v, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Variant(variant) => {
            let expected = || {
                format!(
                    "one of {}",
                    variant.cases().map(|c| case_shape(c.name, c.ty.is_some())).collect::<Vec<_>>().join(", ")
                )
            };
            let (name, payload) = single_case(value).ok_or_else(|| mismatch(path, expected(), value))?;
            let case = variant.cases().find(|c| c.name == name).ok_or_else(|| mismatch(path, expected(), value))?;
            match (case.ty, payload) {
                (None, None) => Val::Variant(name.to_string(), None),
                (Some(ty), Some(p)) => {
                    Val::Variant(name.to_string(), Some(Box::new(from_json(&ty, p, &join(path, name))?)))
                }
                _ => return Err(mismatch(path, expected(), value)),
            }
        }
        Type::Enum(e) => {
            let name = value.as_str().filter(|s| e.names().any(|n| n == *s));
            match name {
                Some(name) => Val::Enum(name.to_string()),
                None => return Err(mismatch(path, format!("one of {}", quoted(e.names())), value)),
            }
        }
        Type::Flags(flags) => {
            let expected = || format!("array of flags from {}", quoted(flags.names()));
            let items = value.as_array().ok_or_else(|| mismatch(path, expected(), value))?;
            let set = items
                .iter()
                .map(|item| {
                    item.as_str()
                        .filter(|s| flags.names().any(|n| n == *s))
                        .map(str::to_string)
                        .ok_or_else(|| mismatch(path, expected(), item))
                })
                .collect::<Result<_, _>>()?;
            Val::Flags(set)
        }
        Type::Option(option) => {
            let inner = option.ty();
            match (value, &inner) {
                (Value::Null, _) => Val::Option(None),
                (Value::Object(obj), Type::Option(_)) if obj.len() == 1 && obj.contains_key("some") => {
                    Val::Option(Some(Box::new(from_json(&inner, &obj["some"], &join(path, "some"))?)))
                }
                (_, Type::Option(_)) => return Err(mismatch(path, "null or {\"some\": value}", value)),
                _ => Val::Option(Some(Box::new(from_json(&inner, value, path)?))),
            }
        }
        Type::Result(result) => {
            let (name, payload) = single_case(value)
                .filter(|(name, _)| *name == "ok" || *name == "err")
                .ok_or_else(|| mismatch(path, "{\"ok\": value} or {\"err\": value}", value))?;
            let ty = if name == "ok" { result.ok() } else { result.err() };
            let inner = match (ty, payload) {
                (Some(ty), Some(p)) => Some(Box::new(from_json(&ty, p, &join(path, name))?)),
                (None, None | Some(Value::Null)) => None,
                (Some(ty), None) => return Err(mismatch(&join(path, name), wit(&ty), &Value::Null)),
                (None, Some(p)) => return Err(mismatch(&join(path, name), "null (no payload)", p)),
            };
            Val::Result(if name == "ok" { Ok(inner) } else { Err(inner) })
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err(mismatch(path, format!("{} (cannot be passed as JSON)", wit(ty)), value));
        }
    })
}

/// Convert an object of named values (record fields, or a function's parameters by name). Every
/// name must be known; a missing one is an error unless its type is an `option`.
pub fn named_from_json<'a>(
    fields: impl Iterator<Item = (&'a str, Type)>,
    obj: &Map<String, Value>,
    path: &str,
    what: &str,
) -> Result<Vec<(String, Val)>, ArgumentError> {
    let fields: Vec<(&str, Type)> = fields.collect();
    if let Some(unknown) = obj.keys().find(|k| !fields.iter().any(|(name, _)| name == k)) {
        let names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
        return Err(ArgumentError {
            path: join(path, unknown),
            expected: format!("a known {what} ({})", names.join(", ")),
            got: format!("unknown {what} `{unknown}`"),
        });
    }
    fields
        .into_iter()
        .map(|(name, ty)| {
            let field_path = join(path, name);
            let v = match (obj.get(name), &ty) {
                (Some(v), ty) => from_json(ty, v, &field_path)?,
                (None, Type::Option(_)) => Val::Option(None),
                (None, ty) => {
                    return Err(ArgumentError { path: field_path, expected: wit(ty), got: "nothing (missing)".into() });
                }
            };
            Ok((name.to_string(), v))
        })
        .collect()
}

fn exact_array<'a>(value: &'a Value, path: &str, len: usize) -> Result<&'a [Value], ArgumentError> {
    match value.as_array() {
        Some(items) if items.len() == len => Ok(items),
        _ => Err(mismatch(path, format!("array of {len} elements"), value)),
    }
}

/// `"case"` or `{"case": payload}`.
fn single_case(value: &Value) -> Option<(&str, Option<&Value>)> {
    match value {
        Value::String(name) => Some((name, None)),
        Value::Object(obj) if obj.len() == 1 => obj.iter().next().map(|(k, v)| (k.as_str(), Some(v))),
        _ => None,
    }
}

fn case_shape(name: &str, payload: bool) -> String {
    if payload { format!("{{\"{name}\": …}}") } else { format!("\"{name}\"") }
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}

fn float_json(f: f64) -> Value {
    if f.is_nan() {
        json!("NaN")
    } else if f.is_infinite() {
        json!(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(f)
    }
}

/// Convert a component value of type `ty` to JSON (the inverse of [`from_json`]).
pub fn to_json(ty: &Type, value: &Val) -> Value {
    match (ty, value) {
        (_, Val::Bool(b)) => json!(b),
        (_, Val::S8(n)) => json!(n),
        (_, Val::U8(n)) => json!(n),
        (_, Val::S16(n)) => json!(n),
        (_, Val::U16(n)) => json!(n),
        (_, Val::S32(n)) => json!(n),
        (_, Val::U32(n)) => json!(n),
        (_, Val::S64(n)) => json!(n),
        (_, Val::U64(n)) => json!(n),
        (_, Val::Float32(f)) => float_json(f64::from(*f)),
        (_, Val::Float64(f)) => float_json(*f),
        (_, Val::Char(c)) => json!(c.to_string()),
        (_, Val::String(s)) => json!(s),
        (Type::List(l), Val::List(items)) if l.ty() == Type::U8 => {
            let bytes: Vec<u8> =
                items.iter().filter_map(|v| if let Val::U8(b) = v { Some(*b) } else { None }).collect();
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        (Type::List(l), Val::List(items)) => Value::Array(items.iter().map(|v| to_json(&l.ty(), v)).collect()),
        (Type::FixedLengthList(l), Val::FixedLengthList(items)) => {
            Value::Array(items.iter().map(|v| to_json(&l.ty(), v)).collect())
        }
        (Type::Tuple(t), Val::Tuple(items)) => {
            Value::Array(t.types().zip(items).map(|(t, v)| to_json(&t, v)).collect())
        }
        (Type::Map(m), Val::Map(pairs)) if m.key() == Type::String => Value::Object(
            pairs
                .iter()
                .filter_map(
                    |(k, v)| if let Val::String(k) = k { Some((k.clone(), to_json(&m.value(), v))) } else { None },
                )
                .collect(),
        ),
        (Type::Map(m), Val::Map(pairs)) => {
            Value::Array(pairs.iter().map(|(k, v)| json!([to_json(&m.key(), k), to_json(&m.value(), v)])).collect())
        }
        (Type::Record(r), Val::Record(fields)) => {
            Value::Object(r.fields().zip(fields).map(|(f, (name, v))| (name.clone(), to_json(&f.ty, v))).collect())
        }
        (_, Val::Variant(name, None) | Val::Enum(name)) => json!(name),
        (Type::Variant(var), Val::Variant(name, Some(payload))) => {
            let ty = var.cases().find(|c| c.name == name).and_then(|c| c.ty);
            json!({ name: ty.map_or(Value::Null, |ty| to_json(&ty, payload)) })
        }
        (_, Val::Flags(names)) => json!(names),
        (_, Val::Option(None)) => Value::Null,
        (Type::Option(o), Val::Option(Some(inner))) => match o.ty() {
            inner_ty @ Type::Option(_) => json!({ "some": to_json(&inner_ty, inner) }),
            inner_ty => to_json(&inner_ty, inner),
        },
        (Type::Result(r), Val::Result(outcome)) => {
            let (case, ty, payload) = match outcome {
                Ok(v) => ("ok", r.ok(), v),
                Err(v) => ("err", r.err(), v),
            };
            let payload = match (ty, payload) {
                (Some(ty), Some(v)) => to_json(&ty, v),
                _ => Value::Null,
            };
            json!({ case: payload })
        }
        _ => Value::Null,
    }
}

/// Which side of a call a schema describes: arguments accept a few more shapes than results give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// JSON going into the guest.
    Input,
    /// JSON coming out of the guest.
    Output,
}

/// JSON Schema (draft 2020-12 vocabulary) for values of `ty`.
pub fn schema(ty: &Type, direction: Direction) -> Value {
    let int =
        |min: i128, max: i128, name: &str| json!({ "type": "integer", "minimum": min, "maximum": max, "format": name });
    let number = json!({ "anyOf": [{ "type": "number" }, { "enum": ["NaN", "Infinity", "-Infinity"] }] });
    match ty {
        Type::Bool => json!({ "type": "boolean" }),
        Type::S8 => int(i8::MIN.into(), i8::MAX.into(), "int8"),
        Type::U8 => int(0, u8::MAX.into(), "uint8"),
        Type::S16 => int(i16::MIN.into(), i16::MAX.into(), "int16"),
        Type::U16 => int(0, u16::MAX.into(), "uint16"),
        Type::S32 => int(i32::MIN.into(), i32::MAX.into(), "int32"),
        Type::U32 => int(0, u32::MAX.into(), "uint32"),
        Type::S64 => int(i64::MIN.into(), i64::MAX.into(), "int64"),
        Type::U64 => int(0, u64::MAX.into(), "uint64"),
        Type::Float32 | Type::Float64 => number,
        Type::Char => json!({ "type": "string", "minLength": 1, "maxLength": 1 }),
        Type::String => json!({ "type": "string" }),
        Type::List(l) if l.ty() == Type::U8 => {
            let base64 = json!({ "type": "string", "contentEncoding": "base64" });
            match direction {
                Direction::Input => {
                    json!({ "anyOf": [base64, { "type": "array", "items": schema(&Type::U8, direction) }] })
                }
                Direction::Output => base64,
            }
        }
        Type::List(l) => json!({ "type": "array", "items": schema(&l.ty(), direction) }),
        Type::FixedLengthList(l) => {
            json!({ "type": "array", "items": schema(&l.ty(), direction), "minItems": l.len(), "maxItems": l.len() })
        }
        Type::Map(m) if m.key() == Type::String => {
            json!({ "type": "object", "additionalProperties": schema(&m.value(), direction) })
        }
        Type::Map(m) => json!({
            "type": "array",
            "items": { "type": "array", "prefixItems": [schema(&m.key(), direction), schema(&m.value(), direction)], "minItems": 2, "maxItems": 2 }
        }),
        Type::Record(r) => object_schema(r.fields().map(|f| (f.name.to_string(), f.ty)), direction),
        Type::Tuple(t) => {
            let items: Vec<Value> = t.types().map(|t| schema(&t, direction)).collect();
            json!({ "type": "array", "prefixItems": items, "minItems": items.len(), "maxItems": items.len() })
        }
        Type::Variant(v) => {
            json!({ "oneOf": v.cases().map(|c| case_schema(c.name, c.ty.as_ref(), direction)).collect::<Vec<_>>() })
        }
        Type::Enum(e) => json!({ "type": "string", "enum": e.names().collect::<Vec<_>>() }),
        Type::Flags(f) => {
            json!({ "type": "array", "items": { "enum": f.names().collect::<Vec<_>>() }, "uniqueItems": true })
        }
        Type::Option(o) => match o.ty() {
            inner @ Type::Option(_) => json!({ "anyOf": [{ "type": "null" }, {
                "type": "object", "properties": { "some": schema(&inner, direction) }, "required": ["some"], "additionalProperties": false
            }] }),
            inner => json!({ "anyOf": [{ "type": "null" }, schema(&inner, direction)] }),
        },
        Type::Result(r) => {
            // A result always names its case, even when that case has no payload.
            let case = |name: &str, ty: Option<Type>| {
                let payload = ty.map_or(json!({ "type": "null" }), |ty| schema(&ty, direction));
                json!({ "type": "object", "properties": { name: payload }, "required": [name], "additionalProperties": false })
            };
            json!({ "oneOf": [case("ok", r.ok()), case("err", r.err())] })
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            json!({ "not": {}, "description": format!("{} cannot be passed as JSON", wit(ty)) })
        }
    }
}

fn case_schema(name: &str, ty: Option<&Type>, direction: Direction) -> Value {
    match ty {
        None => json!({ "const": name }),
        Some(ty) => {
            json!({ "type": "object", "properties": { name: schema(ty, direction) }, "required": [name], "additionalProperties": false })
        }
    }
}

/// Schema of an object whose properties are the given named types; `option` ones are not required.
pub fn object_schema(fields: impl Iterator<Item = (String, Type)>, direction: Direction) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, ty) in fields {
        if direction == Direction::Output || !matches!(ty, Type::Option(_)) {
            required.push(json!(name));
        }
        properties.insert(name, schema(&ty, direction));
    }
    json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
}

/// WIT text for a type. Named types (records, variants, ...) are written out structurally because
/// a compiled component keeps their shape, not their names.
pub fn wit(ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", wit(&l.ty())),
        Type::FixedLengthList(l) => format!("list<{}, {}>", wit(&l.ty()), l.len()),
        Type::Map(m) => format!("map<{}, {}>", wit(&m.key()), wit(&m.value())),
        Type::Record(r) => {
            format!(
                "record {{ {} }}",
                r.fields().map(|f| format!("{}: {}", f.name, wit(&f.ty))).collect::<Vec<_>>().join(", ")
            )
        }
        Type::Tuple(t) => format!("tuple<{}>", t.types().map(|t| wit(&t)).collect::<Vec<_>>().join(", ")),
        Type::Variant(v) => format!(
            "variant {{ {} }}",
            v.cases()
                .map(|c| match c.ty {
                    Some(ty) => format!("{}({})", c.name, wit(&ty)),
                    None => c.name.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Enum(e) => format!("enum {{ {} }}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Flags(f) => format!("flags {{ {} }}", f.names().collect::<Vec<_>>().join(", ")),
        Type::Option(o) => format!("option<{}>", wit(&o.ty())),
        Type::Result(r) => match (r.ok(), r.err()) {
            (None, None) => "result".into(),
            (Some(ok), None) => format!("result<{}>", wit(&ok)),
            (None, Some(err)) => format!("result<_, {}>", wit(&err)),
            (Some(ok), Some(err)) => format!("result<{}, {}>", wit(&ok), wit(&err)),
        },
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        Type::Future(_) => "future".into(),
        Type::Stream(_) => "stream".into(),
        Type::ErrorContext => "error-context".into(),
    }
}
