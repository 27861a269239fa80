//! Integration tests over the library and the `host` CLI, with real components built from
//! `examples/` and `tests/guests/`, a real sled store and real bucket folders.

mod browsers;
mod cli;
mod cluster;
mod common;
mod crash;
mod dashboard;
mod deploys;
mod digits;
mod executions;
mod hostile;
mod items;
mod kv;
mod languages;
mod library;
mod messaging;
mod model_api;
mod nn;
mod oci;
mod openapi;
mod outbound;
mod outbound_sdk;
mod properties;
mod public;
mod registry;
mod remote_annotate;
mod remote_map;
mod scopes;
mod server;
mod storage;
mod templates;
mod train_classifier;
mod values;
mod variables;
mod web;
