//! `map` and `starmap`: one call per input, in parallel fresh instances, at most the function's
//! `concurrency` in flight. Inputs become arguments, and calls start, only as slots free up, so
//! a map of many inputs holds little more than its inputs.

use std::borrow::Borrow;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, Stream, StreamExt};
use serde_json::Value;

use crate::Error;
use crate::function::{Function, short};
use crate::invocation::Origin;
use crate::values::ArgumentError;

/// One ended call of a map: its input's index and its outcome.
pub type MapOutcome = (usize, Result<Value, Error>);

/// The argument sets of a map, made one at a time.
pub type MapInputs = Box<dyn Iterator<Item = Value> + Send>;

/// The calls of a map, as a stream of their outcomes in the order they end. Polling it starts
/// calls up to the function's `concurrency`; [`MapCalls::stop`] starts no more.
pub struct MapCalls<'a> {
    inputs: Box<dyn Iterator<Item = BoxFuture<'a, MapOutcome>> + Send + 'a>,
    running: FuturesUnordered<BoxFuture<'a, MapOutcome>>,
    limit: usize,
    stopped: bool,
}

impl MapCalls<'_> {
    /// Start no more calls: those running still end, and their outcomes still come.
    pub fn stop(&mut self) {
        self.stopped = true;
    }
}

impl Stream for MapCalls<'_> {
    type Item = MapOutcome;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MapOutcome>> {
        let this = self.get_mut();
        while !this.stopped && this.running.len() < this.limit {
            match this.inputs.next() {
                Some(call) => this.running.push(call),
                None => break,
            }
        }
        this.running.poll_next_unpin(cx)
    }
}

/// One outcome of [`Function::starmap`] as JSON: `{"ok": value}` or `{"err": {"code", "message"}}`
/// (plus the guest's `error` value, for guest errors).
pub fn outcome_json(outcome: &Result<Value, Error>) -> Value {
    match outcome {
        Ok(value) => serde_json::json!({ "ok": value }),
        Err(Error::Call(error)) => serde_json::json!({ "err": crate::outcome::error_json(error) }),
        Err(error @ Error::Argument(_)) => {
            serde_json::json!({ "err": { "code": "bad-argument", "message": error.to_string() } })
        }
        Err(error) => serde_json::json!({ "err": { "code": "host-error", "message": error.to_string() } }),
    }
}

impl Function {
    /// The argument sets of a `map` over `inputs`: a list of values of the function's single
    /// parameter, or (as Runhouse's `map(a=[..], b=[..])`) an object of equally long lists by
    /// parameter name, zipped.
    pub fn map_args(&self, inputs: &Value) -> Result<Vec<Value>, ArgumentError> {
        Ok(self.map_inputs(inputs.clone())?.collect())
    }

    /// Like [`Function::map_args`], taking `inputs` and making each argument set only when it is
    /// asked for.
    pub fn map_inputs(&self, inputs: Value) -> Result<MapInputs, ArgumentError> {
        let got = short(&inputs);
        let bad = |expected: String| ArgumentError { path: "inputs".into(), expected, got: got.clone() };
        let params = self.export().params.len();
        match inputs {
            Value::Array(items) if params == 1 => Ok(Box::new(items.into_iter().map(|item| Value::Array(vec![item])))),
            Value::Array(_) => Err(bad(format!(
                "an object of lists by parameter name: `{}` takes {params} parameters (use starmap for lists of argument lists)",
                self.name(),
            ))),
            Value::Object(ref lists) => {
                let mut len = None;
                for (name, list) in lists {
                    let n = list.as_array().map(Vec::len).ok_or_else(|| bad(format!("`{name}` to be a list")))?;
                    if *len.get_or_insert(n) != n {
                        return Err(bad("lists of the same length".into()));
                    }
                }
                let Value::Object(lists) = inputs else { unreachable!("matched an object") };
                let mut columns: Vec<(String, std::vec::IntoIter<Value>)> = lists
                    .into_iter()
                    .map(|(name, list)| match list {
                        Value::Array(items) => (name, items.into_iter()),
                        _ => unreachable!("checked to be a list"),
                    })
                    .collect();
                let row = move |_| {
                    let row = columns.iter_mut().map(|(name, items)| (name.clone(), items.next().unwrap_or_default()));
                    Value::Object(row.collect())
                };
                Ok(Box::new((0..len.unwrap_or(0)).map(row)))
            }
            _ => Err(bad("a list of inputs, or an object of lists by parameter name".into())),
        }
    }

    /// The calls of a map over `arg_sets` (each an object by parameter name or an array in order),
    /// each recorded as an execution (trigger `map`), started as the stream is polled.
    pub fn calls<'a, A: Borrow<Value> + Send + 'a>(
        &self,
        arg_sets: impl IntoIterator<Item = A, IntoIter: Send + 'a>,
    ) -> MapCalls<'a> {
        let function = self.clone();
        let inputs = arg_sets.into_iter().enumerate().map(move |(i, args)| {
            let function = function.clone();
            async move {
                let outcome = match function.invoke_as(args.borrow(), Origin::Map, 1, None).await {
                    Ok(report) => report.result.map_err(Error::Call),
                    Err(bad) => Err(Error::Argument(bad)),
                };
                (i, outcome)
            }
            .boxed()
        });
        let limit = self.guest().limits.concurrency as usize;
        MapCalls { inputs: Box::new(inputs), running: FuturesUnordered::new(), limit, stopped: false }
    }

    /// Call once per argument set (each an object by parameter name or an array in order), in
    /// parallel fresh instances, up to the function's `concurrency` at once. Outcomes come back in
    /// input order; one call's failure does not stop the others. `on_each` sees every outcome as
    /// it arrives, with its index. Each call is recorded as an execution (trigger `map`).
    pub async fn starmap<A: Borrow<Value> + Send>(
        &self,
        arg_sets: impl IntoIterator<Item = A, IntoIter: Send>,
        mut on_each: impl FnMut(usize, &Result<Value, Error>),
    ) -> Vec<Result<Value, Error>> {
        let mut outcomes: Vec<Option<Result<Value, Error>>> = Vec::new();
        let mut calls = self.calls(arg_sets);
        while let Some((i, outcome)) = calls.next().await {
            on_each(i, &outcome);
            if outcomes.len() <= i {
                outcomes.resize_with(i + 1, || None);
            }
            outcomes[i] = Some(outcome);
        }
        outcomes.into_iter().map(|o| o.expect("every call reports")).collect()
    }
}
