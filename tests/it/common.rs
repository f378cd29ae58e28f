//! Helpers shared by the integration tests.

use std::sync::Arc;
use std::time::Duration;

use anonymizer::{Provider, PseudonymKey};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use wearbridge::app;
use wearbridge::clock::Clock;
use wearbridge::config::{Loaded, Settings, SyncStart};
use wearbridge::pipeline::Pipeline;
use wearbridge::retry::{Backoff, Retry};
use wearbridge::simulator::{Simulator, SimulatorConfig};
use wearbridge::sources::fitbit::PROVIDER as FITBIT;
use wearbridge::sources::withings::PROVIDER as WITHINGS;
use wearbridge::store::{SqlStore, Store, TokenCipher};

/// Every provider of this build, for claims that do not filter by provider.
pub const PROVIDERS: &[&str] = &["fitbit", "withings"];
pub const STREAM: &str = "test-coop.eth/health";

/// The instant tests run at unless they say otherwise (the simulator, the in-process
/// pipeline and every `wearbridge` the tests start read it), so no count depends on the
/// hour the suite runs at. Five past the hour: a whole run stays within one 10-minute
/// heart-rate slot.
pub const NOW: &str = "2026-11-30T12:05:00Z";

/// [`NOW`] as an instant.
pub fn now() -> DateTime<Utc> {
    wearbridge::clock::parse_instant(NOW).expect("NOW is an RFC 3339 instant")
}

/// Collects dry-run deliveries in memory, each message parsed from its published text.
#[derive(Default)]
pub struct Collect(pub std::sync::Mutex<Vec<Collected>>);

/// One dry-run delivery.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Collected {
    pub stream: String,
    pub partition_key: String,
    pub message: serde_json::Value,
}

impl wearbridge::pipeline::DeliveryWriter for Collect {
    fn write_batch(&self, batch: &[wearbridge::sinks::Delivery]) -> std::io::Result<()> {
        let parsed = batch.iter().map(|d| {
            let message = serde_json::from_str(d.message.get())?;
            Ok(Collected { stream: d.stream.clone(), partition_key: d.partition_key.clone(), message })
        });
        let parsed = parsed.collect::<Result<Vec<_>, serde_json::Error>>()?;
        self.0.lock().expect("collector lock").extend(parsed);
        Ok(())
    }
}

impl Collect {
    /// Every message id.
    pub fn ids(&self) -> std::collections::BTreeSet<String> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .map(|d| d.message["header"]["uuid"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("lock").len()
    }

    /// The messages of one type.
    pub fn of(&self, message_type: &str) -> Vec<serde_json::Value> {
        self.0
            .lock()
            .expect("lock")
            .iter()
            .filter(|d| d.message["header"]["schema_id"]["name"] == message_type)
            .map(|d| d.message.clone())
            .collect()
    }

    /// Every message.
    pub fn all(&self) -> Vec<serde_json::Value> {
        self.0.lock().expect("lock").iter().map(|d| d.message.clone()).collect()
    }

    /// How many messages of one type.
    pub fn count(&self, message_type: &str) -> usize {
        self.of(message_type).len()
    }

    /// All deliveries as one JSON text.
    pub fn text(&self) -> String {
        self.0.lock().expect("lock").iter().map(|d| serde_json::to_string(d).unwrap_or_default()).collect()
    }
}

/// An HTTP client for tests (with the process's TLS provider installed, as wearbridge's
/// own client has).
pub fn http() -> reqwest::Client {
    http_builder().build().expect("an HTTP client")
}

/// [`http`] before it is built.
pub fn http_builder() -> reqwest::ClientBuilder {
    wearbridge::http::tls();
    reqwest::Client::builder()
}

/// A simulator whose clock is pinned at [`NOW`].
pub async fn simulator(people: usize, seed: u64) -> Simulator {
    simulator_at(people, seed, Clock::pinned(now())).await
}

/// A simulator on `clock`; its Streamr node knows [`STREAM`] (one partition).
pub async fn simulator_at(people: usize, seed: u64, clock: Clock) -> Simulator {
    simulator_with(SimulatorConfig { people, seed, clock, ..Default::default() }).await
}

/// A simulator as `config` says; its Streamr node knows [`STREAM`] (one partition).
pub async fn simulator_with(config: SimulatorConfig) -> Simulator {
    let sim = Simulator::start(config).await.expect("simulator starts");
    sim.register_stream(STREAM, 1);
    sim
}

/// A simulator on the system clock, for daemons in several processes: their leases
/// must agree on the time across processes, which only the system clock does.
pub async fn simulator_on_system_clock(people: usize, seed: u64) -> Simulator {
    simulator_at(people, seed, Clock::system()).await
}

/// Settings pointing at `sim`, with a store in `dir`.
pub fn settings(sim: &Simulator, dir: &tempfile::TempDir, history: &str) -> Settings {
    let mut s = Settings::default();
    s.store.url = format!("sqlite://{}", dir.path().join("wb.db").display());
    s.store.key_file = dir.path().join("store.key");
    s.anonymizer.key_file = dir.path().join("anonymizer.key");
    sim.configure(&mut s);
    s.sync.start = history.parse::<SyncStart>().expect("history");
    s.streamr.streams.insert("default".into(), STREAM.into());
    // Most tests count per-sample messages (written before series existed); the series
    // tests opt in with `series_mode`.
    samples_mode(&mut s);
    s
}

/// The `[streamr]` sections of a daemon publishing to the simulated node over HTTP with
/// the limits lifted (5,000 msg/s), into the test stream.
pub fn streamr_http_toml(sim: &Simulator) -> String {
    format!(
        "[streamr]\ntransport = \"http\"\nurl = \"{node}\"\napi_key = \"{key}\"\nmessages_per_second = 5000\n\
         stream_messages_per_second = 5000\nburst = 500\n\n[streamr.streams]\ndefault = \"{STREAM}\"\n",
        node = sim.streamr_http_url(),
        key = wearbridge::simulator::STREAMR_API_KEY,
    )
}

/// The configuration-file sections every process started by a test shares: the
/// simulator's Google Health and Withings endpoints and credentials, and an anonymizer
/// key in `dir` with heart rate published per sample (see [`samples_mode`]).
pub fn upstream_toml(sim: &Simulator, dir: &std::path::Path) -> String {
    format!(
        "{providers}\n[anonymizer]\nkey_file = \"{d}/anonymizer.key\"\n\n[anonymizer.series.heart-rate]\npublish = \"samples\"\n",
        providers = sim.providers_toml(),
        d = dir.display(),
    )
}

/// Heart rate published one message per sample.
pub fn samples_mode(s: &mut Settings) {
    s.anonymizer.series.entry("heart-rate".into()).or_default().publish = wearbridge::config::Publish::Samples;
}

/// Heart rate published as series (the production default).
pub fn series_mode(s: &mut Settings) {
    s.anonymizer.series.entry("heart-rate".into()).or_default().publish = wearbridge::config::Publish::Series;
}

/// The `n`-th of a series of outbox entries for store tests (three subjects).
pub fn entry(n: usize) -> wearbridge::store::OutboxEntry {
    wearbridge::store::OutboxEntry {
        message_id: format!("m-{n:05}"),
        stream: STREAM.into(),
        partition_key: format!("s{}", n % 3),
        payload: format!(r#"{{"n":{n}}}"#),
    }
}

/// Fast retries for tests.
pub fn fast_retry() -> Retry {
    Retry::new(
        Backoff {
            attempts: 4,
            base: Duration::from_millis(5),
            max: Duration::from_millis(50),
            max_server_pause: Duration::from_millis(50),
            max_throttle: Duration::from_secs(10),
        },
        Default::default(),
    )
}

pub struct Harness {
    pub store: Arc<SqlStore>,
    pub pipeline: Pipeline,
    pub loaded: Loaded,
    /// The simulator's clock, shared by the store and the pipeline.
    pub clock: Clock,
}

impl Harness {
    /// A fresh pipeline over the same store (as after a restart).
    pub fn reopen(&self) -> Pipeline {
        pipeline_on(&self.loaded, self.store.clone(), &self.clock)
    }
}

/// A store with every simulated person enrolled, and a pipeline over it.
pub async fn harness(sim: &Simulator, dir: &tempfile::TempDir, history: &str) -> Harness {
    harness_with(sim, dir, history, |_| {}).await
}

/// Like [`harness`], with the settings adjusted first.
pub async fn harness_with(
    sim: &Simulator,
    dir: &tempfile::TempDir,
    history: &str,
    adjust: impl FnOnce(&mut Settings),
) -> Harness {
    harness_for(sim, dir, history, adjust, FITBIT).await
}

/// Like [`harness_with`], but every simulated person is enrolled with Withings
/// (`<name>-withings`) instead of Fitbit.
pub async fn harness_withings(
    sim: &Simulator,
    dir: &tempfile::TempDir,
    history: &str,
    adjust: impl FnOnce(&mut Settings),
) -> Harness {
    harness_for(sim, dir, history, adjust, WITHINGS).await
}

async fn harness_for(
    sim: &Simulator,
    dir: &tempfile::TempDir,
    history: &str,
    adjust: impl FnOnce(&mut Settings),
    provider: Provider,
) -> Harness {
    let mut s = settings(sim, dir, history);
    adjust(&mut s);
    let loaded = Loaded::from_settings(s);
    let clock = sim.clock().clone();
    let store = Arc::new(
        SqlStore::open(&loaded.settings.store.url, TokenCipher::new([9; 32]))
            .await
            .expect("store opens")
            .with_clock(clock.clone()),
    );
    for p in sim.people() {
        let (name, token) = if provider == FITBIT {
            (p.name.clone(), p.refresh_token.clone())
        } else {
            (format!("{}-{provider}", p.name), p.withings_refresh_token.clone())
        };
        store.add_account(&name, provider, &SecretString::from(token)).await.expect("enrol");
    }
    let pipeline = pipeline_on(&loaded, store.clone(), &clock);
    Harness { store, pipeline, loaded, clock }
}

/// The subject `person`'s account with `provider` (upstream id `user_id`) is published
/// under by [`pipeline_on`]'s pipeline: the person's, or for a person migrated from a
/// single account, the account's.
pub async fn subject_of(store: &SqlStore, person: &str, provider: Provider, user_id: &str) -> String {
    let anonymizer = anonymizer::Anonymizer::new(PseudonymKey::new("t1", [5; 32]).expect("key"), Default::default());
    match store.subject_id(person).await.expect("the store answers") {
        Some(basis) => anonymizer.for_person(&basis, provider, user_id).subject().to_owned(),
        None => anonymizer.subject(provider, user_id),
    }
}

/// A pipeline over `store` reading `clock`.
pub fn pipeline_on(loaded: &Loaded, store: Arc<SqlStore>, clock: &Clock) -> Pipeline {
    let key = PseudonymKey::new("t1", [5; 32]).expect("key");
    app::pipeline(loaded, store, key, fast_retry(), clock.clone()).expect("pipeline")
}

/// The `wearbridge` binary run in `dir` with `--config config` at `--now` [`NOW`] (the
/// instant of [`simulator`]), without `RUST_LOG`, output captured, no stdin, killed when
/// dropped.
pub fn command(dir: &std::path::Path, config: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = command_on_system_clock(dir, config, args);
    cmd.arg("--now").arg(NOW);
    cmd
}

/// Like [`command`] on the system clock (with [`simulator_on_system_clock`]).
pub fn command_on_system_clock(dir: &std::path::Path, config: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wearbridge"));
    cmd.arg("--config").arg(config).args(args).current_dir(dir).env_remove("RUST_LOG");
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A loopback port free at the time of asking.
///
/// Picked below the kernel's ephemeral range (where every `:0` bind of the tests running
/// beside this one lands), so the port is not handed to another listener in the moment
/// between this answer and its use.
pub fn free_port() -> u16 {
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            let mut parts = r.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32768, 60999));
    // The range below the ephemeral one, or above it when it starts too low.
    let (from, to) = if low >= 12_000 { (low - 10_000, low) } else { (high.saturating_add(1), u16::MAX) };
    // No band worth the name outside the ephemeral range: let the system choose.
    let tries = if to - from < 1_000 { 0 } else { 1_000 };
    for _ in 0..tries {
        let mut bytes = [0u8; 2];
        getrandom::fill(&mut bytes).expect("the OS random source");
        let port = from + u16::from_le_bytes(bytes) % (to - from).max(1);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// The dotted keys of a TOML value (`streamr.api_key`, ...).
pub fn toml_keys(value: &toml::Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                toml_keys(v, &key, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

/// Every configuration key the program knows: the defaults plus every optional key
/// filled in.
pub fn known_config_keys() -> std::collections::BTreeSet<String> {
    let mut all = Settings::default();
    let x = || Some(SecretString::from("x"));
    all.store.url_file = Some("x".into());
    all.capture.listen = Some(std::net::SocketAddr::from(([0, 0, 0, 0], 80)));
    all.push.google_authorization = x();
    all.push.google_authorization_file = Some("x".into());
    all.push.google_public_key_file = Some("x".into());
    all.fitbit.client_id = Some("x".into());
    all.fitbit.client_secret = x();
    all.fitbit.client_secret_file = Some("x".into());
    all.withings.client_id = Some("x".into());
    all.withings.client_secret = x();
    all.withings.client_secret_file = Some("x".into());
    all.streamr.api_key = x();
    all.streamr.api_key_file = Some("x".into());
    all.streamr.streams.insert("default".into(), "x".into());
    all.server.enroll_token = x();
    all.server.enroll_token_file = Some("x".into());
    all.anonymizer.granularity.insert("heart-rate".into(), Duration::from_secs(60));
    all.anonymizer.weight_top_code_kg = Some(150.0);
    all.anonymizer.message_types = Some(vec!["heart-rate".into()]);
    let mut known = std::collections::BTreeSet::new();
    let text = all.to_redacted_toml().expect("settings serialise");
    toml_keys(&toml::from_str(&text).expect("serialised settings are TOML"), "", &mut known);
    known
}
