//! Upstream requests per person-day (issue 18), counted by the simulator over simulated
//! days: the daemon's own claim-and-sync step (`Worker::sync_due`) on a pinned clock
//! moved every 5 minutes, for the built-in schedules and for a few `sync.interval`s, and
//! with push notifications on (issue 20): each person's devices sync every hour (a Google
//! heart-rate notification for the hour, a Withings weigh-in), received by the worker's
//! own webhook endpoints.
//!
//! Run: `cargo bench --bench requests` (environment: `REQUESTS_PEOPLE`, default 10, each
//! with a Fitbit and a Withings account). Three days are simulated from enrolment; the
//! third is counted (by then every person's passes are in step with their morning).
//! Requests cost no wall time to speak of here: the simulator runs in process.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use wearbridge::clock::Clock;
use wearbridge::config::{Loaded, Settings, SyncStart};
use wearbridge::pipeline::Output;
use wearbridge::simulator::{Simulator, SimulatorConfig};
use wearbridge::store::{SqlStore, Store, TokenCipher};
use wearbridge::worker::Worker;

const START: &str = "2026-11-30T12:05:00Z";

/// Fitbit (Google Health, token requests not counted by Google but counted here) and
/// Withings requests served so far.
fn requests(sim: &Simulator) -> (u64, u64) {
    let all = sim.requests();
    let sum = |prefix: &str| {
        all.iter().filter(|(k, _)| k.starts_with(prefix) && *k != "withings.throttled").map(|(_, n)| n).sum::<u64>()
    };
    (sum("google."), sum("withings."))
}

/// Requests per person-day on the third simulated day with `interval` (None: the
/// built-in schedules), with push notifications of hourly device syncs when `push`.
async fn per_person_day(people: usize, interval: Option<Duration>, push: bool) -> (f64, f64, u64) {
    let start = DateTime::parse_from_rfc3339(START).unwrap().with_timezone(&Utc);
    let clock = Clock::pinned(start);
    let sim = Simulator::start(SimulatorConfig { people, seed: 18, clock: clock.clone(), ..Default::default() })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::default();
    s.store.url = format!("sqlite://{}", dir.path().join("wb.db").display());
    sim.configure(&mut s);
    s.sync.start = SyncStart::Ago(Duration::from_secs(86_400));
    s.sync.interval = interval;
    s.streamr.streams.insert("default".into(), "bench.eth/health".into());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    if push {
        s.push.enabled = true;
        s.push.google_authorization = Some(SecretString::from("Bearer bench"));
        s.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        s.server.public_url = format!("http://127.0.0.1:{port}");
        s.sync.push_poll = Some(s.push.poll_interval);
    }
    let loaded = Loaded::from_settings(s);
    let store = Arc::new(
        SqlStore::open(&loaded.settings.store.url, TokenCipher::new([3; 32])).await.unwrap().with_clock(clock.clone()),
    );
    for p in sim.people() {
        for (provider, token) in p.accounts() {
            store
                .add_account(&format!("{}-{provider}", p.name), provider, &SecretString::from(token.to_owned()))
                .await
                .unwrap();
        }
    }
    let key = anonymizer::PseudonymKey::new("bench", [4; 32]).unwrap();
    let pipeline = wearbridge::app::pipeline(&loaded, store.clone(), key, Default::default(), clock.clone()).unwrap();
    let shutdown = wearbridge::retry::CancellationToken::new();
    if push {
        let state = wearbridge::server::ServerState {
            store: store.clone(),
            publisher: None,
            metrics: None,
            enrolment: None,
            clock: clock.clone(),
            datasets: Vec::new(),
            push: Some(wearbridge::server::Push::new(&loaded.settings.push).unwrap()),
        };
        wearbridge::server::serve(loaded.settings.server.listen, state, shutdown.clone()).await.unwrap();
        let http = wearbridge::http::client().unwrap();
        let endpoint = format!("http://127.0.0.1:{port}/webhooks/fitbit");
        wearbridge::sources::fitbit::push::ensure_subscriber(
            &http,
            &sim.google_api_base(),
            "bench",
            wearbridge::simulator::GOOGLE_ADMIN_TOKEN,
            &endpoint,
            "Bearer bench",
        )
        .await
        .unwrap();
    }
    let worker = Worker {
        id: "bench".into(),
        pipeline: Arc::new(pipeline),
        publisher: None,
        output: Output::Outbox,
        sync: loaded.settings.sync.clone(),
    };
    let (from, to) =
        (start + TimeDelta::days(2) - TimeDelta::minutes(5), start + TimeDelta::days(3) - TimeDelta::minutes(5));
    let mut at_from = (0, 0);
    let mut counted = false;
    let mut step = 0u64;
    while clock.now() < to {
        if push && step % 12 == 11 {
            // Every person's devices sync: the last hour of heart rate, and a weigh-in.
            let now = clock.now();
            for p in 0..people {
                sim.notify_google(p, "heart-rate", now - TimeDelta::hours(1), now).await;
                let kg = 70.0 + (step % 10) as f64 / 10.0;
                sim.add_weight(p, wearbridge::sources::withings::PROVIDER, now - TimeDelta::minutes(1), kg).await;
            }
            // The coalescing delay passes before the next step.
            clock.advance(TimeDelta::seconds(5));
        }
        step += 1;
        clock.drive(worker.sync_due()).await.unwrap();
        if clock.now() >= from && !counted {
            counted = true;
            at_from = requests(&sim);
        }
        clock.advance(TimeDelta::minutes(5));
    }
    shutdown.cancel();
    let (fitbit, withings) = requests(&sim);
    let n = people as f64;
    ((fitbit - at_from.0) as f64 / n, (withings - at_from.1) as f64 / n, sim.request_count("withings.throttled"))
}

fn main() {
    let people = std::env::var("REQUESTS_PEOPLE").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let withings_day = f64::from(wearbridge::simulator::WITHINGS_REQUESTS_PER_MINUTE) * 1440.0;
    let google_day = 120_000.0 * 1440.0;
    println!("{people} people, each with a Fitbit and a Withings account; the third simulated day");
    println!(
        "| schedule | Fitbit requests / person-day | Withings requests / person-day | 601s | people Withings' quota carries | people Google's project quota carries |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let cases: [(&str, Option<u64>, bool); 5] = [
        ("built-in (`[sync.schedule]` defaults)", None, false),
        ("push on, devices syncing hourly (built-in schedules as the safety net)", None, true),
        ("`sync.interval = \"15m\"`", Some(900), false),
        ("`sync.interval = \"1h\"`", Some(3600), false),
        ("`sync.interval = \"1d\"`", Some(86_400), false),
    ];
    for (label, interval, push) in cases {
        let (fitbit, withings, throttled) =
            runtime.block_on(per_person_day(people, interval.map(Duration::from_secs), push));
        println!(
            "| {label} | {fitbit:.1} | {withings:.1} | {throttled} | {:.0} | {:.0} |",
            withings_day / withings.max(1.0),
            google_day / fitbit.max(1.0)
        );
    }
}
