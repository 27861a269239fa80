//! The OpenAPI paths of the datasets' item endpoints (per app and dataset) and of the execution
//! records.

use serde_json::{Map, Value, json};

use super::{json_response, op_id, operation};
use crate::App;

fn item_schema() -> Value {
    json!({ "type": "object", "required": ["id", "dataset", "name", "dir", "mimetype", "size"], "properties": {
        "id": { "type": "string" }, "dataset": { "type": "string" }, "name": { "type": "string" },
        "dir": { "type": "string" }, "mimetype": { "type": "string" }, "size": { "type": "integer" },
        "metadata": { "type": "object" },
        "modalities": { "type": "array", "items": { "type": "object", "properties": {
            "name": { "type": "string" }, "ref": { "type": "string" } } } },
        "created-ms": { "type": "integer" }, "updated-ms": { "type": "integer" } } })
}

fn annotation_input_schema() -> Value {
    let number = json!({ "type": "number" });
    let geometry = json!({ "oneOf": [
        { "const": "classification" },
        { "type": "object", "required": ["box"], "additionalProperties": false, "properties": { "box": {
            "type": "object", "required": ["left", "top", "right", "bottom"], "properties": {
                "left": number, "top": number, "right": number, "bottom": number } } } },
        { "type": "object", "required": ["point"], "additionalProperties": false, "properties": { "point": {
            "type": "object", "required": ["x", "y"], "properties": { "x": number, "y": number } } } },
        { "type": "object", "required": ["polygon"], "additionalProperties": false, "properties": { "polygon": {
            "type": "array", "items": { "type": "array", "items": number, "minItems": 2, "maxItems": 2 } } } } ] });
    json!({ "type": "object", "required": ["geometry", "label"], "properties": {
        "geometry": geometry, "label": { "type": "string" },
        "confidence": { "type": ["number", "null"] }, "model": { "type": ["string", "null"] } } })
}

fn path_params(names: &[&str]) -> Value {
    names.iter().map(|n| json!({ "name": n, "in": "path", "required": true, "schema": { "type": "string" } })).collect()
}

fn query_params(params: &[(&str, Value)]) -> Value {
    params.iter().map(|(n, schema)| json!({ "name": n, "in": "query", "schema": schema })).collect()
}

/// The item endpoints of every dataset `app` grants.
pub(super) fn dataset_paths(app: &App, paths: &mut Map<String, Value>) {
    let name = app.name();
    let string = json!({ "type": "string" });
    let missing = ("404", "No such item (`no-such-item`)");
    let invalid = ("400", "Invalid query, name, folder or metadata (`invalid`, `bad-query`)");
    for dataset in app.manifest().granted(|g| &g.datasets) {
        let base = format!("/v1/apps/{name}/datasets/{dataset}/items");
        let op = |verb: &str, summary: String, ok: (&str, Value), errors: &[(&str, &str)]| {
            operation(op_id(&[verb, name, "items", &dataset]), summary, name, ok, errors)
        };
        let page = json!({ "type": "object", "required": ["items"], "properties": {
            "items": { "type": "array", "items": item_schema() }, "cursor": { "type": ["string", "null"] } } });
        let mut list = op(
            "list",
            format!("List items of dataset `{dataset}`"),
            ("200", json_response("One page", page)),
            &[invalid],
        );
        list["parameters"] = query_params(&[
            ("dir", string.clone()),
            ("mimetype", string.clone()),
            ("cursor", string.clone()),
            ("limit", json!({ "type": "integer", "minimum": 0, "maximum": 4294967295u64 })),
        ]);
        // Links from an upload to the operations on the new item, so that stateful tests reach them.
        let mut links = Map::new();
        for verb in ["show", "delete", "download", "metadata", "annotations", "annotate"] {
            let id = json!({ "id": "$response.body#/id" });
            links.insert(
                verb.into(),
                json!({ "operationId": op_id(&[verb, name, "items", &dataset]), "parameters": id }),
            );
        }
        let mut created = ("201", json_response("The item, on disk", item_schema()));
        created.1["links"] = Value::Object(links);
        let mut upload = op(
            "upload",
            format!("Upload a file to dataset `{dataset}`"),
            created,
            &[invalid, ("413", "Body too large (`body-too-large`)")],
        );
        upload["parameters"] =
            query_params(&[("dir", string.clone()), ("name", string.clone()), ("metadata", string.clone())]);
        upload["requestBody"] = json!({ "required": true, "content": { "text/plain": { "schema": { "type": "string" } },
            "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } });
        paths.insert(base.clone(), json!({ "get": list, "post": upload }));

        let item = ("200", json_response("The item", item_schema()));
        let show = op("show", format!("One item of dataset `{dataset}`"), item.clone(), &[missing]);
        let remove = op(
            "delete",
            format!("Delete an item of dataset `{dataset}`"),
            ("204", json!({ "description": "Gone" })),
            &[missing],
        );
        paths.insert(
            format!("{base}/{{id}}"),
            json!({ "parameters": path_params(&["id"]), "get": show, "delete": remove }),
        );
        let bytes = (
            "200",
            json!({ "description": "The bytes, with the item's mimetype", "content": { "*/*": { "schema": {} } } }),
        );
        let download = op("download", format!("The bytes of an item of dataset `{dataset}`"), bytes, &[missing]);
        paths.insert(format!("{base}/{{id}}/download"), json!({ "parameters": path_params(&["id"]), "get": download }));
        let mut metadata = op(
            "metadata",
            format!("Replace the metadata of an item of dataset `{dataset}`"),
            item,
            &[missing, invalid],
        );
        metadata["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": { "type": "object" } } } });
        paths.insert(format!("{base}/{{id}}/metadata"), json!({ "parameters": path_params(&["id"]), "put": metadata }));

        let mut annotation = annotation_input_schema();
        annotation["properties"]["id"] = string.clone();
        annotation["properties"]["created-ms"] = json!({ "type": "integer" });
        let annotations = json!({ "type": "array", "items": annotation });
        let list = op(
            "annotations",
            format!("Annotations of an item of dataset `{dataset}`"),
            ("200", json_response("Annotations", annotations.clone())),
            &[missing],
        );
        let mut add = op(
            "annotate",
            format!("Add annotations to an item of dataset `{dataset}`"),
            ("201", json_response("The added annotations", annotations)),
            &[missing, ("400", "Not an array of annotations (`bad-json`, `invalid`)")],
        );
        add["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": {
            "type": "array", "items": annotation_input_schema() } } } });
        paths.insert(
            format!("{base}/{{id}}/annotations"),
            json!({ "parameters": path_params(&["id"]), "get": list, "post": add }),
        );
        let delete = op(
            "unannotate",
            format!("Delete an annotation of an item of dataset `{dataset}`"),
            ("204", json!({ "description": "Gone" })),
            &[missing],
        );
        paths.insert(
            format!("{base}/{{id}}/annotations/{{annotation}}"),
            json!({ "parameters": path_params(&["id", "annotation"]), "delete": delete }),
        );
    }
}

/// `/v1/executions`: the records of calls, jobs and triggered runs.
pub(super) fn execution_paths(paths: &mut Map<String, Value>) {
    let string = json!({ "type": "string" });
    let record = json!({ "type": "object", "required": ["id", "app", "function", "trigger", "status"], "properties": {
        "id": string, "app": string, "function": string, "trigger": string, "input": {},
        "status": { "enum": ["queued", "running", "succeeded", "failed", "timed-out"] },
        "output": {}, "error": { "type": ["object", "null"] }, "attempt": { "type": "integer" },
        "max_attempts": { "type": "integer" }, "queued_ms": { "type": "integer" },
        "started_ms": { "type": ["integer", "null"] }, "finished_ms": { "type": ["integer", "null"] },
        "item": { "type": ["array", "null"], "items": string } } });
    let bad = ("400", "Bad query (`bad-query`)");
    let unknown = ("404", "No such execution (`unknown-execution`)");
    let records = json!({ "type": "array", "items": record });
    let mut list = operation(
        "list_executions".into(),
        "Execution records, newest first".into(),
        "host",
        ("200", json_response("Records", records)),
        &[bad],
    );
    list["parameters"] = query_params(&[
        ("app", string.clone()),
        ("function", string.clone()),
        ("trigger", string.clone()),
        ("status", json!({ "enum": ["queued", "running", "succeeded", "failed", "timed-out"] })),
        ("before", string.clone()),
        ("limit", json!({ "type": "integer", "minimum": 0 })),
    ]);
    paths.insert("/v1/executions".into(), json!({ "get": list }));
    let mut show = operation(
        "show_execution".into(),
        "One execution record".into(),
        "host",
        ("200", json_response("The record", record)),
        &[bad, unknown],
    );
    show["parameters"] = query_params(&[(
        "wait",
        json!({ "type": "string", "description": "Wait up to this long (e.g. `10s`, at most 5 minutes) for it to finish" }),
    )]);
    paths.insert("/v1/executions/{id}".into(), json!({ "parameters": path_params(&["id"]), "get": show }));
    let text = (
        "200",
        json!({ "description": "The logs of every attempt, or (followed) Server-Sent Events", "content": {
        "text/plain": { "schema": { "type": "string" } }, "text/event-stream": { "schema": { "type": "string" } } } }),
    );
    let mut logs =
        operation("execution_logs".into(), "What an execution printed".into(), "host", text, &[bad, unknown]);
    logs["parameters"] = query_params(&[("follow", json!({ "type": "boolean" }))]);
    paths.insert("/v1/executions/{id}/logs".into(), json!({ "parameters": path_params(&["id"]), "get": logs }));
}
