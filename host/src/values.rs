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
//!
//! Arguments are counted as they are converted ([`Budget`]): past the function's `memory` limit
//! they are refused, since they could never be copied into the guest.

use base64::Engine as _;
use serde_json::{Map, Value, json};
use wasmtime::component::{Type, Val};

mod schema;
pub use schema::{Direction, object_schema, schema};

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

/// How many bytes converted arguments may take once copied into the guest: the function's
/// `memory` limit. Values are counted as the guest would hold them (a byte per `u8`, a string's
/// bytes and its pointer and length, ...), as they are converted, so arguments that could never
/// be copied into the guest are refused before the host builds all of them.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    limit: u64,
    used: u64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Budget {
        Budget { limit, used: 0 }
    }

    /// Count the value at `path` (of type `ty`), or refuse it when the budget is spent.
    fn charge(&mut self, ty: &Type, value: &Value, path: &str) -> Result<(), ArgumentError> {
        let bytes = match (ty, value) {
            (Type::Bool | Type::S8 | Type::U8, _) => 1,
            (Type::S16 | Type::U16, _) => 2,
            (Type::S32 | Type::U32 | Type::Float32 | Type::Char, _) => 4,
            (Type::S64 | Type::U64 | Type::Float64, _) => 8,
            // Pointer and length, and the bytes of a string or of a base64 `list<u8>`.
            (Type::String, Value::String(text)) => 8 + text.len() as u64,
            (Type::List(_), Value::String(text)) => 8 + text.len() as u64 / 4 * 3,
            (Type::List(_), _) => 8,
            _ => 0,
        };
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(ArgumentError {
                path: path.to_string(),
                expected: format!("arguments of at most {} bytes in all (the function's `memory` limit)", self.limit),
                got: format!("more than {} bytes by here", self.limit),
            });
        }
        Ok(())
    }
}

/// Convert a JSON value to a component value of type `ty`; `path` names the value in errors.
/// Converted values are counted against `budget`.
pub fn from_json(ty: &Type, value: &Value, path: &str, budget: &mut Budget) -> Result<Val, ArgumentError> {
    budget.charge(ty, value, path)?;
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
                        .map(|(i, v)| from_json(&elem, v, &format!("{path}[{i}]"), budget))
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
                    .map(|(i, v)| from_json(&elem, v, &format!("{path}[{i}]"), budget))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Map(map) => {
            let (key_ty, value_ty) = (map.key(), map.value());
            let pairs = match value {
                Value::Object(obj) if key_ty == Type::String => obj
                    .iter()
                    .map(|(k, v)| Ok((Val::String(k.clone()), from_json(&value_ty, v, &join(path, k), budget)?)))
                    .collect::<Result<_, ArgumentError>>()?,
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, pair)| {
                        let pair_path = format!("{path}[{i}]");
                        let kv = exact_array(pair, &pair_path, 2)?;
                        Ok((
                            from_json(&key_ty, &kv[0], &format!("{pair_path}[0]"), budget)?,
                            from_json(&value_ty, &kv[1], &format!("{pair_path}[1]"), budget)?,
                        ))
                    })
                    .collect::<Result<_, ArgumentError>>()?,
                _ => return Err(mismatch(path, "map (object or array of [key, value])", value)),
            };
            Val::Map(pairs)
        }
        Type::Record(record) => {
            let obj = value.as_object().ok_or_else(|| mismatch(path, "record (an object)", value))?;
            Val::Record(named_from_json(record.fields().map(|f| (f.name, f.ty)), obj, path, "field", budget)?)
        }
        Type::Tuple(tuple) => {
            let items = exact_array(value, path, tuple.types().len())?;
            Val::Tuple(
                tuple
                    .types()
                    .zip(items)
                    .enumerate()
                    .map(|(i, (t, v))| from_json(&t, v, &format!("{path}[{i}]"), budget))
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
                    Val::Variant(name.to_string(), Some(Box::new(from_json(&ty, p, &join(path, name), budget)?)))
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
                    Val::Option(Some(Box::new(from_json(&inner, &obj["some"], &join(path, "some"), budget)?)))
                }
                (_, Type::Option(_)) => return Err(mismatch(path, "null or {\"some\": value}", value)),
                _ => Val::Option(Some(Box::new(from_json(&inner, value, path, budget)?))),
            }
        }
        Type::Result(result) => {
            let (name, payload) = single_case(value)
                .filter(|(name, _)| *name == "ok" || *name == "err")
                .ok_or_else(|| mismatch(path, "{\"ok\": value} or {\"err\": value}", value))?;
            let ty = if name == "ok" { result.ok() } else { result.err() };
            let inner = match (ty, payload) {
                (Some(ty), Some(p)) => Some(Box::new(from_json(&ty, p, &join(path, name), budget)?)),
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
    budget: &mut Budget,
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
                (Some(v), ty) => from_json(ty, v, &field_path, budget)?,
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
