//! Loading: layer the sources, remember which source set each key, and turn every
//! failure into an error that names the key and that source.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat, Value, ValueKind};
use secrecy::{ExposeSecret, SecretString};

use super::Settings;

/// The environment prefix: `WEARBRIDGE__SECTION__KEY`.
const ENV_PREFIX: &str = "WEARBRIDGE";
const ENV_SEPARATOR: &str = "__";
/// Keys whose values are lists; in the environment and on the command line they are
/// written comma-separated.
const LIST_KEYS: &[&str] = &["sync.datasets", "push.withings_applis"];
/// Streamr allows at most this many partitions per stream.
const MAX_PARTITIONS: u32 = 100;

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the built-in default"),
            Origin::File(path) => write!(f, "file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(key) => write!(f, "command-line flag --set {key}"),
        }
    }
}

impl Origin {
    /// Where a key was set, for an error: a key nobody set is "not set" (its built-in
    /// default, if it has one, is what was checked).
    fn where_set(&self) -> String {
        match self {
            Origin::Default => "not set".to_owned(),
            other => format!("set in {other}"),
        }
    }
}

/// A configuration problem; each variant names the key and its source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {} does not exist", .0.display())]
    MissingFile(PathBuf),
    #[error("cannot read configuration file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("unknown configuration key `{key}` (set in {origin})")]
    UnknownKey { key: String, origin: Origin },
    #[error("invalid value for `{key}` ({}): {message}", origin.where_set())]
    Invalid { key: String, origin: Origin, message: String },
    #[error("`{key}` and `{key}_file` are both set ({origin}; {file_origin}); set only one")]
    BothSecretForms { key: String, origin: Origin, file_origin: Origin },
    #[error("bad command-line flag --set {0:?}: expected KEY=VALUE")]
    BadFlag(String),
    #[error(
        "demo runs on its built-in configuration against its own simulator; --config and --set do not apply to it (use `wearbridge run` with a configuration)"
    )]
    NotForDemo,
}

/// What to load from.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config PATH`: must exist.
    pub file: Option<PathBuf>,
    /// Used when `file` is `None` and this path exists (`./wearbridge.toml`).
    pub default_file: Option<PathBuf>,
    /// A snapshot of the environment (injectable for tests).
    pub env: Vec<(String, String)>,
    /// `--set KEY=VALUE` flags, highest precedence.
    pub overrides: Vec<String>,
}

impl LoadOptions {
    /// Options for this process: its environment and `./wearbridge.toml` when present.
    pub fn from_process(file: Option<PathBuf>, overrides: Vec<String>) -> Self {
        Self { file, default_file: Some(PathBuf::from("wearbridge.toml")), env: std::env::vars().collect(), overrides }
    }
}

/// Settings plus where each key came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// The configuration file that was read, if any.
    pub file: Option<PathBuf>,
    origins: BTreeMap<String, Origin>,
}

impl Loaded {
    /// Wraps settings built in code (demo, tests): every key is a default.
    pub fn from_settings(settings: Settings) -> Self {
        Self { settings, file: None, origins: BTreeMap::new() }
    }

    /// Which source set `key` (a dotted path, e.g. `sync.interval`).
    pub fn origin(&self, key: &str) -> Origin {
        origin_of(&self.origins, key)
    }

    /// An `Invalid` error for `key`, naming where the key was set.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { key: key.to_owned(), origin: self.origin(key), message: message.into() }
    }
}

/// Loads and validates the configuration.
pub fn load(options: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut origins = BTreeMap::new();
    let mut builder = Config::builder();

    let file = match (&options.file, &options.default_file) {
        (Some(path), _) if !path.exists() => return Err(ConfigError::MissingFile(path.clone())),
        (Some(path), _) => Some(path.clone()),
        (None, Some(path)) if path.exists() => Some(path.clone()),
        _ => None,
    };
    if let Some(path) = &file {
        let source = File::from(path.as_path()).format(FileFormat::Toml).required(true);
        let alone = Config::builder()
            .add_source(source.clone())
            .build()
            .map_err(|e| ConfigError::File { path: path.clone(), message: e.to_string() })?;
        let table = alone
            .try_deserialize::<config::Map<String, Value>>()
            .map_err(|e| ConfigError::File { path: path.clone(), message: e.to_string() })?;
        for key in flatten_keys(&table) {
            origins.insert(key, Origin::File(path.clone()));
        }
        builder = builder.add_source(source);
    }

    let mut env_map = config::Map::new();
    let env_prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}").to_lowercase();
    for (var, value) in &options.env {
        let lower = var.to_lowercase();
        if let Some(rest) = lower.strip_prefix(&env_prefix) {
            origins.insert(rest.replace(ENV_SEPARATOR, "."), Origin::Env(var.clone()));
            env_map.insert(var.clone(), value.clone());
        }
    }
    let mut environment = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator(ENV_SEPARATOR)
        .separator(ENV_SEPARATOR)
        .try_parsing(true)
        .list_separator(",");
    for key in LIST_KEYS {
        environment = environment.with_list_parse_key(key);
    }
    builder = builder.add_source(environment.source(Some(env_map)));

    for flag in &options.overrides {
        let (key, value) = flag
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| ConfigError::BadFlag(flag.clone()))?;
        let key = key.trim().to_owned();
        let value: ValueKind = if LIST_KEYS.contains(&key.as_str()) {
            ValueKind::Array(value.split(',').map(|s| Value::from(s.trim())).collect())
        } else {
            ValueKind::String(value.to_owned())
        };
        builder = builder.set_override(key.as_str(), value).map_err(|e| ConfigError::Invalid {
            key: key.clone(),
            origin: Origin::Flag(key.clone()),
            message: e.to_string(),
        })?;
        origins.insert(key.clone(), Origin::Flag(key));
    }

    let merged = builder.build().map_err(|e| match &file {
        Some(path) => ConfigError::File { path: path.clone(), message: e.to_string() },
        None => ConfigError::Invalid { key: "?".into(), origin: Origin::Default, message: e.to_string() },
    })?;

    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let parsed = {
        let tracked = serde_path_to_error::Deserializer::new(merged, &mut track);
        serde_ignored::deserialize(tracked, |path| unknown.push(path.to_string()))
    };
    if let Some(key) = unknown.into_iter().next() {
        let origin = origin_of(&origins, &key);
        return Err(ConfigError::UnknownKey { key, origin });
    }
    let settings: Settings = parsed.map_err(|e: config::ConfigError| {
        let key = track.path().to_string();
        let origin = origin_of(&origins, &key);
        ConfigError::Invalid { key, origin, message: clean_message(&e) }
    })?;

    let mut loaded = Loaded { settings, file, origins };
    resolve_secrets(&mut loaded)?;
    validate(&loaded)?;
    validate_push(&loaded)?;
    let push = &loaded.settings.push;
    loaded.settings.sync.push_poll = push.enabled.then_some(push.poll_interval);
    Ok(loaded)
}

/// The `config` crate appends its own key/origin hints; ours are more precise.
fn clean_message(e: &config::ConfigError) -> String {
    let text = e.to_string();
    match text.find(" for key `") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn flatten_keys(table: &config::Map<String, Value>) -> Vec<String> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match &value.kind {
            ValueKind::Table(t) if !t.is_empty() => {
                for (k, v) in t {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut out = Vec::new();
    for (k, v) in table {
        walk(k, v, &mut out);
    }
    out
}

fn origin_of(origins: &BTreeMap<String, Origin>, key: &str) -> Origin {
    let key = match key.find('[') {
        Some(i) => &key[..i],
        None => key,
    };
    if let Some(origin) = origins.get(key) {
        return origin.clone();
    }
    // A section (`sync`) or a prefix: the highest-precedence source that set anything
    // under it.
    let prefix = format!("{key}.");
    origins
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(_, o)| o.clone())
        .max_by_key(|o| match o {
            Origin::Default => 0,
            Origin::File(_) => 1,
            Origin::Env(_) => 2,
            Origin::Flag(_) => 3,
        })
        .unwrap_or(Origin::Default)
}

/// `<key>_file` → read the secret from that file (trimmed).
fn resolve_secrets(loaded: &mut Loaded) -> Result<(), ConfigError> {
    let origins = loaded.origins.clone();
    let s = &mut loaded.settings;
    let slots: [(&str, &mut Option<SecretString>, &Option<PathBuf>); 5] = [
        ("fitbit.client_secret", &mut s.fitbit.client_secret, &s.fitbit.client_secret_file),
        ("withings.client_secret", &mut s.withings.client_secret, &s.withings.client_secret_file),
        ("streamr.api_key", &mut s.streamr.api_key, &s.streamr.api_key_file),
        ("server.enroll_token", &mut s.server.enroll_token, &s.server.enroll_token_file),
        ("push.google_authorization", &mut s.push.google_authorization, &s.push.google_authorization_file),
    ];
    if let Some(path) = &s.store.url_file {
        // `store.url` always has a value (the SQLite default): "both set" means someone set it.
        if origin_of(&origins, "store.url") != Origin::Default {
            return Err(ConfigError::BothSecretForms {
                key: "store.url".into(),
                origin: origin_of(&origins, "store.url"),
                file_origin: origin_of(&origins, "store.url_file"),
            });
        }
        let url = read_secret_file(path).map_err(|message| ConfigError::Invalid {
            key: "store.url_file".into(),
            origin: origin_of(&origins, "store.url_file"),
            message,
        })?;
        s.store.url = url.expose_secret().to_owned();
    }
    for (key, value, file) in slots {
        let Some(path) = file else { continue };
        let file_key = format!("{key}_file");
        if value.is_some() {
            return Err(ConfigError::BothSecretForms {
                key: key.to_owned(),
                origin: origin_of(&origins, key),
                file_origin: origin_of(&origins, &file_key),
            });
        }
        *value = Some(read_secret_file(path).map_err(|message| ConfigError::Invalid {
            key: file_key.clone(),
            origin: origin_of(&origins, &file_key),
            message,
        })?);
    }
    Ok(())
}

/// Reads a secret from a file, trimmed; the error never contains the file's content.
pub(crate) fn read_secret_file(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

const DAY: u64 = 86_400;

/// `[push]`: what a notification can make due, and the secret Google's must carry.
fn validate_push(loaded: &Loaded) -> Result<(), ConfigError> {
    let p = &loaded.settings.push;
    if p.delay > Duration::from_secs(600) {
        return Err(loaded.invalid("push.delay", "expected 0s to 10m"));
    }
    if !(Duration::from_secs(60)..=Duration::from_secs(7 * DAY)).contains(&p.poll_interval) {
        return Err(loaded.invalid("push.poll_interval", "expected 1m to 7d"));
    }
    if let Some(bad) = p.withings_applis.iter().find(|a| super::PushSettings::withings_dataset(**a).is_none()) {
        return Err(loaded.invalid(
            "push.withings_applis",
            format!("appli {bad} is not one wearbridge acts on; expected some of 1, 4, 16, 44, 50, 51"),
        ));
    }
    if p.enabled && p.google_authorization.is_none() && loaded.settings.fitbit.client_id.is_some() {
        return Err(loaded.invalid(
            "push.google_authorization",
            "not set: with push.enabled and a [fitbit] client, Google Health notifications must carry a secret (the subscriber's Authorization value)",
        ));
    }
    Ok(())
}

/// `sync.interval`, `sync.lookback` and every `[sync.schedule.<dataset>]`.
fn validate_schedule(loaded: &Loaded) -> Result<(), ConfigError> {
    let s = &loaded.settings.sync;
    let interval = |key: &str, d: Option<Duration>| match d {
        Some(d) if !(Duration::from_secs(1)..=Duration::from_secs(7 * DAY)).contains(&d) => {
            Err(loaded.invalid(key, "expected 1s to 7d"))
        }
        _ => Ok(()),
    };
    let lookback = |key: &str, d: Option<Duration>| match d {
        Some(d) if d > Duration::from_secs(90 * DAY) => Err(loaded.invalid(key, "expected 0s to 90d")),
        _ => Ok(()),
    };
    interval("sync.interval", s.interval)?;
    lookback("sync.lookback", s.lookback)?;
    for (name, own) in &s.schedule {
        let key = format!("sync.schedule.{name}");
        if !super::Dataset::ALL.iter().any(|d| d.as_str() == name) {
            let names: Vec<&str> = super::Dataset::ALL.iter().map(|d| d.as_str()).collect();
            return Err(loaded.invalid(&key, format!("not a dataset (expected one of {})", names.join(", "))));
        }
        if own.interval.is_some() && own.at.is_some() {
            return Err(
                loaded.invalid(&format!("{key}.at"), format!("set either {key}.interval or {key}.at, not both"))
            );
        }
        interval(&format!("{key}.interval"), own.interval)?;
        lookback(&format!("{key}.lookback"), own.lookback)?;
    }
    Ok(())
}

/// Numbers and durations within what the code can compute with and what makes sense;
/// each error names the key and its allowed range.
fn validate_ranges(loaded: &Loaded) -> Result<(), ConfigError> {
    let s = &loaded.settings;
    let durations: [(&str, Duration, Duration, Duration, &str); 5] = [
        ("sync.jitter", s.sync.jitter, Duration::ZERO, Duration::from_secs(DAY), "0s to 1d"),
        ("sync.lease", s.sync.lease, Duration::from_secs(1), Duration::from_secs(DAY), "1s to 1d"),
        ("sync.shutdown_grace", s.sync.shutdown_grace, Duration::ZERO, Duration::from_secs(3600), "0s to 1h"),
        (
            "streamr.confirm_timeout",
            s.streamr.confirm_timeout,
            Duration::from_millis(1),
            Duration::from_secs(3600),
            "a positive duration up to 1h",
        ),
        (
            "sync.start",
            match s.sync.start {
                super::SyncStart::Ago(d) => d,
                super::SyncStart::Date(_) => Duration::ZERO,
            },
            Duration::ZERO,
            Duration::from_secs(36_500 * DAY),
            "a date, or up to 36500d back",
        ),
    ];
    for (key, value, low, high, range) in durations {
        if !(low..=high).contains(&value) {
            return Err(loaded.invalid(key, format!("expected {range}")));
        }
    }
    validate_schedule(loaded)?;
    if let super::SyncStart::Date(d) = s.sync.start
        && !(chrono::NaiveDate::from_ymd_opt(2000, 1, 1)..=chrono::NaiveDate::from_ymd_opt(2100, 1, 1))
            .contains(&Some(d))
    {
        return Err(
            loaded.invalid("sync.start", "expected a date from 2000-01-01 to 2100-01-01, or a duration back from now")
        );
    }
    let counts: [(&str, u64, u64, u64); 8] = [
        ("sync.max_response_bytes", s.sync.max_response_bytes, 1 << 16, 1 << 30),
        ("sync.outbox_high_water", s.sync.outbox_high_water, 100, 1_000_000_000),
        ("streamr.messages_per_second", s.streamr.messages_per_second.into(), 1, 1_000_000),
        ("streamr.stream_messages_per_second", s.streamr.stream_messages_per_second.into(), 1, 1_000_000),
        ("streamr.burst", s.streamr.burst.into(), 1, 1_000_000),
        ("fitbit.requests_per_minute", s.fitbit.requests_per_minute.into(), 1, 1_000_000),
        ("fitbit.project_requests_per_minute", s.fitbit.project_requests_per_minute.into(), 1, 100_000_000),
        ("withings.requests_per_minute", s.withings.requests_per_minute.into(), 1, 1_000_000),
    ];
    for (key, value, low, high) in counts {
        if !(low..=high).contains(&value) {
            return Err(loaded.invalid(key, format!("expected {low} to {high}")));
        }
    }
    Ok(())
}

fn validate(loaded: &Loaded) -> Result<(), ConfigError> {
    let s = &loaded.settings;
    let store_ok = if s.store.url.starts_with("sqlite://") {
        s.store.url.len() > "sqlite://".len()
    } else if s.store.url.starts_with("postgres://") || s.store.url.starts_with("postgresql://") {
        url::Url::parse(&s.store.url).is_ok_and(|u| u.host_str().is_some())
    } else {
        false
    };
    if !store_ok {
        const EXPECTED: &str = "sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE";
        return Err(match &s.store.url_file {
            // The file is a secret: say what is wrong, never what it holds.
            Some(path) => loaded.invalid("store.url_file", format!("{} does not hold {EXPECTED}", path.display())),
            None => loaded.invalid(
                "store.url",
                format!("expected {EXPECTED}, got {:?}", super::url_without_password(&s.store.url)),
            ),
        });
    }
    let urls: [(&str, &str); 8] = [
        ("fitbit.api_base_url", &s.fitbit.api_base_url),
        ("fitbit.token_url", &s.fitbit.token_url),
        ("fitbit.auth_url", &s.fitbit.auth_url),
        ("fitbit.revoke_url", &s.fitbit.revoke_url),
        ("oauth.redirect_uri", &s.oauth.redirect_uri),
        ("server.public_url", &s.server.public_url),
        ("withings.api_base_url", &s.withings.api_base_url),
        ("withings.auth_url", &s.withings.auth_url),
    ];
    for (key, value) in urls {
        match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(loaded.invalid(key, format!("expected an http(s) URL, got {value:?}"))),
        }
    }
    match url::Url::parse(&s.streamr.url) {
        Ok(u) if matches!(u.scheme(), "ws" | "wss" | "http" | "https" | "file") => {}
        _ => {
            return Err(loaded.invalid(
                "streamr.url",
                format!(
                    "expected the node's base URL such as ws://127.0.0.1:7170 (or file:///dir for files), got {:?}",
                    s.streamr.url
                ),
            ));
        }
    }
    if !(1..=10_000).contains(&s.fitbit.page_size) {
        return Err(loaded.invalid("fitbit.page_size", "expected 1 to 10000 data points per page"));
    }
    if s.streamr.file_max_bytes < 4096 {
        return Err(loaded.invalid("streamr.file_max_bytes", "expected at least 4096 bytes"));
    }
    if !(1..=MAX_PARTITIONS).contains(&s.streamr.partitions) {
        return Err(loaded.invalid("streamr.partitions", format!("a stream has 1 to {MAX_PARTITIONS} partitions")));
    }
    for (stream, n) in &s.streamr.stream_partitions {
        if !(1..=MAX_PARTITIONS).contains(n) {
            return Err(loaded.invalid(
                &format!("streamr.stream_partitions.{stream}"),
                format!("a stream has 1 to {MAX_PARTITIONS} partitions"),
            ));
        }
    }
    if s.sync.datasets.is_empty() {
        return Err(loaded.invalid("sync.datasets", "at least one dataset is needed"));
    }
    if anonymizer::PseudonymKey::new(s.anonymizer.epoch.clone(), [0; 32]).is_err() {
        return Err(loaded.invalid("anonymizer.epoch", "expected 1 to 32 characters of letters, digits, '-' or '_'"));
    }
    validate_ranges(loaded)?;
    let a = &s.anonymizer;
    for (key, step) in &a.granularity {
        if !anonymizer::Policy::is_known_type(key) {
            return Err(loaded
                .invalid(&format!("anonymizer.granularity.{key}"), "not a message type (see `wearbridge schemas`)"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(DAY)).contains(step) {
            return Err(loaded.invalid(&format!("anonymizer.granularity.{key}"), "expected 1s to 1d, such as \"1m\""));
        }
    }
    for t in a.message_types.iter().flatten() {
        if !anonymizer::Policy::is_known_type(t) {
            return Err(loaded.invalid(
                "anonymizer.message_types",
                format!("{t:?} is not a message type (see `wearbridge schemas`)"),
            ));
        }
    }
    for (key, series) in &a.series {
        if !super::SERIES_TYPES.contains(&key.as_str()) {
            return Err(loaded.invalid(
                &format!("anonymizer.series.{key}"),
                format!("only {} can be published as series", super::SERIES_TYPES.join(", ")),
            ));
        }
        let secs = series.window.as_secs();
        if !(60..=DAY).contains(&secs) || DAY % secs != 0 || series.window.subsec_nanos() != 0 {
            return Err(loaded.invalid(
                &format!("anonymizer.series.{key}.window"),
                "expected whole seconds from 1m to 1d that divide a day (such as 15m, 1h, 6h)",
            ));
        }
        let step = a.granularity.get("heart-rate-series").map_or(60, Duration::as_secs);
        if step == 0 || secs % step != 0 {
            return Err(loaded.invalid(
                &format!("anonymizer.series.{key}.window"),
                "must be a whole number of steps (anonymizer.granularity.heart-rate-series)",
            ));
        }
    }
    if a.date_shift_days > 3650 {
        return Err(loaded.invalid("anonymizer.date_shift_days", "at most 3650 days"));
    }
    if !(a.mass_step_kg.is_finite() && a.mass_step_kg > 0.0 && a.mass_step_kg <= 10.0) {
        return Err(loaded.invalid("anonymizer.mass_step_kg", "expected a step between 0 and 10 kg, such as 0.1"));
    }
    if a.weight_top_code_kg.is_some_and(|k| !(k.is_finite() && k > 0.0)) {
        return Err(loaded.invalid("anonymizer.weight_top_code_kg", "expected a positive weight in kg"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
