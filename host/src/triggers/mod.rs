//! What starts calls besides a direct typed call: one module per kind of trigger.

pub mod http;
pub mod items;
