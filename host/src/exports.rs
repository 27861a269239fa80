//! The functions a component exports, read from the component's own type information.

use serde_json::{Value, json};
use wasmtime::component::{Component, ComponentExportIndex, Type, types::ComponentItem};

use crate::values::{self, Direction};

/// One exported function of a component, with its WIT types.
#[derive(Clone)]
pub struct Export {
    /// Short name used to call it: `greet` at top level, `math.add` inside interface `pkg:x/math`.
    pub name: String,
    /// The name as the component spells it: `greet`, or `pkg:x/math@0.1.0#add`.
    pub full_name: String,
    /// Parameters in order, with their names.
    pub params: Vec<(String, Type)>,
    /// The result type, if the function returns one.
    pub result: Option<Type>,
    pub(crate) index: ComponentExportIndex,
}

impl Export {
    /// The WIT signature, e.g. `func(who: record { name: string }) -> result<string, string>`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self.params.iter().map(|(n, t)| format!("{n}: {}", values::wit(t))).collect();
        match &self.result {
            Some(result) => format!("func({}) -> {}", params.join(", "), values::wit(result)),
            None => format!("func({})", params.join(", ")),
        }
    }

    /// JSON Schema of the arguments object (`{"param": value, ...}`).
    pub fn params_schema(&self) -> Value {
        values::object_schema(self.params.iter().cloned(), Direction::Input)
    }

    /// JSON Schema of what a successful call returns. A top-level `result<T, E>` is unwrapped: the
    /// call returns `T` and fails with `E` (see [`Export::error_schema`]).
    pub fn result_schema(&self) -> Value {
        match &self.result {
            Some(Type::Result(r)) => {
                r.ok().map_or(json!({ "type": "null" }), |t| values::schema(&t, Direction::Output))
            }
            Some(ty) => values::schema(ty, Direction::Output),
            None => json!({ "type": "null" }),
        }
    }

    /// The export as one JSON document, under the given callable `name`: its full export name, WIT
    /// signature and the schemas of parameters, result and error (what `host inspect --json` and
    /// the REST API show).
    pub fn describe(&self, name: &str) -> Value {
        json!({
            "name": name,
            "export": self.full_name,
            "signature": self.signature(),
            "params": self.params_schema(),
            "result": self.result_schema(),
            "error": self.error_schema(),
        })
    }

    /// Whether the export has an `accept` parameter (`string` or `option<string>`), which `host
    /// serve` fills from the request's `Accept` header when the arguments leave it out.
    pub fn takes_accept(&self) -> bool {
        self.params.iter().any(|(name, ty)| {
            name == "accept" && (matches!(ty, Type::String) || matches!(ty, Type::Option(o) if o.ty() == Type::String))
        })
    }

    /// Whether a successful call may return media (see [`Export::media`]).
    pub fn may_return_media(&self) -> bool {
        match self.ok_type() {
            Some(ty) if is_media(&ty) => true,
            Some(Type::Variant(variant)) => variant.cases().any(|c| c.ty.as_ref().is_some_and(is_media)),
            _ => false,
        }
    }

    /// The type a successful call returns (inside a top-level `result`).
    fn ok_type(&self) -> Option<Type> {
        match &self.result {
            Some(Type::Result(r)) => r.ok(),
            other => other.clone(),
        }
    }

    /// The content type and bytes of a successful call's JSON `value` when it is *media*: a
    /// record of exactly `content-type: string` and `body: list<u8>`, returned as such or as the
    /// payload of a variant case. `host serve` sends media as raw bytes with that content type.
    pub fn media(&self, value: &Value) -> Option<(String, Vec<u8>)> {
        let media = match self.ok_type()? {
            ty if is_media(&ty) => value,
            Type::Variant(variant) => {
                let (case, payload) = value.as_object().filter(|o| o.len() == 1)?.iter().next()?;
                variant.cases().find(|c| c.name == case)?.ty.filter(is_media)?;
                payload
            }
            _ => return None,
        };
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD.decode(media["body"].as_str()?).ok()?;
        Some((media["content-type"].as_str()?.to_string(), body))
    }

    /// JSON Schema of the error value a failed call carries, when the function returns a `result`.
    pub fn error_schema(&self) -> Option<Value> {
        match &self.result {
            Some(Type::Result(r)) => {
                Some(r.err().map_or(json!({ "type": "null" }), |t| values::schema(&t, Direction::Output)))
            }
            _ => None,
        }
    }
}

/// Whether `ty` is a media record: exactly `content-type: string` and `body: list<u8>`.
fn is_media(ty: &Type) -> bool {
    let Type::Record(record) = ty else { return false };
    let fields: Vec<_> = record.fields().collect();
    matches!(fields.as_slice(), [kind, body]
        if kind.name == "content-type" && kind.ty == Type::String
            && body.name == "body" && matches!(&body.ty, Type::List(l) if l.ty() == Type::U8))
}

/// Exports that guest toolchains add for their own use at build time (Wizer pre-initialization)
/// and that must never be called: componentize-py's `exports#init` and componentize-qjs's `init`,
/// recognized by full name and parameter names so that a user's own `init` stays callable.
const TOOLCHAIN_INTERNAL: [(&str, &[&str]); 2] = [
    ("exports#init", &["app-name", "symbols", "stub-wasi"]),
    ("init", &["shim", "script", "entry-path", "disable-gc"]),
];

/// Whether `export` is one of the [`TOOLCHAIN_INTERNAL`] exports.
fn toolchain_internal(export: &Export) -> bool {
    TOOLCHAIN_INTERNAL.iter().any(|(name, params)| {
        export.full_name == *name && export.params.iter().map(|(p, _)| p.as_str()).eq(params.iter().copied())
    })
}

/// Every exported function of `component` whose types can be passed as JSON, at top level and
/// inside exported interfaces, in the component's order. Functions taking resources, futures or
/// streams are left out (they are reached through other triggers, e.g. wasi:http), and so are
/// toolchain-internal exports.
pub fn exports(component: &Component) -> Vec<Export> {
    let engine = component.engine();
    let mut found = Vec::new();
    for (name, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                if let Some(index) = component.get_export_index(None, name) {
                    found.push(export(name.to_string(), name.to_string(), &func, index));
                }
            }
            ComponentItem::ComponentInstance(instance) => {
                let Some(instance_index) = component.get_export_index(None, name) else { continue };
                let short = interface_short_name(name);
                for (func_name, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = item.ty
                        && let Some(index) = component.get_export_index(Some(&instance_index), func_name)
                    {
                        found.push(export(format!("{short}.{func_name}"), format!("{name}#{func_name}"), &func, index));
                    }
                }
            }
            _ => {}
        }
    }
    found.retain(|e| {
        if toolchain_internal(e) {
            tracing::debug!(export = %e.full_name, "toolchain-internal export; hidden");
            return false;
        }
        let ok = e.params.iter().all(|(_, t)| values::representable(t))
            && e.result.as_ref().is_none_or(values::representable);
        if !ok {
            tracing::debug!(export = %e.full_name, "export not callable with JSON; skipped");
        }
        ok
    });
    found
}

fn export(
    name: String,
    full_name: String,
    func: &wasmtime::component::types::ComponentFunc,
    index: ComponentExportIndex,
) -> Export {
    Export {
        name,
        full_name,
        params: func.params().map(|(n, t)| (n.to_string(), t)).collect(),
        result: func.results().next(),
        index,
    }
}

/// `pkg:name/iface@1.0.0` -> `iface`.
fn interface_short_name(name: &str) -> &str {
    let without_version = name.split('@').next().unwrap_or(name);
    without_version.rsplit('/').next().unwrap_or(without_version)
}
