//! The Withings source against the simulator: every dataset, blood pressure as one
//! message, rotation and crashes, 601 throttling everyone, isolation, restarts.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use wearbridge::config::Dataset;
use wearbridge::pipeline::Output;
use wearbridge::simulator::Fault;
use wearbridge::store::{AccountStatus, Store};

use common::Collect;

#[tokio::test]
async fn every_dataset_yields_valid_messages() {
    let sim = common::simulator(2, 41).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "3d", |_| {}).await;
    let out = Arc::new(Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.synced, summary.failed, summary.invalid, summary.skipped_points), (2, 0, 0, 0), "{summary:?}");
    for t in [
        "device-status",
        "daily-activity",
        "heart-rate",
        "sleep-episode",
        "body-weight",
        "body-fat-percentage",
        "body-fat-mass",
        "fat-free-mass",
        "muscle-mass",
        "bone-mass",
        "body-water-mass",
        "oxygen-saturation",
        "skin-temperature",
        "pulse-wave-velocity",
    ] {
        assert!(!out.of(t).is_empty(), "no {t} messages");
    }
    let schemas = wearbridge::schemas::Schemas::load().unwrap();
    for d in out.0.lock().unwrap().iter() {
        schemas.validate(&d.message).unwrap();
        assert_eq!(d.message["header"]["source_provider"], "withings");
    }
    // userid came as a number for one person and a string for the other: both resolved.
    let subjects: BTreeSet<String> = out.0.lock().unwrap().iter().map(|d| d.partition_key.clone()).collect();
    assert_eq!(subjects.len(), 2);
    let text = out.text();
    for p in sim.people() {
        assert!(!text.contains(&p.withings_user_id.to_string()), "user id leaked");
        assert!(!text.contains(p.time_zone.name()));
    }
    for banned in ["ScanWatch", "Body+", "BPM Connect", "deviceid", "hash_deviceid", "81.2"] {
        assert!(!text.contains(banned), "{banned} leaked or an ambiguous group was published");
    }
    // Activity is published only for days that are over where the person is.
    for p in sim.people() {
        let person = format!("{}-withings", p.name);
        let provider = wearbridge::sources::withings::PROVIDER;
        let subject = common::subject_of(&h.store, &person, provider, &p.withings_user_id.to_string()).await;
        let today = common::now().with_timezone(&p.time_zone).date_naive();
        let days: Vec<chrono::NaiveDate> = out
            .of("daily-activity")
            .iter()
            .filter(|m| m["subject"] == subject.as_str())
            .map(|m| m["body"]["effective_time_frame"]["time_interval"]["date"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(!days.is_empty());
        assert!(days.iter().all(|d| *d < today), "{days:?} vs {today}");
        assert_eq!(days.iter().max().copied(), today.pred_opt());
    }
}

#[tokio::test]
async fn blood_pressure_is_one_message_in_mmhg() {
    let sim = common::simulator(1, 42).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "10d", |s| s.sync.datasets = vec![Dataset::Body]).await;
    let out = Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    let bp = out.of("blood-pressure");
    assert!(!bp.is_empty());
    for m in &bp {
        let body = &m["body"];
        assert_eq!(body["systolic_blood_pressure"]["unit"], "mmHg");
        assert_eq!(body["diastolic_blood_pressure"]["unit"], "mmHg");
        assert!(
            body["systolic_blood_pressure"]["value"].as_f64().unwrap()
                > body["diastolic_blood_pressure"]["value"].as_f64().unwrap()
        );
    }
}

#[tokio::test]
async fn intraday_heart_rate_is_read_in_windows_of_at_most_a_day() {
    let sim = common::simulator(1, 43).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "3d", |s| s.sync.datasets = vec![Dataset::HeartRate]).await;
    let out = Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!(sim.request_count("withings.getintradayactivity"), 3);
    let hr = out.of("heart-rate");
    assert_eq!(hr.len() as u64, sim.request_count("points.withings.getintradayactivity"));
    assert_eq!(hr.len(), 423, "at the pinned instant");
    let ids: BTreeSet<String> = hr.iter().map(|m| m["header"]["uuid"].to_string()).collect();
    assert_eq!(ids.len(), hr.len());
}

#[tokio::test]
async fn measure_groups_are_paged() {
    let sim = common::simulator(1, 44).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "60d", |s| s.sync.datasets = vec![Dataset::Body]).await;
    let out = Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    let groups = sim.request_count("points.withings.getmeas");
    assert_eq!(groups, 150, "{groups}");
    assert_eq!(sim.request_count("withings.getmeas"), groups.div_ceil(50));
}

#[tokio::test]
async fn a_crash_between_refresh_and_first_data_call_loses_nothing() {
    let sim = common::simulator(1, 45).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "1d", |_| {}).await;
    let account = h.store.account(&format!("{}-withings", sim.people()[0].name)).await.unwrap().unwrap();
    // Refresh: a new pair is issued and stored. Then "crash" before any data call.
    h.pipeline.tokens().access_token(&account).await.unwrap();
    drop(h.pipeline);
    sqlx::query("UPDATE tokens SET access_token = NULL, access_expires_at = NULL")
        .execute(h.store.sqlite_pool().expect("a SQLite store"))
        .await
        .unwrap();
    let restarted = common::pipeline_on(&h.loaded, h.store.clone(), &h.clock);
    let summary = restarted.run_pass(&Output::Outbox).await.unwrap();
    assert_eq!((summary.synced, summary.needs_reconsent, summary.failed), (1, 0, 0), "{summary:?}");
    // And after the data calls the first refresh token is dead upstream: only the stored
    // rotated one works.
    assert_eq!(sim.request_count("withings.requesttoken"), 2);
    let tokens = h.store.tokens(account.id).await.unwrap().unwrap();
    use secrecy::ExposeSecret;
    assert_ne!(tokens.refresh_token.expose_secret(), sim.people()[0].withings_refresh_token);
    assert!(h.store.account(&account.name).await.unwrap().unwrap().provider_user_id.is_some());
}

#[tokio::test]
async fn a_601_pauses_every_account() {
    let sim = common::simulator(3, 46).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "1d", |s| s.sync.datasets = vec![Dataset::Body, Dataset::Sleep]).await;
    sim.faults().inject_for_person("withings.getmeas", 0, Fault::Envelope { status: 601, wait_seconds: Some(5) }, 1);
    let summary = h.pipeline.run_pass(&Output::DryRun(Arc::new(Collect::default()))).await.unwrap();
    assert_eq!((summary.synced, summary.failed), (3, 0), "{summary:?}");
    let log = sim.request_log();
    let (t0, _) = log.iter().find(|(_, e)| e == "fault:withings.getmeas").expect("the 601 was served").clone();
    // Requests already on their way may land just after the 601 (a second is room for a
    // loaded runner); none may start later within the pause.
    let during: Vec<_> = log
        .iter()
        .filter(|(t, e)| {
            e.starts_with("withings.") && *t > t0 + Duration::from_secs(1) && *t < t0 + Duration::from_secs(4)
        })
        .collect();
    assert!(during.is_empty(), "requests during the pause: {during:?}");
    assert!(log.iter().any(|(t, e)| e.starts_with("withings.") && *t >= t0 + Duration::from_millis(4500)));
}

#[tokio::test]
async fn one_failing_account_does_not_stop_the_others() {
    let sim = common::simulator(3, 47).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "1d", |_| {}).await;
    sim.revoke_withings(1);
    // Person 2's token is refused even when fresh: one refresh, then needs_reconsent.
    sim.faults().inject_for_person("withings.getdevice", 2, Fault::Envelope { status: 401, wait_seconds: None }, 5);
    let out = Arc::new(Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.synced, summary.needs_reconsent, summary.failed), (1, 2, 0), "{summary:?}");
    for (i, expected) in
        [(0, AccountStatus::Active), (1, AccountStatus::NeedsReconsent), (2, AccountStatus::NeedsReconsent)]
    {
        let a = h.store.account(&format!("{}-withings", sim.people()[i].name)).await.unwrap().unwrap();
        assert_eq!(a.status, expected, "person {i}");
        assert!(h.store.tokens(a.id).await.unwrap().is_some(), "tokens are never erased");
    }
    assert!(!out.of("heart-rate").is_empty());
}

#[tokio::test]
async fn restart_adds_no_duplicates() {
    let sim = common::simulator(2, 48).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "3d", |_| {}).await;
    h.pipeline.run_pass(&Output::Outbox).await.unwrap();
    let ids = || async {
        let ids: Vec<String> = sqlx::query_scalar("SELECT message_id FROM outbox")
            .fetch_all(h.store.sqlite_pool().expect("a SQLite store"))
            .await
            .unwrap();
        ids
    };
    let first = ids().await;
    let again = h.reopen().run_pass(&Output::Outbox).await.unwrap();
    assert_eq!(again.synced, 2);
    let second = ids().await;
    assert_eq!(second.iter().collect::<BTreeSet<_>>().len(), second.len());
    assert!(second.len() - first.len() <= 6, "{} new", second.len() - first.len());
}
