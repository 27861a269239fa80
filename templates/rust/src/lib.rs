//! The function `{{name}}`: a counter in a key-value store and a configured greeting, through
//! `guest-sdk`. The exports are declared in `wit/world.wit`.

use guest_sdk::config;
use guest_sdk::kv::Store;

wit_bindgen::generate!({ world: "function" });

/// The component's exports.
struct Function;

impl Guest for Function {
    fn count(key: String, by: i64) -> Result<i64, String> {
        let store = Store::open("default").map_err(|e| e.to_string())?;
        store.increment(&key, by).map_err(|e| e.to_string())
    }

    fn greet(name: String) -> Result<String, String> {
        let greeting = config::get("greeting").map_err(|e| e.to_string())?;
        Ok(format!("{}, {name}!", greeting.as_deref().unwrap_or("Hello")))
    }
}

export!(Function);
