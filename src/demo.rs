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
    let pipeline = Arc::new(app::pipeline(&loaded, store.clone(), key, crate::retry::Retry::default(), clock.clone())?);
    let mut summary = pipeline.run_pass_reporting(&Output::DryRun(writer.clone()), options.progress).await?;
    // And a Wi-Fi scale in the first person's home, captured locally: no vendor cloud.
    if let Some(person) = sim.people().first() {
        let captured = capture_a_scale(&store, &pipeline, &clock, &format!("{}-fitbit", person.name)).await?;
        summary.messages += captured.len() as u64;
        writer.write_batch(&captured)?;
    }
    sim.stop().await;
    Ok(summary)
}

/// An emulated Fitbit Aria of `person` posts its newest reading and a cached one to the
/// capture listener (on a loopback port of its own); returns what was committed for
/// publication, as the dry run prints it.
async fn capture_a_scale(
    store: &Arc<SqlStore>,
    pipeline: &Arc<crate::pipeline::Pipeline>,
    clock: &Clock,
    person: &str,
) -> anyhow::Result<Vec<crate::sinks::Delivery>> {
    use crate::server::capture::{Capture, router};
    let mac = [0x00, 0x1d, 0xc9, 0x00, 0x00, 0x01];
    store.add_scale("demo-scale", "aria", "00:1d:c9:00:00:01").await?;
    store.assign_scale_slot("demo-scale", 1, person).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = router(Arc::new(Capture::new(store.clone(), pipeline.clone(), clock.clone())));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let scale = crate::simulator::scale::AriaScale { mac, clock: u32::try_from(clock.now().timestamp()).unwrap_or(0) };
    let body = scale.upload(vec![scale.reading(1, 71_300, 2), scale.reading(1, 71_600, 1440)]);
    let answer = crate::http::client()?.post(format!("http://{address}/scale/upload")).body(body).send().await;
    server.abort();
    let answer = answer?;
    anyhow::ensure!(answer.status().is_success(), "the capture listener answered {}", answer.status());
    let pending = store.outbox_pending(100).await?;
    pending
        .into_iter()
        .map(|p| {
            Ok(crate::sinks::Delivery {
                stream: p.entry.stream,
                partition_key: p.entry.partition_key,
                message: serde_json::value::RawValue::from_string(p.entry.payload)?,
                message_id: p.entry.message_id,
            })
        })
        .collect()
}

/// The CLI entry: prints payloads to stdout and one summary line to stderr.
pub async fn main(options: &DemoOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let summary = run(options, Arc::new(StdoutSink::stdout())).await?;
    eprintln!(
        "demo: {} simulated people ({} Fitbit and Withings accounts, and a Wi-Fi scale captured locally), {} pseudonymised messages printed ({} failed accounts, {} skipped points) in {:.1} s; nothing was published",
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
