//! Arguments that refer to other executions: `{"$execution": ID}` stands for that execution's
//! result, once it has one.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::outcome::CallError;
use crate::storage::executions::{Executions, Status};

/// The longest wait for an execution an argument refers to.
const REFERENCE_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The ids of every `{"$execution": ID}` in `value`.
pub(crate) fn references(value: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    fn walk(value: &Value, ids: &mut Vec<String>) {
        match value {
            Value::Object(map) => match reference(map) {
                Some(id) => ids.push(id.to_string()),
                None => map.values().for_each(|v| walk(v, ids)),
            },
            Value::Array(items) => items.iter().for_each(|v| walk(v, ids)),
            _ => {}
        }
    }
    walk(value, &mut ids);
    ids
}

fn reference(map: &Map<String, Value>) -> Option<&str> {
    match (map.len(), map.get("$execution")) {
        (1, Some(Value::String(id))) => Some(id),
        _ => None,
    }
}

/// `value` with every `{"$execution": ID}` replaced by that execution's result, once it has one.
/// An execution that does not exist or did not succeed is a [`CallError::Reference`].
pub(crate) async fn resolve_references(executions: &Executions, value: &Value) -> Result<Value, CallError> {
    let ids = references(value);
    if ids.is_empty() {
        return Ok(value.clone());
    }
    let mut outputs = HashMap::new();
    for id in ids {
        let refused = |message: String| CallError::Reference { execution: id.clone(), message };
        let record = executions.wait(&id, REFERENCE_WAIT).await.ok_or_else(|| refused("no such execution".into()))?;
        match (record.status, record.output) {
            (Status::Succeeded, Some(output)) => outputs.insert(id, output),
            (Status::Succeeded, None) => outputs.insert(id, Value::Null),
            (status, _) => {
                let error = record.error.as_ref().and_then(|e| e["message"].as_str()).unwrap_or("no result");
                return Err(refused(format!("it ended {}: {error}", json!(status).as_str().unwrap_or("?"))));
            }
        };
    }
    fn substitute(value: &Value, outputs: &HashMap<String, Value>) -> Value {
        match value {
            Value::Object(map) => match reference(map) {
                Some(id) => outputs[id].clone(),
                None => Value::Object(map.iter().map(|(k, v)| (k.clone(), substitute(v, outputs))).collect()),
            },
            Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, outputs)).collect()),
            other => other.clone(),
        }
    }
    Ok(substitute(value, &outputs))
}
