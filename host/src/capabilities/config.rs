//! `wasi:config/store`: the function's `config` table from the manifest, read-only.

use std::collections::BTreeMap;

use wasmtime::component::{HasData, Linker};

use super::wasi::config::store::{self, Error, Host};
use super::{CallParts, Capability, Parts, Setup};

/// A function's `config` table (built when it has one; without it every key is absent).
pub struct Config(BTreeMap<String, String>);

impl Capability for Config {
    fn build(setup: &Setup<'_>) -> Option<Config> {
        (!setup.config.is_empty()).then(|| Config(setup.config.clone()))
    }

    fn add_to_linker<T: CallParts>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        store::add_to_linker::<T, Config>(linker, |state| state.parts().into())
    }
}

impl HasData for Config {
    type Data<'a> = View<'a>;
}

/// What the `wasi:config` host calls of one call read.
pub struct View<'a>(Option<&'a Config>);

impl<'a> From<Parts<'a>> for View<'a> {
    fn from(parts: Parts<'a>) -> View<'a> {
        View(parts.contexts.get())
    }
}

impl View<'_> {
    fn values(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.into_iter().flat_map(|c| &c.0)
    }
}

impl Host for View<'_> {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, Error>> {
        Ok(Ok(self.0.and_then(|c| c.0.get(&key)).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, Error>> {
        Ok(Ok(self.values().map(|(k, v)| (k.clone(), v.clone())).collect()))
    }
}
