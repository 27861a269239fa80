//! Example guest: greets a person. Exports `greet` and `noop`.

wit_bindgen::generate!({ world: "hello" });

/// The component's exports.
struct Hello;

impl Guest for Hello {
    fn greet(who: Person) -> Result<String, String> {
        if who.name.is_empty() {
            return Err("name must not be empty".into());
        }
        let name = who.nickname.as_deref().unwrap_or(&who.name);
        Ok(format!("Hello, {name}! You are {}.", who.age))
    }

    fn noop() {}
}

export!(Hello);
