//! Storage libraries: plain libraries with their own error types, each behind a backend trait
//! whose first implementation is the embedded sled store. They import only the base layer and
//! one another, never the call machinery.

pub mod executions;
