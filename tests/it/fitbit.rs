//! The Fitbit source on the Google Health API, dataset by dataset, against the simulator:
//! request budget, civil days and DST, scopes, crash safety around token rotation.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate, Utc};
use wearbridge::config::Dataset;
use wearbridge::pipeline::Output;
use wearbridge::store::Store;

use common::Collect;

fn total_requests(sim: &wearbridge::simulator::Simulator) -> u64 {
    sim.requests().iter().filter(|(k, _)| k.starts_with("google")).map(|(_, v)| v).sum()
}

#[tokio::test]
async fn every_dataset_yields_valid_messages() {
    let sim = common::simulator(3, 31).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "3d").await;
    let out = Arc::new(Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.synced, summary.failed, summary.invalid, summary.skipped_points), (3, 0, 0, 0), "{summary:?}");
    for t in [
        "heart-rate",
        "resting-heart-rate",
        "daily-activity",
        "sleep-episode",
        "body-weight",
        "body-fat-percentage",
        "device-status",
    ] {
        assert!(!out.of(t).is_empty(), "no {t} messages");
    }
    assert_eq!(out.of("sleep-episode").len() as u64, sim.request_count("points.sleep"));
    assert_eq!(out.of("body-weight").len() as u64, sim.request_count("points.weight"));
    assert_eq!(out.of("resting-heart-rate").len() as u64, sim.request_count("points.daily-resting-heart-rate"));
    // Device facts are reduced to a family; no model names or MAC addresses.
    let text = serde_json::to_string(&out.of("device-status")).unwrap();
    for banned in ["Charge", "Pixel", "Sense", "Inspire", "Aria", "pairedDevices", "macAddress"] {
        assert!(!text.contains(banned), "{banned} leaked: {text}");
    }
}

#[tokio::test]
async fn an_incremental_day_costs_at_most_twelve_requests() {
    let sim = common::simulator(1, 32).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "3d").await;
    h.pipeline.run_pass(&Output::Outbox).await.unwrap();

    // Move every cursor back by one day and forget the access token: the next pass is
    // one person's one-day incremental sync, refresh included.
    let account = h.store.account(&sim.people()[0].name).await.unwrap().unwrap();
    let pool = h.store.sqlite_pool().expect("a SQLite store");
    let cursors: Vec<(String, String)> = sqlx::query_as("SELECT dataset, position FROM cursors WHERE account_id = ?")
        .bind(account.id)
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(cursors.len(), 8, "{cursors:?}");
    // The person's zone, read today, stays: the pass needs no settings call.
    for (dataset, position) in cursors.into_iter().filter(|(d, _)| d != "zone") {
        let earlier = match position.parse::<NaiveDate>() {
            Ok(d) => d.pred_opt().unwrap().to_string(),
            Err(_) => (position.parse::<chrono::DateTime<Utc>>().unwrap() - chrono::TimeDelta::days(1)).to_rfc3339(),
        };
        sqlx::query("UPDATE cursors SET position = ? WHERE account_id = ? AND dataset = ?")
            .bind(earlier)
            .bind(account.id)
            .bind(dataset)
            .execute(pool)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE tokens SET access_token = NULL, access_expires_at = NULL").execute(pool).await.unwrap();

    let before = sim.requests();
    let start = total_requests(&sim);
    let summary = h.reopen().run_pass(&Output::Outbox).await.unwrap();
    assert_eq!(summary.synced, 1);
    let used = total_requests(&sim) - start;
    let after = sim.requests();
    let diff: BTreeMap<_, _> = after
        .iter()
        .filter(|(k, _)| k.starts_with("google."))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    println!("one-day incremental sync: {used} requests: {diff:?}");
    assert!(used <= 12, "{used} requests: {diff:?}");
    assert_eq!(diff.get("google.token"), Some(&1));
}

#[tokio::test]
async fn daily_data_follows_the_persons_civil_days_across_dst() {
    // Person 0 is in America/New_York. Backfill from before the last fall-back day.
    let sim = common::simulator(3, 33).await;
    let today = common::now().date_naive();
    let fall_back = |year| {
        let first = NaiveDate::from_ymd_opt(year, 11, 1).unwrap();
        first + chrono::Days::new(u64::from((7 - first.weekday().num_days_from_sunday()) % 7))
    };
    let dst = if fall_back(today.year()) < today { fall_back(today.year()) } else { fall_back(today.year() - 1) };
    let start = (dst - chrono::Days::new(2)).to_string();
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_with(&sim, &dir, &start, |s| s.sync.datasets = vec![Dataset::Activity, Dataset::HeartRate])
        .await;
    let out = Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();

    // Each person's daily values: one per civil day of their own zone, the DST day
    // included, the last one being their yesterday (today is not over yet).
    for p in sim.people() {
        let subject =
            common::subject_of(&h.store, &p.name, wearbridge::sources::fitbit::PROVIDER, &p.health_user_id).await;
        let days: Vec<NaiveDate> = out
            .of("resting-heart-rate")
            .iter()
            .filter(|m| m["subject"] == subject.as_str())
            .map(|m| m["body"]["effective_time_frame"]["time_interval"]["date"].as_str().unwrap().parse().unwrap())
            .collect();
        let unique: BTreeSet<_> = days.iter().copied().collect();
        assert_eq!(unique.len(), days.len(), "one resting value per civil day");
        let local_today = common::now().with_timezone(&p.time_zone).date_naive();
        assert_eq!(unique.last().copied(), local_today.pred_opt(), "{}: the last day is yesterday there", p.time_zone);
        let expected: BTreeSet<NaiveDate> =
            (dst - chrono::Days::new(2)).iter_days().take_while(|d| *d < local_today).collect();
        assert!(unique.is_superset(&expected) || p.time_zone.name() != "America/New_York", "{unique:?}");
        assert!(unique.contains(&dst));
    }
    let activity_days: BTreeSet<String> = out
        .of("daily-activity")
        .iter()
        .map(|m| m["body"]["effective_time_frame"]["time_interval"]["date"].as_str().unwrap().to_owned())
        .collect();
    assert!(activity_days.contains(&dst.to_string()) || activity_days.contains(&dst.succ_opt().unwrap().to_string()));
    // Published times are UTC; no offset or zone anywhere.
    let text: String = out.0.lock().unwrap().iter().map(|d| d.message.to_string()).collect();
    assert!(!text.contains("America/") && !text.contains("-05:00") && !text.contains("-04:00"));
}

#[tokio::test]
async fn a_missing_scope_skips_that_dataset_only() {
    let sim = common::simulator(2, 34).await;
    sim.deny_scope(0, "sleep.readonly");
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "2d").await;
    let out = Arc::new(Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.synced, summary.failed, summary.skipped_datasets), (2, 0, 1), "{summary:?}");
    let sleep_subjects: BTreeSet<String> = out
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.message["header"]["schema_id"]["name"] == "sleep-episode")
        .map(|d| d.partition_key.clone())
        .collect();
    assert_eq!(sleep_subjects.len(), 1, "only the person who granted sleep has sleep messages");
    assert_eq!(out.of("heart-rate").iter().map(|m| m["subject"].to_string()).collect::<BTreeSet<_>>().len(), 2);
}

#[tokio::test]
async fn sleep_sessions_are_paged_by_25() {
    let sim = common::simulator(1, 35).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_with(&sim, &dir, "40d", |s| s.sync.datasets = vec![Dataset::Sleep]).await;
    let out = Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    let sessions = out.of("sleep-episode").len();
    assert!(sessions >= 40, "{sessions}");
    assert_eq!(sessions as u64, sim.request_count("points.sleep"));
    assert_eq!(sim.request_count("google.dataPoints.sleep") as usize, sessions.div_ceil(25));
    let ids: BTreeSet<_> = out.of("sleep-episode").iter().map(|m| m["header"]["uuid"].to_string()).collect();
    assert_eq!(ids.len(), sessions);
}

#[tokio::test]
async fn a_crash_between_refresh_and_data_call_leaves_the_account_usable() {
    let sim = common::simulator(1, 36).await;
    sim.set_google_rotation(true);
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "6h").await;
    let account = h.store.account(&sim.people()[0].name).await.unwrap().unwrap();
    // Refresh (the old refresh token dies upstream), then "crash" before any data call.
    h.pipeline.tokens().access_token(&account).await.unwrap();
    drop(h.pipeline);
    sqlx::query("UPDATE tokens SET access_token = NULL, access_expires_at = NULL")
        .execute(h.store.sqlite_pool().expect("a SQLite store"))
        .await
        .unwrap();
    // A restarted process must refresh with the rotated token it stored.
    let restarted = common::pipeline_on(&h.loaded, h.store.clone(), &h.clock);
    let summary = restarted.run_pass(&Output::Outbox).await.unwrap();
    assert_eq!((summary.synced, summary.needs_reconsent, summary.failed), (1, 0, 0), "{summary:?}");
    assert_eq!(sim.request_count("google.token"), 2);
}

#[tokio::test]
async fn restart_resumes_from_cursors_without_duplicates() {
    let sim = common::simulator(2, 37).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "3d").await;
    h.pipeline.run_pass(&Output::Outbox).await.unwrap();
    let count = || async {
        let ids: Vec<String> = sqlx::query_scalar("SELECT message_id FROM outbox")
            .fetch_all(h.store.sqlite_pool().expect("a SQLite store"))
            .await
            .unwrap();
        ids
    };
    let first = count().await;
    let before = sim.request_count("points.heart-rate");
    h.reopen().run_pass(&Output::Outbox).await.unwrap();
    let second = count().await;
    assert_eq!(second.iter().collect::<BTreeSet<_>>().len(), second.len());
    assert!(second.len() - first.len() <= 8, "{} new", second.len() - first.len());
    assert!(sim.request_count("points.heart-rate") - before < 40, "the second pass reads the look-back only");
}
