//! Storage libraries: plain data stores with their own error types, each behind an async backend
//! trait shaped for a networked store. The first implementation of each is embedded (sled and
//! local folders); the WIT adapters (`capabilities`) and the operator API sit above.

pub mod blobs;
pub mod kv;
