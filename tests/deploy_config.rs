//! `deploy/wearbridge.example.toml` loads as is and documents every configuration key.

use std::collections::BTreeSet;
use std::path::PathBuf;

use secrecy::SecretString;
use wearbridge::config::{LoadOptions, Settings, load};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/wearbridge.example.toml");

fn keys(value: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                keys(v, &key, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

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
    // Every key the program knows: the defaults plus every optional key filled in.
    let mut all = Settings::default();
    all.fitbit.client_id = Some("x".into());
    all.fitbit.client_secret = Some(SecretString::from("x"));
    all.fitbit.client_secret_file = Some("x".into());
    all.withings.client_id = Some("x".into());
    all.withings.client_secret = Some(SecretString::from("x"));
    all.withings.client_secret_file = Some("x".into());
    all.streamr.api_key = Some(SecretString::from("x"));
    all.streamr.api_key_file = Some("x".into());
    all.streamr.streams.insert("default".into(), "x".into());
    all.anonymizer.granularity.insert("heart-rate".into(), std::time::Duration::from_secs(60));
    all.anonymizer.weight_top_code_kg = Some(150.0);
    all.anonymizer.message_types = Some(vec!["heart-rate".into()]);
    let mut known = BTreeSet::new();
    keys(&toml::from_str(&all.to_redacted_toml().unwrap()).unwrap(), "", &mut known);

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
            if is_key { t.split(" # ").next().unwrap_or(t).to_owned() } else { line.to_owned() }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut documented = BTreeSet::new();
    keys(&toml::from_str(&uncommented).expect("uncommented example is TOML"), "", &mut documented);
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
