//! The function `{{name}}`: run by the item trigger in host.toml on every item created in the
//! dataset `inbox`, it labels the item with its mimetype's type as a `classification` annotation.

use guest_sdk::items::{AnnotationInput, Dataset, Geometry};

wit_bindgen::generate!({
    world: "app:function/function",
    // The host's WIT first, so that `use host:api/items` in ours resolves.
    path: ["{{repo}}/wit", "wit"],
    // The same Rust types as `guest_sdk::items`, so items pass straight to the SDK.
    with: { "host:api/items@0.1.0": guest_sdk::bindings::host::api::items },
});

/// The component's export.
struct Function;

impl Guest for Function {
    fn annotate(item: Item) -> Result<String, String> {
        let label = item.mimetype.split('/').next().unwrap_or_default().to_string();
        let dataset = Dataset::open(&item.dataset).map_err(|e| format!("opening dataset {:?}: {e}", item.dataset))?;
        let annotation = AnnotationInput {
            geometry: Geometry::Classification,
            label: label.clone(),
            confidence: None,
            model: Some("{{name}}".into()),
        };
        dataset.add_annotations(&item.id, &[annotation]).map_err(|e| format!("annotating item {}: {e}", item.id))?;
        println!("item {} ({}): {label}", item.id, item.mimetype);
        Ok(label)
    }
}

export!(Function);
