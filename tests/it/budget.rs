//! Issue 18: the upstream request budget. Simulated days stepped on a pinned clock
//! through the daemon's own claim-and-sync step (`Worker::sync_due`), against the
//! simulator's request counters and its Withings quota (120 a minute, 601 past it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use serde_json::Value;
use wearbridge::clock::Clock;
use wearbridge::config::Settings;
use wearbridge::pipeline::Output;
use wearbridge::simulator::{Simulator, SimulatorConfig};
use wearbridge::store::{SqlStore, Store};
use wearbridge::worker::Worker;

use crate::common;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A worker over a fresh SQLite store in `dir` with every simulated person's Fitbit
/// and/or Withings account enrolled.
async fn enrolled_worker(
    sim: &Simulator,
    dir: &tempfile::TempDir,
    fitbit: bool,
    adjust: impl FnOnce(&mut Settings),
) -> (Worker, Arc<SqlStore>) {
    let mut s = common::settings(sim, dir, "1d");
    common::series_mode(&mut s);
    adjust(&mut s);
    let loaded = wearbridge::config::Loaded::from_settings(s);
    let clock = sim.clock().clone();
    let store = Arc::new(
        SqlStore::open(&loaded.settings.store.url, wearbridge::store::TokenCipher::new([9; 32]))
            .await
            .unwrap()
            .with_clock(clock.clone()),
    );
    for p in sim.people() {
        if fitbit {
            store
                .add_account(
                    &p.name,
                    wearbridge::sources::fitbit::PROVIDER,
                    &SecretString::from(p.refresh_token.clone()),
                )
                .await
                .unwrap();
        }
        let token = SecretString::from(p.withings_refresh_token.clone());
        store
            .add_account(&format!("{}-withings", p.name), wearbridge::sources::withings::PROVIDER, &token)
            .await
            .unwrap();
    }
    let pipeline = Arc::new(common::pipeline_on(&loaded, store.clone(), &clock));
    let sync = loaded.settings.sync.clone();
    (Worker { id: "stepper".into(), pipeline, publisher: None, output: Output::Outbox, sync }, store)
}

/// One daemon step at the clock's instant; a request that waits for the next minute
/// of a provider's budget moves the pinned clock there, as time would pass.
async fn step(worker: &Worker, clock: &Clock) -> u64 {
    let due = tokio::time::timeout(Duration::from_secs(300), clock.drive(worker.sync_due()));
    due.await.expect("a step ends").unwrap()
}

/// Every Fitbit (Google) and Withings request the simulator served, token requests
/// included (not its tallies of points served or of 601s).
fn requests(sim: &Simulator) -> (u64, u64) {
    let all = sim.requests();
    let sum = |prefix: &str| {
        all.iter().filter(|(k, _)| k.starts_with(prefix) && *k != "withings.throttled").map(|(_, n)| n).sum::<u64>()
    };
    (sum("google."), sum("withings."))
}

/// A reading in the outbox: message id, header time, series key and revision if any.
type Row = (String, DateTime<Utc>, Option<(String, u64)>);

/// The readings in the outbox: (message id, header time, series key and revision if
/// any). Device status is left out: it is a snapshot of each read (one per read, by
/// design), not a reading.
async fn outbox(store: &SqlStore) -> Vec<Row> {
    let pending = store.outbox_pending(1_000_000).await.unwrap();
    pending
        .iter()
        .filter(|p| !p.entry.payload.contains(r#""name":"device-status""#))
        .map(|p| {
            let v: Value = serde_json::from_str(&p.entry.payload).unwrap();
            let time = at(v["header"]["source_creation_date_time"].as_str().unwrap());
            let window = &v["body"]["effective_time_frame"];
            let series = v["body"]["revision"].as_u64().map(|r| (format!("{}/{window}", v["subject"]), r));
            (p.entry.message_id.clone(), time, series)
        })
        .collect()
}

#[tokio::test]
async fn a_day_at_the_default_schedule_costs_at_most_30_fitbit_and_12_withings_requests_a_person() {
    let people = 3;
    let start = at(common::NOW);
    let end = start + TimeDelta::days(3);
    // The day whose messages are compared, 2026-12-01 UTC, and the day whose requests
    // are counted: the next, when every person's passes have fallen into step with their
    // morning (the day after enrolment may hold one more).
    let (day, day_end) = (at("2026-12-01T00:00:00Z"), at("2026-12-02T00:00:00Z"));
    let (count_from, count_to) = (day_end, day_end + TimeDelta::days(1));

    // At the defaults, stepped every 5 minutes.
    let sim = common::simulator(people, 1801).await;
    let dir = tempfile::tempdir().unwrap();
    let (worker, store) = enrolled_worker(&sim, &dir, true, |_| {}).await;
    let clock = sim.clock().clone();
    let mut counted = None;
    let mut at_day_start = (0, 0);
    while clock.now() < end {
        step(&worker, &clock).await;
        let next = clock.now() + TimeDelta::minutes(5);
        if clock.now() < count_from && next >= count_from {
            at_day_start = requests(&sim);
        }
        if clock.now() < count_to && next >= count_to {
            let (f, w) = requests(&sim);
            counted = Some((f - at_day_start.0, w - at_day_start.1));
        }
        clock.set(next);
    }
    let (fitbit, withings) = counted.unwrap();
    let (fitbit, withings) = (fitbit as f64 / people as f64, withings as f64 / people as f64);
    println!("requests per person-day at the defaults: Fitbit {fitbit:.1}, Withings {withings:.1}");
    assert!(fitbit <= 30.0, "Fitbit: {fitbit} requests per person-day");
    assert!(withings <= 12.0, "Withings: {withings} requests per person-day");
    assert_eq!(sim.request_count("withings.throttled"), 0);

    // The same simulated world polled every 15 minutes (the old default) publishes the
    // same messages of that day: nothing is missed by reading less often.
    let reference = common::simulator(people, 1801).await;
    let reference_dir = tempfile::tempdir().unwrap();
    let (polling, reference_store) = enrolled_worker(&reference, &reference_dir, true, |s| {
        s.sync.interval = Some(Duration::from_secs(15 * 60));
    })
    .await;
    let reference_clock = reference.clock().clone();
    while reference_clock.now() < end {
        step(&polling, &reference_clock).await;
        reference_clock.advance(TimeDelta::minutes(15));
    }

    let of_the_day = |rows: &[Row]| -> BTreeSet<String> {
        rows.iter().filter(|(_, t, _)| *t >= day && *t < day_end).map(|(id, _, _)| id.clone()).collect()
    };
    let budgeted = outbox(&store).await;
    let polled = outbox(&reference_store).await;
    let (ours, theirs) = (of_the_day(&budgeted), of_the_day(&polled));
    println!("messages of the day: {} either way", ours.len());
    assert!(ours.len() > 24 * people, "a day of messages: {}", ours.len());
    assert_eq!(ours, theirs, "the same messages of the day, read 8-hourly and daily or every 15 minutes");
    // Exactly once: every id once, and every series window in one revision.
    for rows in [&budgeted, &polled] {
        let ids: BTreeSet<&String> = rows.iter().map(|(id, _, _)| id).collect();
        assert_eq!(ids.len(), rows.len());
        let mut revisions: BTreeMap<&String, u64> = BTreeMap::new();
        for (_, _, series) in rows.iter() {
            if let Some((key, revision)) = series {
                *revisions.entry(key).or_default() += 1;
                assert_eq!(*revision, 0, "no late data in this world, so no revision");
            }
        }
        assert!(revisions.values().all(|n| *n == 1));
    }
}

#[tokio::test]
async fn two_thousand_withings_accounts_never_meet_a_601_and_all_sync_within_the_day() {
    let people = 2_000;
    let sim = Simulator::start(SimulatorConfig {
        people,
        seed: 1802,
        clock: Clock::pinned(at(common::NOW)),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The default limiter: 120 requests a minute for the application.
    let (worker, store) = enrolled_worker(&sim, &dir, false, |_| {}).await;
    let clock = sim.clock().clone();
    let start = clock.now();
    let mut synced = 0;
    let mut all_synced_at = None;
    while clock.now() < start + TimeDelta::days(1) {
        synced += step(&worker, &clock).await;
        if all_synced_at.is_none() && synced >= people as u64 {
            all_synced_at = Some(clock.now());
        }
        clock.advance(TimeDelta::minutes(1));
    }
    let (_, withings) = requests(&sim);
    let took = all_synced_at.map(|t| t - start);
    println!("2,000 Withings accounts: {withings} requests in a day; everyone synced once after {took:?}");
    assert_eq!(sim.request_count("withings.throttled"), 0, "no 601");
    let took = took.expect("every account synced within the day");
    assert!(took < TimeDelta::hours(24));
    // Each account's heart rate was read and committed (not merely claimed).
    let accounts = store.accounts().await.unwrap();
    assert_eq!(accounts.len(), people);
    for account in &accounts {
        assert!(store.cursor(account.id, "heart_rate").await.unwrap().is_some(), "{} never synced", account.name);
    }
}
