//! `host inspect`: a component's callable exports.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use super::Context;

/// List a component's callable exports with their WIT signatures and JSON Schemas.
#[derive(clap::Args)]
pub struct Inspect {
    /// The component (`.wasm`).
    component: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

impl Inspect {
    /// Run the command: the exports on `out`.
    pub fn run(self, context: &Context, out: &mut impl Write) -> anyhow::Result<ExitCode> {
        let exports = host::inspect(&self.component, &context.cache)?;
        if self.json {
            let listed: Vec<Value> = exports.iter().map(|e| e.describe(&e.name)).collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&listed)?)?;
            return Ok(ExitCode::SUCCESS);
        }
        writeln!(out, "{} callable export(s) in {}", exports.len(), self.component.display())?;
        for e in &exports {
            writeln!(out, "\n{}: {}", e.name, e.signature())?;
            writeln!(out, "  params: {}", e.params_schema())?;
            writeln!(out, "  result: {}", e.result_schema())?;
            if let Some(error) = e.error_schema() {
                writeln!(out, "  error:  {error}")?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
