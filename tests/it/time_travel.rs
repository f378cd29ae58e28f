//! The same sync at many instants: just after midnight, noon, just before midnight, the
//! days Europe (Berlin, as Paris) and America/New_York change to and from daylight saving
//! time, and 29 February. Each pass reads exactly what the simulated world holds in its
//! window — counted from the simulator's ground truth for readings, and from the civil
//! calendar for daily values (a window over a 23-hour day holds one day more) — and two
//! consecutive passes neither skip nor repeat a reading or a civil day. Withings accounts
//! publish exactly the civil days that are over where each person is.

use crate::common;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use wearbridge::clock::Clock;
use wearbridge::pipeline::Output;
use wearbridge::simulator::Simulator;

use common::Collect;

/// Six people: New York, Berlin, Kolkata, Sydney, Los Angeles and UTC.
const PEOPLE: usize = 6;
const HISTORY: &str = "2d";

fn at(text: &str) -> DateTime<Utc> {
    wearbridge::clock::parse_instant(text).unwrap()
}

/// Civil days of person `i` in `[date(from), date(to))` in their zone.
fn civil_days(sim: &Simulator, i: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let zone = sim.people()[i].time_zone;
    (from.with_timezone(&zone).date_naive(), to.with_timezone(&zone).date_naive())
}

/// What a pass over `[from, to)` must publish, per message type, by the ground truth.
fn expected(sim: &Simulator, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<&'static str, usize> {
    let mut want = BTreeMap::new();
    for i in 0..PEOPLE {
        for (message_type, data_type) in [
            ("heart-rate", "heart-rate"),
            ("sleep-episode", "sleep"),
            ("body-weight", "weight"),
            ("body-fat-percentage", "body-fat"),
        ] {
            *want.entry(message_type).or_default() += sim.google_readings(i, data_type, from, to).len();
        }
        let (first, today) = civil_days(sim, i, from, to);
        *want.entry("resting-heart-rate").or_default() += (today - first).num_days() as usize;
        *want.entry("daily-activity").or_default() += sim.google_activity_days(i, first, today).len();
    }
    want
}

fn counted(out: &Collect) -> BTreeMap<&'static str, usize> {
    ["heart-rate", "sleep-episode", "body-weight", "body-fat-percentage", "resting-heart-rate", "daily-activity"]
        .into_iter()
        .map(|t| (t, out.count(t)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reads_exactly_its_window_at_any_instant() {
    let instants = [
        "2026-11-30T00:05:00Z",
        "2026-11-30T11:59:00Z",
        "2026-11-30T23:59:00Z",
        // Berlin (as Paris) springs forward at 01:00 UTC, falls back at 01:00 UTC.
        "2027-03-28T00:59:00Z",
        "2027-03-28T01:01:00Z",
        "2027-03-29T22:30:00Z",
        "2027-10-31T00:59:00Z",
        "2027-10-31T01:01:00Z",
        // New York springs forward at 07:00 UTC, falls back at 06:00 UTC.
        "2027-03-14T06:59:00Z",
        "2027-03-14T07:01:00Z",
        "2027-11-07T05:59:00Z",
        "2027-11-07T06:01:00Z",
        "2027-11-08T04:30:00Z",
        "2028-02-29T12:00:00Z",
        "2028-03-01T00:00:00Z",
    ];
    let clock = Clock::pinned(at(instants[0]));
    let sim = common::simulator_at(PEOPLE, 101, clock.clone()).await;
    let mut devices = None;
    for instant in instants {
        let now = at(instant);
        clock.set(now);
        let dir = tempfile::tempdir().unwrap();
        let h = common::harness(&sim, &dir, HISTORY).await;
        let out = std::sync::Arc::new(Collect::default());
        let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
        assert_eq!((summary.synced, summary.failed, summary.skipped_points), (PEOPLE as u64, 0, 0), "{instant}");
        let want = expected(&sim, now - TimeDelta::days(2), now);
        assert_eq!(counted(&out), want, "at {instant}");
        assert!(want["heart-rate"] > PEOPLE * 250, "at {instant}: two days of samples");
        assert_eq!(out.ids().len(), out.len(), "at {instant}: no id twice");
        // Paired devices do not depend on the hour at all.
        let n = out.count("device-status");
        assert_eq!(*devices.get_or_insert(n), n, "at {instant}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_values_follow_the_civil_calendar_across_a_23_hour_day() {
    // 00:30 on 30 March in Berlin: 48 hours back is 23:30 on 27 March, because 28 March
    // had 23 hours. Three civil days are over, not two.
    let now = at("2027-03-29T22:30:00Z");
    let sim = common::simulator_at(PEOPLE, 102, Clock::pinned(now)).await;
    let berlin = sim.people().iter().position(|p| p.time_zone == chrono_tz::Europe::Berlin).unwrap();
    let (first, today) = civil_days(&sim, berlin, now - TimeDelta::days(2), now);
    assert_eq!((first.to_string(), today.to_string()), ("2027-03-27".into(), "2027-03-30".into()));
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, HISTORY).await;
    let out = std::sync::Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    let want = expected(&sim, now - TimeDelta::days(2), now);
    assert_eq!(counted(&out), want);
    // Everyone else's window covers two civil days.
    assert_eq!(want["resting-heart-rate"], 2 * PEOPLE + 1);
}

/// Distinct outbox messages of one type.
async fn outbox_count(store: &wearbridge::store::SqlStore, message_type: &str) -> usize {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(DISTINCT message_id) FROM outbox WHERE payload LIKE ?")
        .bind(format!("%\"name\":\"{message_type}\"%"))
        .fetch_one(store.sqlite_pool().expect("a SQLite store"))
        .await
        .unwrap();
    n as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_passes_neither_skip_nor_repeat() {
    for (first, second) in [
        ("2026-11-30T23:59:00Z", "2026-12-01T00:05:00Z"),
        ("2027-03-28T00:45:00Z", "2027-03-28T01:15:00Z"),
        ("2027-11-07T05:50:00Z", "2027-11-07T06:10:00Z"),
        ("2028-02-28T23:50:00Z", "2028-02-29T23:50:00Z"),
    ] {
        let (t1, t2) = (at(first), at(second));
        let clock = Clock::pinned(t1);
        let sim = common::simulator_at(PEOPLE, 103, clock.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let h = common::harness(&sim, &dir, HISTORY).await;
        let one = h.pipeline.run_pass(&Output::Outbox).await.unwrap();
        assert_eq!(one.failed, 0, "{first}");
        clock.set(t2);
        let two = h.reopen().run_pass(&Output::Outbox).await.unwrap();
        assert_eq!(two.failed, 0, "{second}");
        let want = expected(&sim, t1 - TimeDelta::days(2), t2);
        let mut got = BTreeMap::new();
        for message_type in want.keys() {
            got.insert(*message_type, outbox_count(&h.store, message_type).await);
        }
        assert_eq!(got, want, "{first} then {second}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withings_days_follow_the_calendar_at_any_instant() {
    for instant in [
        "2026-11-30T00:05:00Z",
        "2026-11-30T23:59:00Z",
        "2027-03-28T01:01:00Z",
        "2027-11-07T06:01:00Z",
        "2028-02-29T12:00:00Z",
    ] {
        let now = at(instant);
        // A new world each time: Withings rotates refresh tokens as they are used.
        let sim = common::simulator_at(PEOPLE, 104, Clock::pinned(now)).await;
        let dir = tempfile::tempdir().unwrap();
        let h = common::harness_withings(&sim, &dir, HISTORY, |_| {}).await;
        let out = std::sync::Arc::new(Collect::default());
        let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
        assert_eq!((summary.synced, summary.failed), (PEOPLE as u64, 0), "{instant}");
        // A first backfill reads from the UTC date of `sync.start` and publishes the days
        // that are over where each person is (Withings tracks every day).
        let first = (now - TimeDelta::days(2)).date_naive();
        let want: i64 =
            sim.people().iter().map(|p| (now.with_timezone(&p.time_zone).date_naive() - first).num_days()).sum();
        assert_eq!(out.count("daily-activity") as i64, want, "at {instant}");
        assert_eq!(out.ids().len(), out.len(), "at {instant}: no id twice");
    }
}
