//! `wearbridge check-config`: print the effective configuration, secrets redacted.

use super::Globals;

pub fn main(globals: &Globals) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    if let Some(file) = &loaded.file {
        eprintln!("# configuration file: {}", file.display());
    }
    print!("{}", loaded.settings.to_redacted_toml()?);
    Ok(())
}
