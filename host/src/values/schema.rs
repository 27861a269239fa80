//! JSON Schemas for values of WIT types, as [`super::from_json`] accepts and [`super::to_json`]
//! gives them.

use serde_json::{Map, Value, json};
use wasmtime::component::Type;

use super::wit;

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
