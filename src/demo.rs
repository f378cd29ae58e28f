//! `wearbridge demo`: the whole pipeline on one machine, no accounts, no network, no
//! files left behind: an in-process simulator, a temporary store, one dry-run pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anonymizer::PseudonymKey;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::app;
use crate::clock::Clock;
use crate::config::{Loaded, Settings, SyncStart};
use crate::keyfile;
use crate::pipeline::{Output, PassSummary};
use crate::simulator::{Simulator, SimulatorConfig};
use crate::sinks::stdout::StdoutSink;
use crate::store::{SqlStore, Store, TokenCipher};

/// The demo's stream (a placeholder; nothing is published).
pub const DEMO_STREAM: &str = "wearbridge-demo.eth/health";

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub people: usize,
    pub seed: u64,
    /// How much history to read.
    pub history: Duration,
    /// The instant the demo runs at (`--now`); the real now when absent. A given instant
    /// is held for the whole pass, so the same options print the same readings.
    pub now: Option<DateTime<Utc>>,
    /// Heart rate while worn, one sample this often.
    pub hr_interval: Duration,
    /// Show progress by account on stderr (the CLI; not tests and benchmarks).
    pub progress: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            people: 3,
            seed: 42,
            history: Duration::from_secs(2 * 86_400),
            now: None,
            hr_interval: SimulatorConfig::default().hr_interval,
            progress: false,
        }
    }
}

/// Runs the demo, writing payload lines to `writer`. Returns the pass summary.
pub async fn run(
    options: &DemoOptions,
    writer: Arc<dyn crate::pipeline::DeliveryWriter>,
) -> anyhow::Result<PassSummary> {
    // One clock for the simulator and the pipeline.
    let clock = options.now.map_or_else(Clock::system, Clock::pinned);
    let sim = Simulator::start(SimulatorConfig {
        people: options.people,
        seed: options.seed,
        clock: clock.clone(),
        hr_interval: options.hr_interval,
        // Withings allows an application 120 requests a minute; a demo of many people
        // would spend minutes waiting on it (and for ever on a clock pinned by --now).
        withings_requests_per_minute: None,
        ..Default::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;

    let mut settings = Settings::default();
    settings.store.url = format!("sqlite://{}", dir.path().join("demo.db").display());
    sim.configure(&mut settings);
    settings.withings.requests_per_minute = 1_000_000;
    settings.sync.start = SyncStart::Ago(options.history);
    settings.streamr.streams.insert("default".into(), DEMO_STREAM.into());
    let loaded = Loaded::from_settings(settings);

    // Throw-away keys: nothing of the demo outlives it.
    let store = Arc::new(
        SqlStore::open(&loaded.settings.store.url, TokenCipher::new(keyfile::random_key()?))
            .await?
            .with_clock(clock.clone()),
    );
    let key = PseudonymKey::new("demo", keyfile::random_key()?)?;
    // Every simulated person has an account with each simulated provider.
    for person in sim.people() {
        for (provider, token) in person.accounts() {
            let token = SecretString::from(token.to_owned());
            store.add_account(&format!("{}-{provider}", person.name), provider, &token).await?;
        }
    }
    let pipeline = app::pipeline(&loaded, store, key, crate::retry::Retry::default(), clock)?;
    let summary = pipeline.run_pass_reporting(&Output::DryRun(writer), options.progress).await?;
    sim.stop().await;
    Ok(summary)
}

/// The CLI entry: prints payloads to stdout and one summary line to stderr.
pub async fn main(options: &DemoOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let summary = run(options, Arc::new(StdoutSink::stdout())).await?;
    eprintln!(
        "demo: {} simulated people ({} Fitbit and Withings accounts), {} pseudonymised messages printed ({} failed accounts, {} skipped points) in {:.1} s; nothing was published",
        options.people,
        summary.accounts,
        summary.messages,
        summary.failed + summary.needs_reconsent,
        summary.skipped_points,
        started.elapsed().as_secs_f64()
    );
    if summary.failed > 0 || summary.messages == 0 {
        anyhow::bail!("the demo did not complete cleanly; run with -v for details");
    }
    Ok(())
}
