//! `host token`: what goes into a tokens file (`host serve --tokens FILE`).

use std::io::{Read, Write};

use anyhow::Context as _;

/// Work with the tokens of a tokens file.
#[derive(clap::Subcommand)]
pub enum TokenCommand {
    Hash(Hash),
}

/// Print the SHA-256 (hex) of the token read from stdin, for the `sha256` of a `[[token]]`
/// entry: the file holds only this digest, never the token. Surrounding whitespace is ignored.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  openssl rand -hex 32 > ci.token\n  host token hash < ci.token\n  # tokens.toml (chmod 600):\n  [[token]]\n  name = \"ci\"\n  sha256 = \"<the printed hex>\"\n  scopes = [\"app:counter:invoke\", \"app:counter:read\"]"
)]
pub struct Hash {}

impl TokenCommand {
    /// Run the command, printing to `out`.
    pub fn run(self, out: &mut impl Write) -> anyhow::Result<std::process::ExitCode> {
        match self {
            TokenCommand::Hash(Hash {}) => {
                let mut token = String::new();
                std::io::stdin().read_to_string(&mut token).context("reading the token from stdin")?;
                let token = token.trim();
                super::check_token(token)?;
                writeln!(out, "{}", host::server::scopes::hash_hex(token))?;
                Ok(std::process::ExitCode::SUCCESS)
            }
        }
    }
}
