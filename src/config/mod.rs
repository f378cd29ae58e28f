//! Configuration: typed settings, loaded from defaults < TOML file < environment <
//! command-line `--set`, with every error naming the key and where it was set.
//!
//! Secrets are `SecretString`s (never printed by `Debug`) and may be given as
//! `<key>_file`; `check-config` prints them as `"<redacted>"`.

mod duration;
mod load;
mod push;
mod schedule;

pub use duration::{SyncStart, parse_duration};
pub use load::{ConfigError, LoadOptions, Loaded, Origin, load};
pub use push::{COVERED as PUSH_COVERED, PushSettings};
pub use schedule::{DatasetSchedule, Plan, When};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

/// The effective configuration of one process.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Settings {
    pub store: StoreSettings,
    pub fitbit: FitbitSettings,
    pub withings: WithingsSettings,
    pub sync: SyncSettings,
    pub anonymizer: AnonymizerSettings,
    pub streamr: StreamrSettings,
    pub server: ServerSettings,
    pub oauth: OAuthSettings,
    pub push: PushSettings,
    pub capture: CaptureSettings,
}

/// Local capture (Wi-Fi scales posting to wearbridge directly).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CaptureSettings {
    /// Where scales post (their vendor's host name pointed here; they speak plain HTTP on
    /// port 80, e.g. `"0.0.0.0:80"`). A listener of its own, never shared with `/metrics`
    /// or the consent pages. Unset: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

/// Where providers send people back after they consent (`wearbridge connect`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct OAuthSettings {
    /// A loopback URL the `connect` command listens on; register it with each provider.
    pub redirect_uri: String,
}

impl Default for OAuthSettings {
    fn default() -> Self {
        Self { redirect_uri: "http://127.0.0.1:8765/oauth/callback".into() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct StoreSettings {
    /// `sqlite://PATH` (embedded default) or `postgres://USER:PASSWORD@HOST/DB` for
    /// several workers; the password is never printed.
    #[serde(serialize_with = "redact_url")]
    pub url: String,
    /// A file holding the whole `url` (a mounted secret), so the password is in no
    /// environment variable and no shell is needed to read it; replaces `url`.
    pub url_file: Option<PathBuf>,
    /// 64 hex characters: the AEAD key that encrypts tokens at rest. Created if absent.
    pub key_file: PathBuf,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self { url: "sqlite://wearbridge.db".into(), url_file: None, key_file: "wearbridge-store.key".into() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct FitbitSettings {
    pub client_id: Option<String>,
    #[serde(serialize_with = "redact", skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Google Health API base URL (paths `v4/users/me/...` are appended).
    pub api_base_url: String,
    pub token_url: String,
    pub auth_url: String,
    /// Google's token revocation endpoint (`users remove` ends the grant there).
    pub revoke_url: String,
    /// Requests per minute per account (Google's per-user quota is 300).
    pub requests_per_minute: u32,
    /// Requests per minute for the whole application (Google's per-project quota).
    pub project_requests_per_minute: u32,
    /// Data points asked for per page (1 to 10000, Google's maximum; sleep pages hold at
    /// most 25 sessions whatever this says).
    pub page_size: u32,
}

impl Default for FitbitSettings {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            api_base_url: "https://health.googleapis.com".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            auth_url: "https://accounts.google.com/o/oauth2/v2/auth".into(),
            revoke_url: "https://oauth2.googleapis.com/revoke".into(),
            requests_per_minute: 300,
            project_requests_per_minute: 120_000,
            page_size: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct WithingsSettings {
    pub client_id: Option<String>,
    #[serde(serialize_with = "redact", skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    pub api_base_url: String,
    pub auth_url: String,
    /// Requests per minute for the whole application (Withings allows 120).
    pub requests_per_minute: u32,
}

impl Default for WithingsSettings {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            api_base_url: "https://wbsapi.withings.net".into(),
            auth_url: "https://account.withings.com/oauth2_user/authorize2".into(),
            requests_per_minute: 120,
        }
    }
}

/// The data sets a source can pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    Devices,
    Activity,
    HeartRate,
    Sleep,
    Body,
}

impl Dataset {
    pub const ALL: [Dataset; 5] =
        [Dataset::Devices, Dataset::Activity, Dataset::HeartRate, Dataset::Sleep, Dataset::Body];

    /// The name used in configuration and in the store's cursor table.
    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Devices => "devices",
            Dataset::Activity => "activity",
            Dataset::HeartRate => "heart_rate",
            Dataset::Sleep => "sleep",
            Dataset::Body => "body",
        }
    }
}

/// Deserialises a closed set of names with a message that lists them.
fn one_of<'de, D: serde::Deserializer<'de>, T: Copy>(d: D, options: &[(&str, T)]) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    options.iter().find(|(name, _)| *name == text.trim()).map(|(_, v)| *v).ok_or_else(|| {
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        serde::de::Error::custom(format!("expected one of {}, got {text:?}", names.join(", ")))
    })
}

impl<'de> Deserialize<'de> for Dataset {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let options = Dataset::ALL.map(|d| (d.as_str(), d));
        one_of(d, &options)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SyncSettings {
    /// Where a first backfill starts: a date (`2026-11-01`) or a duration back (`7d`).
    pub start: SyncStart,
    /// When set, every dataset without its own `[sync.schedule.<dataset>]` interval or
    /// time is read at this interval (unset: each dataset's built-in schedule).
    #[serde(with = "duration::serde_text_opt", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Up to this much is added at random to each interval, so accounts spread out.
    #[serde(with = "duration::serde_text")]
    pub jitter: Duration,
    /// How long a worker's claim on an account or outbox batch lasts; a killed worker's
    /// work is taken over by another after this.
    #[serde(with = "duration::serde_text")]
    pub lease: Duration,
    /// On SIGTERM/SIGINT: stop claiming work and give in-flight work this long to finish.
    #[serde(with = "duration::serde_text")]
    pub shutdown_grace: Duration,
    /// When set, how far behind the cursor every dataset without its own
    /// `[sync.schedule.<dataset>] lookback` re-reads (unset: each dataset's own).
    #[serde(with = "duration::serde_text_opt", skip_serializing_if = "Option::is_none")]
    pub lookback: Option<Duration>,
    pub datasets: Vec<Dataset>,
    /// Per-dataset schedules by dataset name (see [`SyncSettings::plan`]).
    pub schedule: BTreeMap<String, DatasetSchedule>,
    /// The largest upstream answer read (bytes); a larger one fails that call.
    pub max_response_bytes: u64,
    /// Pending outbox messages above which the daemon stops claiming accounts until the
    /// drain has brought the outbox below nine tenths of it (disk is finite; a node that
    /// is down for days must not fill it).
    pub outbox_high_water: u64,
    /// With `[push]` on: `push.poll_interval`, the least interval of the covered datasets
    /// under `sync.interval`. Set by the loader, not a key of its own.
    #[serde(skip)]
    pub push_poll: Option<Duration>,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            start: SyncStart::Ago(Duration::from_secs(7 * 86_400)),
            interval: None,
            jitter: Duration::from_secs(60),
            lease: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
            lookback: None,
            datasets: Dataset::ALL.to_vec(),
            schedule: BTreeMap::new(),
            max_response_bytes: crate::http::DEFAULT_MAX_BODY,
            outbox_high_water: 1_000_000,
            push_poll: None,
        }
    }
}

impl SyncSettings {
    /// When `dataset` is read and how far back: `[sync.schedule.<dataset>]`, else
    /// `sync.interval` / `sync.lookback` when set, else the built-in schedule.
    pub fn plan(&self, dataset: Dataset) -> Plan {
        let own = self.schedule.get(dataset.as_str());
        let default = schedule::default_plan(dataset);
        let when = match (own.and_then(|o| o.at), own.and_then(|o| o.interval)) {
            (Some(at), _) => When::DailyAt(at),
            (None, Some(every)) => When::Every(every),
            // Push notifications bring changes sooner: polling a covered dataset is the
            // safety net, and need not run more often than `push.poll_interval`.
            (None, None) => match (self.interval, self.push_poll) {
                (Some(every), Some(poll)) if PUSH_COVERED.contains(&dataset) => When::Every(every.max(poll)),
                (Some(every), _) => When::Every(every),
                (None, _) => default.when,
            },
        };
        let lookback = own.and_then(|o| o.lookback).or(self.lookback).unwrap_or(default.lookback);
        Plan { when, lookback }
    }

    /// The shortest interval of the datasets synced (a day when all are daily): how
    /// often a loop of whole passes runs, and what the daemon's polling scales with.
    pub fn shortest_interval(&self) -> Duration {
        let day = Duration::from_secs(86_400);
        self.datasets
            .iter()
            .filter_map(|d| match self.plan(*d).when {
                When::Every(every) => Some(every),
                When::DailyAt(_) => None,
            })
            .min()
            .unwrap_or(day)
            .min(day)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AnonymizerSettings {
    /// 64 hex characters: the pseudonym HMAC key. Created if absent (and logged loudly).
    pub key_file: PathBuf,
    /// Public id of the key epoch, published with every message.
    pub epoch: String,
    /// Message type → time granularity of its published times (e.g. `heart-rate = "5m"`).
    #[serde(with = "duration::serde_text_map")]
    pub granularity: BTreeMap<String, Duration>,
    /// Shift every subject's dates by a secret constant of 0 to this many days.
    pub date_shift_days: u32,
    /// Body weight and masses are rounded to multiples of this (kg).
    pub mass_step_kg: f64,
    /// Body weights above this are published as this (top-coding); unset: off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_top_code_kg: Option<f64>,
    /// Publish only these message types; unset: every type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_types: Option<Vec<String>>,
    /// High-frequency sample types and how they are published (`[anonymizer.series]`):
    /// today `heart-rate`.
    pub series: BTreeMap<String, SeriesSettings>,
    /// One subject per person across their providers (true), so buyers can join a
    /// person's data; false keeps one subject per provider account (no linking).
    pub link_providers: bool,
}

/// How one high-frequency sample type is published.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct SeriesSettings {
    /// `series`: one message per subject and closed window, with per-step aggregates;
    /// `samples`: one message per sample.
    pub publish: Publish,
    /// The window of one series message; it divides a day.
    #[serde(with = "duration::serde_text")]
    pub window: Duration,
}

impl Default for SeriesSettings {
    fn default() -> Self {
        Self { publish: Publish::Series, window: Duration::from_secs(3600) }
    }
}

/// `series` or `samples`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    #[default]
    Series,
    Samples,
}

impl<'de> Deserialize<'de> for Publish {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(d, &[("series", Publish::Series), ("samples", Publish::Samples)])
    }
}

/// The message types that have a series form.
pub const SERIES_TYPES: &[&str] = &["heart-rate"];

/// The window of `message_type` in `series` when it is published as series.
pub fn series_window(series: &BTreeMap<String, SeriesSettings>, message_type: &str) -> Option<chrono::TimeDelta> {
    let s = series.get(message_type)?;
    (s.publish == Publish::Series).then(|| chrono::TimeDelta::from_std(s.window).ok()).flatten()
}

impl Default for AnonymizerSettings {
    fn default() -> Self {
        Self {
            key_file: "wearbridge-anonymizer.key".into(),
            epoch: "1".into(),
            granularity: BTreeMap::new(),
            date_shift_days: 0,
            mass_step_kg: 0.1,
            weight_top_code_kg: None,
            message_types: None,
            series: SERIES_TYPES.iter().map(|t| ((*t).to_owned(), SeriesSettings::default())).collect(),
            link_providers: true,
        }
    }
}

impl AnonymizerSettings {
    /// The anonymizer policy these settings describe.
    pub fn policy(&self) -> anonymizer::Policy {
        let mut policy = anonymizer::Policy::default()
            .with_date_shift_days(self.date_shift_days)
            .with_mass_step_kg(self.mass_step_kg)
            .with_weight_top_code_kg(self.weight_top_code_kg);
        for (message_type, granularity) in &self.granularity {
            let step = chrono::TimeDelta::from_std(*granularity).unwrap_or(chrono::TimeDelta::minutes(1));
            policy = policy.with_granularity(message_type, step);
        }
        if let Some(types) = &self.message_types {
            policy = policy.allow_only(types.iter().map(String::as_str));
        }
        policy
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// The node's websocket plugin (fire-and-forget; see [`Confirm`]).
    #[default]
    Websocket,
    /// The node's HTTP plugin (each publish answered).
    Http,
    /// NDJSON files in the directory `streamr.url` (`file:///…`), for archives.
    File,
}

impl<'de> Deserialize<'de> for Transport {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(d, &[("websocket", Transport::Websocket), ("http", Transport::Http), ("file", Transport::File)])
    }
}

/// How the websocket transport learns that a message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confirm {
    /// Subscribe to the same stream and wait for each message id to come back; resend
    /// what does not within `streamr.confirm_timeout`. At least once.
    #[default]
    Subscribe,
    /// Count a message as sent once written to the socket. Faster, but a publish the node
    /// fails silently is lost.
    None,
}

impl<'de> Deserialize<'de> for Confirm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(d, &[("subscribe", Confirm::Subscribe), ("none", Confirm::None)])
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct StreamrSettings {
    pub transport: Transport,
    /// The Streamr node's base URL (`ws://host:7170` or `http://host:7171`).
    pub url: String,
    #[serde(serialize_with = "redact", skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// Message type (or `default`) → stream id.
    pub streams: BTreeMap<String, String>,
    /// Websocket transport: how a publish is confirmed.
    pub confirm: Confirm,
    /// Websocket transport with `confirm = "subscribe"`: how long to wait for a message to
    /// come back before sending it again.
    #[serde(with = "duration::serde_text")]
    pub confirm_timeout: Duration,
    /// Publishing rate limit for all streams together (Streamr: ≤ ~100 msg/s per partition).
    pub messages_per_second: u32,
    /// Publishing rate limit for each stream.
    pub stream_messages_per_second: u32,
    /// Messages that may go out at once before the rate applies.
    pub burst: u32,
    /// File transport: a new file is started when the current one would exceed this size.
    pub file_max_bytes: u64,
    /// How many partitions each stream has (on-chain metadata the node's plugins cannot
    /// report); the confirming subscription covers all of them.
    pub partitions: u32,
    /// Stream id → partition count, for streams that differ from `partitions`.
    pub stream_partitions: BTreeMap<String, u32>,
    /// Websocket transport: the node's plugin runs with `payloadMetadata: true`, so frames
    /// are `{"content": message, "metadata": {"timestamp": ms}}` both ways.
    pub payload_metadata: bool,
}

impl StreamrSettings {
    /// The partition count of `stream`.
    pub fn partitions_of(&self, stream: &str) -> u32 {
        self.stream_partitions.get(stream).copied().unwrap_or(self.partitions)
    }
}

impl Default for StreamrSettings {
    fn default() -> Self {
        Self {
            transport: Transport::Websocket,
            url: "ws://127.0.0.1:7170".into(),
            api_key: None,
            api_key_file: None,
            streams: BTreeMap::new(),
            confirm: Confirm::Subscribe,
            confirm_timeout: Duration::from_secs(10),
            messages_per_second: 50,
            stream_messages_per_second: 50,
            burst: 50,
            file_max_bytes: 64 * 1024 * 1024,
            partitions: 1,
            stream_partitions: BTreeMap::new(),
            payload_metadata: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// The URL people reach the server at; the consent page's OAuth callback is
    /// `<public_url>/connect/callback` (register it with each provider).
    pub public_url: String,
    /// Serve the consent pages (`/connect`, `/leave`, `/privacy`) on this server.
    pub consent_pages: bool,
    /// When set, `/connect` asks for this token before anyone may enrol.
    #[serde(serialize_with = "redact", skip_serializing_if = "Option::is_none")]
    pub enroll_token: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enroll_token_file: Option<PathBuf>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            consent_pages: true,
            enroll_token: None,
            enroll_token_file: None,
        }
    }
}

fn redact<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

fn redact_url<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url_without_password(value))
}

/// `value` with any password in it replaced by `<redacted>` (for messages and output).
pub fn url_without_password(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("<redacted>"));
            u.to_string()
        }
        Ok(_) => value.to_owned(),
        Err(_) if value.contains('@') => "<unparseable URL, redacted>".to_owned(),
        Err(_) => value.to_owned(),
    }
}

impl Settings {
    /// The effective configuration as TOML, secrets shown as `"<redacted>"`.
    pub fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}
