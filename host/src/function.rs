//! [`Function`]: one callable export of a loaded app, called with JSON. Every way of calling it
//! goes through [`crate::invocation`]; jobs and serial calls are in [`crate::runner`], maps in
//! [`crate::map`].

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::{Type, Val};

use crate::Error;
use crate::call::{self, CallTarget, Guest};
use crate::exports::Export;
use crate::invocation::{self, Admission, CallReport, Invocation, Origin};
use crate::outcome::{CallError, Logs};
use crate::storage::datasets::Cause;
use crate::values::{self, ArgumentError};

/// One callable export of a component, with the limits and grants of its manifest entry.
#[derive(Clone)]
pub struct Function {
    pub(crate) name: String,
    pub(crate) export: Arc<Export>,
    pub(crate) target: Arc<CallTarget>,
}

/// The first characters of a JSON value, for error messages.
pub(crate) fn short(value: &Value) -> String {
    value.to_string().chars().take(40).collect()
}

impl Function {
    /// `function.export`, e.g. `counter.increment`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The export's WIT types, signature and JSON Schemas.
    pub fn export(&self) -> &Export {
        &self.export
    }

    /// The component behind this export.
    pub fn guest(&self) -> &Arc<Guest> {
        &self.target.guest
    }

    /// Call with JSON arguments (an object by parameter name, or an array in order) and return the
    /// JSON result. A returned `result::err` is an [`Error::Call`] with [`CallError::Guest`].
    pub async fn call(&self, args: Value) -> Result<Value, Error> {
        self.invoke(&args).await?.result.map_err(Error::Call)
    }

    /// Like [`Function::call`] but also returns the guest's output and the timing. Only bad
    /// arguments are an `Err`: they are rejected before any instance is made. Arguments may hold
    /// `{"$execution": ID}` references, replaced by those executions' results (waiting for them).
    /// The call is recorded as an execution (trigger `call`), as the function's `record` says.
    pub async fn invoke(&self, args: &Value) -> Result<CallReport, ArgumentError> {
        self.invoke_as(args, Origin::Call, 1, None).await
    }

    /// [`Function::invoke`] as attempt `attempt` of a call started by `origin`; in `slot` when
    /// the caller already holds a `concurrency` slot.
    pub(crate) async fn invoke_as(
        &self,
        args: &Value,
        origin: Origin,
        attempt: u32,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<CallReport, ArgumentError> {
        let invocation = Invocation { attempt, ..Invocation::new(self.guest(), &self.name, args, origin) };
        let resolved = match invocation::references(args).is_empty() {
            true => Ok(None),
            false => invocation::resolve_references(&self.guest().executions, args).await.map(Some),
        };
        let (params, admission) = match resolved {
            Ok(resolved) => {
                let params = self.params(resolved.as_ref().unwrap_or(args))?;
                (params, slot.map_or(Admission::Wait, Admission::Held))
            }
            Err(bad_reference) => (Vec::new(), Admission::Refused(bad_reference)),
        };
        Ok(invocation.run(admission, async || self.run_in_sandbox(&params, None, None).await).await)
    }

    /// Run one call in a fresh instance (its slot is held); changes it makes carry `cause`;
    /// with `execution` (id, attempt) its output is readable live and it can be cancelled.
    pub(crate) async fn run_in_sandbox(
        &self,
        params: &[Val],
        cause: Option<Cause>,
        execution: Option<(&str, u32)>,
    ) -> (Result<Value, CallError>, Logs) {
        let (outcome, logs) = call::run(&self.target, params, cause, execution).await;
        (outcome.and_then(|results| self.result_json(results.first())), logs)
    }

    /// The arguments as WIT values, checked against the export's parameters.
    pub(crate) fn params(&self, args: &Value) -> Result<Vec<Val>, ArgumentError> {
        let params = &self.export.params;
        let names = || params.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
        let budget = &mut values::Budget::new(self.target.guest.limits.memory);
        match args {
            Value::Object(obj) => {
                let fields = params.iter().map(|(n, t)| (n.as_str(), t.clone()));
                let named = values::named_from_json(fields, obj, "", "parameter", budget)?;
                Ok(named.into_iter().map(|(_, v)| v).collect())
            }
            Value::Array(items) if items.len() == params.len() => {
                params.iter().zip(items).map(|((name, ty), v)| values::from_json(ty, v, name, budget)).collect()
            }
            Value::Null if params.is_empty() => Ok(Vec::new()),
            _ => Err(ArgumentError {
                path: "(arguments)".into(),
                expected: format!("an object with parameters {{{}}} or an array of {} values", names(), params.len()),
                got: short(args),
            }),
        }
    }

    /// JSON of the returned value; a top-level `result` is unwrapped into success or failure.
    fn result_json(&self, value: Option<&Val>) -> Result<Value, CallError> {
        match (&self.export.result, value) {
            (Some(ty @ Type::Result(_)), Some(v @ Val::Result(outcome))) => {
                // `{"ok": x}` or `{"err": x}`: the case decides success, `x` is the value.
                let case = if outcome.is_ok() { "ok" } else { "err" };
                let payload = values::to_json(ty, v)[case].take();
                if outcome.is_ok() { Ok(payload) } else { Err(CallError::Guest { value: payload }) }
            }
            (Some(ty), Some(v)) => Ok(values::to_json(ty, v)),
            _ => Ok(Value::Null),
        }
    }
}
