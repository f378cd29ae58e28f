//! `wearbridge check-config`: check the configuration as the command it is meant for
//! would (`run` by default), then print it with secrets redacted.

use super::Globals;
use crate::app;

/// What the configuration is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Purpose {
    /// `run`: a source with credentials, a stream, and what publishing needs.
    Run,
    /// `run --dry-run`: a source with credentials and a stream; nothing is published.
    DryRun,
    /// Only that the file, environment and flags are well formed (for `users`, `connect`).
    Syntax,
}

pub fn main(globals: &Globals, purpose: Purpose) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    if purpose != Purpose::Syntax {
        app::require_for_run(&loaded)?;
    }
    if purpose == Purpose::Run {
        app::require_for_publishing(&loaded)?;
    }
    if let Some(file) = &loaded.file {
        eprintln!("# configuration file: {}", file.display());
    }
    print!("{}", loaded.settings.to_redacted_toml()?);
    Ok(())
}
