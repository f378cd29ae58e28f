//! `deploy/wearbridge.example.toml` loads as is and documents every configuration key.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use wearbridge::config::{LoadOptions, Settings, load};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/wearbridge.example.toml");

#[test]
fn example_loads_as_is() {
    let loaded = load(&LoadOptions { file: Some(PathBuf::from(EXAMPLE)), ..Default::default() }).unwrap();
    let defaults = Settings::default();
    assert_eq!(
        loaded.settings.to_redacted_toml().unwrap(),
        defaults.to_redacted_toml().unwrap(),
        "the example states the defaults"
    );
}

#[test]
fn example_documents_every_key() {
    let known = common::known_config_keys();

    // The example with its commented-out `# key = value` lines switched on.
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let uncommented: String = text
        .lines()
        .map(|line| {
            let t = line.trim_start_matches('#').trim_start();
            let is_key = line.starts_with('#')
                && t.split_once('=').is_some_and(|(k, _)| {
                    !k.trim().is_empty() && k.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            // Commented-out tables (`# [sync.schedule.sleep]  # note`) too.
            let is_table = line.starts_with('#') && t.starts_with("[") && !t.starts_with("[[") && t.contains(']');
            if is_key {
                t.split(" # ").next().unwrap_or(t).to_owned()
            } else if is_table {
                t.split(']').next().map(|h| format!("{h}]")).unwrap_or_default()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut documented = BTreeSet::new();
    common::toml_keys(&toml::from_str(&uncommented).expect("uncommented example is TOML"), "", &mut documented);
    let missing: Vec<_> = known.difference(&documented).collect();
    assert!(missing.is_empty(), "undocumented keys: {missing:?}");
    // And nothing documented is unknown to the program: load it (secret files dropped,
    // since /run/secrets does not exist here and each secret may be given one way only).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.toml");
    let without_files: String =
        uncommented.lines().filter(|l| !l.contains("_file = \"/run/secrets")).collect::<Vec<_>>().join("\n");
    std::fs::write(&path, without_files).unwrap();
    load(&LoadOptions { file: Some(path), ..Default::default() }).expect("every documented key is a real key");
}
