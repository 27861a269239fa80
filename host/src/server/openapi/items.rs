//! The OpenAPI paths of the datasets' item endpoints, per app and dataset.

use serde_json::{Map, Value, json};

use super::{add, json_response, operation, operation_id, path_params, query_params};
use crate::App;
use crate::server::routes::Route;

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

/// The item endpoints of every dataset `app` grants.
pub(super) fn dataset_paths(app: &App, paths: &mut Map<String, Value>) {
    let name = app.name();
    let string = json!({ "type": "string" });
    let missing = ("404", "No such item (`no-such-item`)");
    let invalid = ("400", "Invalid query, name, folder or metadata (`invalid`, `bad-query`)");
    for dataset in app.manifest().granted(|g| &g.datasets) {
        let args = [name, dataset.as_str()];
        let op = |summary: String, ok: (&str, Value), errors: &[(&str, &str)]| operation(summary, name, ok, errors);
        let page = json!({ "type": "object", "required": ["items"], "properties": {
            "items": { "type": "array", "items": item_schema() }, "cursor": { "type": ["string", "null"] } } });
        let mut list =
            op(format!("List items of dataset `{dataset}`"), ("200", json_response("One page", page)), &[invalid]);
        list["parameters"] = query_params(&[
            ("dir", string.clone()),
            ("mimetype", string.clone()),
            ("cursor", string.clone()),
            ("limit", json!({ "type": "integer", "minimum": 0, "maximum": 4294967295u64 })),
        ]);
        // Links from an upload to the operations on the new item, so that stateful tests reach them.
        let mut links = Map::new();
        for route in
            [Route::ShowItem, Route::DeleteItem, Route::Download, Route::Metadata, Route::Annotations, Route::Annotate]
        {
            let id = json!({ "id": "$response.body#/id" });
            links.insert(
                route.operation().into(),
                json!({ "operationId": operation_id(route, &args), "parameters": id }),
            );
        }
        let mut created = ("201", json_response("The item, on disk", item_schema()));
        created.1["links"] = Value::Object(links);
        let mut upload = op(
            format!("Upload a file to dataset `{dataset}`"),
            created,
            &[invalid, ("413", "Body too large (`body-too-large`)")],
        );
        upload["parameters"] =
            query_params(&[("dir", string.clone()), ("name", string.clone()), ("metadata", string.clone())]);
        upload["requestBody"] = json!({ "required": true, "content": { "text/plain": { "schema": { "type": "string" } },
            "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } });
        add(paths, Route::ListItems, &args, list);
        add(paths, Route::Upload, &args, upload);

        let item = ("200", json_response("The item", item_schema()));
        let show = op(format!("One item of dataset `{dataset}`"), item.clone(), &[missing]);
        let remove =
            op(format!("Delete an item of dataset `{dataset}`"), ("204", json!({ "description": "Gone" })), &[missing]);
        add(paths, Route::ShowItem, &args, show);
        add(paths, Route::DeleteItem, &args, remove)["parameters"] = path_params(&["id"]);
        let bytes = (
            "200",
            json!({ "description": "The bytes, with the item's mimetype", "content": { "*/*": { "schema": {} } } }),
        );
        let download = op(format!("The bytes of an item of dataset `{dataset}`"), bytes, &[missing]);
        add(paths, Route::Download, &args, download)["parameters"] = path_params(&["id"]);
        let mut metadata =
            op(format!("Replace the metadata of an item of dataset `{dataset}`"), item, &[missing, invalid]);
        metadata["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": { "type": "object" } } } });
        add(paths, Route::Metadata, &args, metadata)["parameters"] = path_params(&["id"]);

        let mut annotation = annotation_input_schema();
        annotation["properties"]["id"] = string.clone();
        annotation["properties"]["created-ms"] = json!({ "type": "integer" });
        let annotations = json!({ "type": "array", "items": annotation });
        let list = op(
            format!("Annotations of an item of dataset `{dataset}`"),
            ("200", json_response("Annotations", annotations.clone())),
            &[missing],
        );
        let mut annotate = op(
            format!("Add annotations to an item of dataset `{dataset}`"),
            ("201", json_response("The added annotations", annotations)),
            &[missing, ("400", "Not an array of annotations (`bad-json`, `invalid`)")],
        );
        annotate["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": {
            "type": "array", "items": annotation_input_schema() } } } });
        add(paths, Route::Annotations, &args, list);
        add(paths, Route::Annotate, &args, annotate)["parameters"] = path_params(&["id"]);
        let delete = op(
            format!("Delete an annotation of an item of dataset `{dataset}`"),
            ("204", json!({ "description": "Gone" })),
            &[missing],
        );
        add(paths, Route::Unannotate, &args, delete)["parameters"] = path_params(&["id", "annotation"]);
    }
}
