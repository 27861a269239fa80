//! `wasi:config/store`: the function's `config` table from the manifest, read-only.

use super::wasi::config::store::{Error, Host};
use crate::call::CallState;

impl Host for CallState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, Error>> {
        Ok(Ok(self.caps.config.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, Error>> {
        Ok(Ok(self.caps.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
    }
}
