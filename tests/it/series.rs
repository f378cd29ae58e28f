//! Heart rate as series (issue 16): a day of 5-second samples becomes 24 hourly series
//! messages per subject whose aggregates match the raw samples; a late upload after a
//! window was published yields one revision; only closed windows go out.

use crate::common::{self, Collect};

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use wearbridge::clock::{Clock, parse_instant};
use wearbridge::config::Dataset;
use wearbridge::pipeline::Output;
use wearbridge::simulator::{REALISTIC_HEART_RATE, Simulator, SimulatorConfig};
use wearbridge::store::Store;

/// 03:05 UTC: with the default 3 h look-back, the last closed window ends at midnight,
/// so exactly the 24 windows of 2026-11-29 are closed.
const AT: &str = "2026-11-30T03:05:00Z";

fn at(s: &str) -> DateTime<Utc> {
    parse_instant(s).unwrap()
}

async fn realistic(people: usize, seed: u64) -> Simulator {
    let clock = Clock::pinned(at(AT));
    common::simulator_with(SimulatorConfig {
        people,
        seed,
        clock,
        hr_interval: REALISTIC_HEART_RATE,
        ..Default::default()
    })
    .await
}

fn series_settings(s: &mut wearbridge::config::Settings) {
    common::series_mode(s);
    s.sync.datasets = vec![Dataset::HeartRate];
    s.sync.start = "2026-11-29".parse().unwrap();
    // A look-back longer than the built-in 15 minutes, so the window logic is seen at work.
    s.sync.lookback = Some(std::time::Duration::from_secs(3 * 3600));
}

/// The aggregates a series message must carry for these samples (1-minute steps).
fn expected(samples: &[(DateTime<Utc>, u32)], start: DateTime<Utc>) -> BTreeMap<u64, (f64, f64, f64, u64)> {
    let mut steps: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (t, bpm) in samples {
        steps.entry(((*t - start).num_seconds() / 60) as u64).or_default().push(f64::from(*bpm));
    }
    steps
        .into_iter()
        .map(|(offset, v)| {
            let mean = (v.iter().sum::<f64>() / v.len() as f64 * 10.0).round() / 10.0;
            let min = v.iter().copied().fold(f64::INFINITY, f64::min);
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (offset, (mean, min, max, v.len() as u64))
        })
        .collect()
}

fn points(message: &Value) -> BTreeMap<u64, (f64, f64, f64, u64)> {
    message["body"]["heart_rate"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let f = |k: &str| p[k].as_f64().unwrap();
            (p["offset"].as_u64().unwrap(), (f("mean"), f("min"), f("max"), p["count"].as_u64().unwrap()))
        })
        .collect()
}

fn window_of(message: &Value) -> DateTime<Utc> {
    at(message["body"]["effective_time_frame"]["time_interval"]["start_date_time"].as_str().unwrap())
}

#[tokio::test]
async fn a_day_of_5_second_heart_rate_is_24_series_messages_matching_the_samples() {
    let sim = realistic(2, 1601).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_with(&sim, &dir, "1d", series_settings).await;
    let out = Arc::new(Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.synced, summary.failed), (2, 0), "{summary:?}");
    let day = (at("2026-11-29T00:00:00Z"), at("2026-11-30T00:00:00Z"));
    let schemas = wearbridge::schemas::Schemas::load().unwrap();
    let messages = out.of("heart-rate-series");
    assert!(out.of("heart-rate").is_empty(), "no per-sample messages in series mode");
    let mut by_subject: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for m in &messages {
        schemas.validate(m).unwrap_or_else(|e| panic!("{e}"));
        by_subject.entry(m["subject"].as_str().unwrap().to_owned()).or_default().push(m);
    }
    assert_eq!(by_subject.len(), 2);
    let mut subjects = Vec::new();
    for p in &sim.people()[..2] {
        let provider = wearbridge::sources::fitbit::PROVIDER;
        subjects.push(common::subject_of(&h.store, &p.name, provider, &p.health_user_id).await);
    }
    for (person, subject) in subjects.iter().enumerate() {
        let windows = &by_subject[subject];
        assert_eq!(windows.len(), 24, "one message per hour of the day");
        let raw = sim.google_heart_rate(person, day.0, day.1);
        assert!(raw.len() > 15_000, "a real day's density: {}", raw.len());
        let mut counted = 0;
        for m in windows {
            let start = window_of(m);
            assert!(start >= day.0 && start < day.1, "{start}");
            assert_eq!(m["body"]["revision"], 0);
            assert_eq!(m["body"]["heart_rate"]["step_seconds"], 60);
            let samples: Vec<_> =
                raw.iter().copied().filter(|(t, _)| *t >= start && *t < start + TimeDelta::hours(1)).collect();
            assert_eq!(points(m), expected(&samples, start), "window {start}");
            counted += samples.len();
        }
        assert_eq!(counted, raw.len(), "every sample of the day is in exactly one window");
    }
    // 17,000 samples a day in 24 messages: more than 100 times fewer.
    let samples_per_day = sim.google_heart_rate(0, day.0, day.1).len();
    assert!(samples_per_day / 24 >= 100, "{samples_per_day}");
}

#[tokio::test]
async fn a_late_upload_after_publication_is_one_revision_with_the_corrected_values() {
    let sim = realistic(1, 1602).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_with(&sim, &dir, "1d", series_settings).await;
    // The watch uploads 23:20–23:40 late.
    sim.hold_back_heart_rate(0, at("2026-11-29T23:20:00Z"), at("2026-11-29T23:40:00Z"));
    h.pipeline.run_pass(&Output::Outbox).await.unwrap();
    let first: Vec<Value> = payloads(&h.store).await;
    let starts: Vec<DateTime<Utc>> = first.iter().map(window_of).collect();
    assert_eq!(first.len(), 24, "{starts:?}");
    let late = first.iter().find(|m| window_of(m) == at("2026-11-29T23:00:00Z")).unwrap().clone();
    let before_count: u64 = points(&late).values().map(|p| p.3).sum();

    sim.upload_held_back();
    h.pipeline.run_pass(&Output::Outbox).await.unwrap();
    let all = payloads(&h.store).await;
    let new: Vec<&Value> = all.iter().filter(|m| !first.contains(m)).collect();
    assert_eq!(new.len(), 1, "exactly one window changed: {}", new.len());
    let revision = new[0];
    assert_eq!(window_of(revision), at("2026-11-29T23:00:00Z"));
    assert_eq!(revision["body"]["revision"], 1);
    assert_ne!(revision["header"]["uuid"], late["header"]["uuid"], "a revision has its own id");
    let raw = sim.google_heart_rate(0, at("2026-11-29T23:00:00Z"), at("2026-11-30T00:00:00Z"));
    assert_eq!(points(revision), expected(&raw, at("2026-11-29T23:00:00Z")), "the full corrected window");
    let after_count: u64 = points(revision).values().map(|p| p.3).sum();
    assert!(after_count > before_count + 200, "{before_count} → {after_count}");

    // A third pass with nothing new publishes nothing.
    h.pipeline.run_pass(&Output::Outbox).await.unwrap();
    assert_eq!(payloads(&h.store).await.len(), all.len());
}

#[tokio::test]
async fn only_closed_windows_go_out_and_samples_mode_still_publishes_every_sample() {
    let sim = realistic(1, 1603).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_with(&sim, &dir, "1d", |s| {
        series_settings(s);
        s.sync.start = "2026-11-30".parse().unwrap();
    })
    .await;
    let out = Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert!(out.of("heart-rate-series").is_empty(), "03:05 with a 3 h look-back: no window of today is closed");

    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_with(&sim, &dir, "1d", |s| {
        series_settings(s);
        common::samples_mode(s);
        s.sync.start = "2026-11-30".parse().unwrap();
    })
    .await;
    let out = Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    let raw = sim.google_heart_rate(0, at("2026-11-30T00:00:00Z"), at(AT));
    assert_eq!(out.of("heart-rate").len(), raw.len(), "samples mode: one message per sample");
    assert!(out.of("heart-rate-series").is_empty());
}

/// The heart-rate-series messages in the outbox.
async fn payloads(store: &wearbridge::store::SqlStore) -> Vec<Value> {
    let mut v: Vec<Value> = store
        .outbox_pending(100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|p| serde_json::from_str::<Value>(&p.entry.payload).unwrap())
        .filter(|m| m["header"]["schema_id"]["name"] == "heart-rate-series")
        .collect();
    v.sort_by_key(|m| m["header"]["uuid"].as_str().unwrap().to_owned());
    v
}
