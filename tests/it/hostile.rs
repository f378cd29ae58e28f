//! Hostile input and bad days (issue 15): one named test per case. Whatever upstreams,
//! the node, the disk, the settings or a second process do — no panic, no stall, no lost
//! message, no leaked name.

use crate::common;

use anonymizer::{Anonymizer, Modality, Observation, Policy, PseudonymKey, Record};
use chrono::{DateTime, NaiveDate, Utc};
use proptest::prelude::*;
use wearbridge::simulator;
use wearbridge::sources::fitbit::PROVIDER as FITBIT;
use wearbridge::store::Store;

/// Case 2: with a date shift, an upstream time at the edge of the calendar is dropped
/// (counted), never a panic and never published unshifted.
#[test]
fn case_02_calendar_edges_are_dropped_not_a_panic() {
    let a = Anonymizer::new(PseudonymKey::new("h", [1; 32]).unwrap(), Policy::default().with_date_shift_days(400));
    let edges = [
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
        DateTime::parse_from_rfc3339("-262143-01-01T00:00:00Z").map(|t| t.to_utc()).unwrap_or(DateTime::<Utc>::MIN_UTC),
        DateTime::from_timestamp(-8_334_601_228_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC),
    ];
    for at in edges {
        for observation in [
            Observation::HeartRate { beats_per_minute: 60.0, at, modality: Modality::Sensed },
            Observation::Sleep {
                start: at,
                end: at,
                main_sleep: true,
                minutes_asleep: None,
                minutes_awake: None,
                stages: Default::default(),
            },
            Observation::DailyActivity {
                day: at.date_naive(),
                steps: Some(1),
                distance_m: None,
                active_minutes: None,
                kcal: None,
            },
        ] {
            let record = Record { provider: FITBIT, account_id: "u".into(), source_key: "k".into(), observation };
            if let Ok(m) = a.anonymize(&record) {
                assert!(m.header.source_creation_date_time <= at, "shifted back, never forward or unshifted");
            }
        }
    }
    assert!(a.dropped().total() > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Case 2, any instant chrono can hold and any day: no panic under any shift.
    #[test]
    fn case_02_any_time_any_shift_never_panics(
        secs in DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
        days in proptest::num::i32::ANY,
        shift in 0u32..100_000,
    ) {
        let a = Anonymizer::new(PseudonymKey::new("h", [2; 32]).unwrap(), Policy::default().with_date_shift_days(shift));
        let at = DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let day = NaiveDate::from_num_days_from_ce_opt(days).unwrap_or(NaiveDate::MIN);
        for observation in [
            Observation::HeartRate { beats_per_minute: 70.0, at, modality: Modality::Sensed },
            Observation::RestingHeartRate { beats_per_minute: 55.0, day },
        ] {
            let record = Record { provider: FITBIT, account_id: "u".into(), source_key: "k".into(), observation };
            let _ = a.anonymize(&record);
        }
    }
}

/// Case 10: absurd settings fail with the key's name (in `check-config` too), never a
/// panic; a refresh token of a megabyte is refused.
#[tokio::test]
async fn case_10_absurd_settings_name_their_key() {
    let sim = common::simulator(1, 1510).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = crate::streamr::write_config_for(&sim, d, "http", "");
    for (set, key) in [
        ("sync.start=97000000d", "sync.start"),
        ("sync.lookback=99999999d", "sync.lookback"),
        ("streamr.messages_per_second=0", "streamr.messages_per_second"),
        ("anonymizer.granularity.heart-rate=0s", "anonymizer.granularity.heart-rate"),
        ("sync.interval=0s", "sync.interval"),
    ] {
        for command in [&["check-config"][..], &["run", "--once", "--dry-run"][..]] {
            let mut args = vec!["--set", set];
            args.extend_from_slice(command);
            let out = crate::streamr::run(d, &config, &args, None).await;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{set} {command:?}: {stderr}");
            assert!(stderr.contains(key) && !stderr.contains("panicked"), "{set}: {stderr}");
        }
    }
    let big = d.join("big-token");
    std::fs::write(&big, "a".repeat(1 << 20)).unwrap();
    let out = crate::streamr::run(
        d,
        &config,
        &["users", "add", "fitbit", "x", "--refresh-token-file", big.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than 4096 bytes"));
}

/// Case 10: `run --once` exits 4 when an account failed to sync (and 0 once it syncs).
#[tokio::test]
async fn case_10_run_once_exits_4_when_an_account_failed() {
    let sim = common::simulator(2, 1511).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = crate::streamr::write_config_for(&sim, d, "http", "");
    for p in sim.people() {
        let token = d.join(format!("{}.token", p.name));
        std::fs::write(&token, &p.refresh_token).unwrap();
        let out = crate::streamr::run(
            d,
            &config,
            &["users", "add", "fitbit", &p.name, "--refresh-token-file", token.to_str().unwrap()],
            None,
        )
        .await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    sim.faults().inject_for_person("google.dataPoints.heart-rate", 0, simulator::Fault::Status(500), 1000);
    for args in [&["run", "--once", "--dry-run"][..], &["run", "--once"][..]] {
        let out = crate::streamr::run(d, &config, args, None).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(stderr.contains("1 of 2 accounts failed to sync"), "{stderr}");
    }
    sim.faults().clear();
    let out = crate::streamr::run(d, &config, &["run", "--once"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Case 1: a token endpoint asking for a pause of decades (Withings 601 `wait_seconds`)
/// is waited the capped back-off, then that account fails this pass — the pass ends, the
/// account keeps its consent, and the next pass syncs it.
#[tokio::test]
async fn case_01_a_huge_token_wait_is_capped_and_the_pass_ends() {
    let sim = common::simulator(2, 1501).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "6h", |_| {}).await;
    let forever = simulator::Fault::Envelope { status: 601, wait_seconds: Some(1_000_000_000) };
    sim.faults().inject("withings.requesttoken", forever, 1000);
    let summary = h.pipeline.run_pass(&wearbridge::pipeline::Output::Outbox).await.unwrap();
    assert_eq!((summary.synced, summary.failed, summary.needs_reconsent), (0, 2, 0), "{summary:?}");
    assert_eq!(sim.request_count("withings.requesttoken"), 8, "four capped attempts per account");
    for account in h.store.accounts().await.unwrap() {
        assert_eq!(account.status, wearbridge::store::AccountStatus::Active);
    }
    sim.faults().clear();
    let summary = h.pipeline.run_pass(&wearbridge::pipeline::Output::Outbox).await.unwrap();
    assert_eq!((summary.synced, summary.failed), (2, 0), "{summary:?}");
}

/// Case 3: two processes on one store (here two pipelines, as a publishing run and a dry
/// run would be). B reads the refresh token, A rotates it and uses the new access token
/// (which kills the old refresh token at Withings), then B's refresh arrives with the old
/// one: `invalid_grant`. B reads the store again and uses A's tokens; the person is not
/// locked out.
#[tokio::test]
async fn case_03_a_token_rotated_by_another_process_is_reread_not_a_lockout() {
    let sim = common::simulator(1, 1503).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "6h", |_| {}).await;
    let (a, b) = (h.reopen(), h.reopen());
    let account = h.store.accounts().await.unwrap().remove(0);
    // B's refresh request is held 600 ms at the server; A's goes through meanwhile.
    sim.faults().inject("withings.requesttoken", simulator::Fault::Delay(std::time::Duration::from_millis(600)), 1);
    let b_refresh = b.tokens().force_refresh(&account);
    let a_pass = async {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        a.run_pass(&wearbridge::pipeline::Output::Outbox).await.unwrap()
    };
    let (b_token, a_summary) = tokio::join!(b_refresh, a_pass);
    assert_eq!(a_summary.synced, 1, "{a_summary:?}");
    assert!(b_token.is_ok(), "{b_token:?}");
    assert_eq!(h.store.account(&account.name).await.unwrap().unwrap().status, wearbridge::store::AccountStatus::Active);
    let summary = b.run_pass(&wearbridge::pipeline::Output::Outbox).await.unwrap();
    assert_eq!((summary.synced, summary.needs_reconsent), (1, 0), "{summary:?}");
}

/// Case 4: a node answering 429 (then recovering) is waited out: nothing is quarantined,
/// the messages wait in the outbox (exit 3) and go out once the node takes them.
#[tokio::test]
async fn case_04_a_429_from_the_node_is_transient_never_a_quarantine() {
    let sim = common::simulator(1, 1504).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = crate::streamr::write_config_for(&sim, d, "http", "");
    crate::streamr::enrol(&sim, d, &config, 1).await;
    sim.faults().inject("streamr.publish", simulator::Fault::RateLimited { retry_after: Some(1) }, 100_000);
    let out = crate::streamr::run(d, &config, &["run", "--once"], None).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("quarantined=0"), "{stderr}");
    assert!(sim.streamr_received().is_empty());
    let waiting: usize = stderr
        .split("messages wait in the outbox")
        .next()
        .and_then(|s| s.rsplit("error: ").next())
        .and_then(|n| n.trim().parse().ok())
        .expect("the count of waiting messages");
    assert!(waiting > 100, "{waiting}");
    sim.faults().clear();
    let out = crate::streamr::run(d, &config, &["run", "--once"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sim.streamr_received().len(), waiting, "every message, once the node takes them");
}

/// Case 6: upstream error text (which can name the person) is reduced to codes and
/// status names before it reaches a log line or an error.
#[tokio::test]
async fn case_06_upstream_error_text_never_reaches_the_log() {
    let sim = common::simulator(1, 1506).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = crate::streamr::write_config_for(&sim, d, "http", "");
    crate::streamr::enrol(&sim, d, &config, 1).await;
    let hostile = "user Jane Q. Public jane.public@example.com <b>failed</b>";
    let fault = || simulator::Fault::ErrorText { status: 500, text: hostile.into() };
    sim.faults().inject("google.dataPoints.heart-rate", fault(), 1000);
    sim.faults().inject("google.token", fault(), 1);
    let withings = || simulator::Fault::ErrorText { status: 2555, text: hostile.into() };
    sim.faults().inject("withings.requesttoken", withings(), 1);
    sim.faults().inject("withings.getmeas", withings(), 1000);
    for args in [&["-v", "run", "--once", "--dry-run"][..], &["--log-format", "json", "-v", "run", "--once"][..]] {
        let out = crate::streamr::run(d, &config, args, None).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{stderr}");
        for needle in ["Jane", "jane.public", "example.com", "<b>"] {
            assert!(!stderr.contains(needle), "{needle} leaked: {stderr}");
        }
        assert!(stderr.contains("getmeas: Withings status 2555"), "the status is kept: {stderr}");
        assert!(stderr.contains("HTTP 500 INTERNAL") || stderr.contains("(withheld)"), "{stderr}");
    }
}

/// Case 5: one bad value inside a good page skips and counts that one point; the rest of
/// the page is published and the dataset's cursor moves on.
#[tokio::test]
async fn case_05_one_bad_value_skips_one_point_not_the_page() {
    use std::sync::Arc;
    use wearbridge::pipeline::Output;
    let hostile = [
        r#""beatsPerMinute":"NaN","x":""#,
        r#""beatsPerMinute":1e308,"x":""#,
        r#""beatsPerMinute":"99999999999999999999999","x":""#,
        r#""beatsPerMinute":{"nested":[1,2]},"x":""#,
    ];
    for (n, to) in hostile.into_iter().enumerate() {
        let sim = common::simulator(1, 1505 + n as u64).await;
        let dir = tempfile::tempdir().unwrap();
        let h =
            common::harness_with(&sim, &dir, "6h", |s| s.sync.datasets = vec![wearbridge::config::Dataset::HeartRate])
                .await;
        let rewrite = simulator::Fault::Rewrite { from: r#""beatsPerMinute":""#.into(), to: to.into() };
        sim.faults().inject("google.dataPoints.heart-rate", rewrite, 1);
        let out = Arc::new(common::Collect::default());
        let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
        let served = sim.request_count("points.heart-rate") as usize;
        assert_eq!((summary.synced, summary.failed, summary.skipped_points), (1, 0, 1), "{to}: {summary:?}");
        assert_eq!(out.of("heart-rate").len(), served - 1, "{to}: every other sample of the page");
    }

    // Withings: a measure value that is not a number skips its group only.
    let sim = common::simulator(1, 1509).await;
    let dir = tempfile::tempdir().unwrap();
    let h =
        common::harness_withings(&sim, &dir, "3d", |s| s.sync.datasets = vec![wearbridge::config::Dataset::Body]).await;
    let clean = Arc::new(common::Collect::default());
    h.pipeline.run_pass(&Output::DryRun(clean.clone())).await.unwrap();
    sim.faults().inject(
        "withings.getmeas",
        simulator::Fault::Rewrite { from: r#""value":"#.into(), to: r#""value":"seventy","x":"#.into() },
        1,
    );
    let out = Arc::new(common::Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.synced, summary.failed, summary.skipped_points), (1, 0, 1), "{summary:?}");
    assert!(out.len() >= 1 && out.len() < clean.len(), "{} of {}", out.len(), clean.len());
}

/// Case 7: implausible times are skipped and counted, never published: heart rate at
/// 9999-12-31, 1900-01-01, 0001-01-01 or outside the window asked for; daily activity
/// dated 9999-12-31.
#[tokio::test]
async fn case_07_implausible_times_are_skipped_not_published() {
    use std::sync::Arc;
    use wearbridge::config::Dataset;
    use wearbridge::pipeline::Output;
    for (n, when) in ["9999-12-31T00:00:00Z", "1900-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2020-01-01T00:00:00Z"]
        .into_iter()
        .enumerate()
    {
        let sim = common::simulator(1, 1570 + n as u64).await;
        let dir = tempfile::tempdir().unwrap();
        let h = common::harness_with(&sim, &dir, "6h", |s| s.sync.datasets = vec![Dataset::HeartRate]).await;
        let to = format!(r#""physicalTime":"{when}","x":""#);
        sim.faults().inject(
            "google.dataPoints.heart-rate",
            simulator::Fault::Rewrite { from: r#""physicalTime":""#.into(), to },
            1,
        );
        let out = Arc::new(common::Collect::default());
        let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
        let served = sim.request_count("points.heart-rate") as usize;
        assert_eq!((summary.synced, summary.skipped_points), (1, 1), "{when}: {summary:?}");
        assert_eq!(out.of("heart-rate").len(), served - 1, "{when}");
        // A date value starts with its year right after the quote; a bare "2020" could be
        // part of a random subject's hex.
        let year = format!("\"{}-", &when[..4]);
        assert!(out.of("heart-rate").iter().all(|m| !m.to_string().contains(&year)), "{when} was published");
    }

    let sim = common::simulator(1, 1579).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_withings(&sim, &dir, "3d", |s| s.sync.datasets = vec![Dataset::Activity]).await;
    sim.faults().inject(
        "withings.getactivity",
        simulator::Fault::Rewrite { from: r#""date":""#.into(), to: r#""date":"9999-12-31","x":""#.into() },
        1,
    );
    let out = Arc::new(common::Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.synced, summary.skipped_points), (1, 1), "{summary:?}");
    assert!(!out.of("daily-activity").is_empty());
    assert!(out.of("daily-activity").iter().all(|m| !m.to_string().contains("\"9999-")));
}

/// Case 11: an answer larger than `sync.max_response_bytes` is refused as it streams in
/// (here 1 GiB against a 1 MiB cap, without Content-Length): that call fails, is logged,
/// and the account's other datasets and the other accounts go on.
#[tokio::test]
async fn case_11_an_endless_answer_is_cut_at_the_cap() {
    use std::sync::Arc;
    use wearbridge::pipeline::Output;
    let sim = common::simulator(2, 1511).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_with(&sim, &dir, "6h", |s| s.sync.max_response_bytes = 1 << 20).await;
    sim.faults().inject_for_person("google.dataPoints.heart-rate", 0, simulator::Fault::Huge(1 << 30), 1);
    let out = Arc::new(common::Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.synced, summary.failed), (1, 1), "{summary:?}");
    assert!(!out.of("device-status").is_empty() && !out.of("heart-rate").is_empty(), "the rest went on");
    assert_eq!(sim.request_count("google.dataPoints.heart-rate"), 2, "not retried: the same answer would come");
}

/// Case 9: `/readyz` says 503 while the store refuses writes (here another process holds
/// SQLite's write lock), and 200 again once it takes them.
#[tokio::test]
async fn case_09_readyz_reflects_writes() {
    use sqlx::Connection;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wb.db");
    let store = Arc::new(
        wearbridge::store::SqlStore::open(
            &format!("sqlite://{}", path.display()),
            wearbridge::store::TokenCipher::new([4; 32]),
        )
        .await
        .unwrap(),
    );
    let state = wearbridge::server::ServerState {
        store,
        publisher: None,
        metrics: None,
        enrolment: None,
        clock: wearbridge::clock::Clock::pinned(common::now()),
        datasets: Vec::new(),
        push: None,
    };
    let port = common::free_port();
    let shutdown = wearbridge::retry::CancellationToken::new();
    let server = wearbridge::server::serve(([127, 0, 0, 1], port).into(), state, shutdown.clone()).await.unwrap();
    let ready = || async move {
        let r = crate::common::http().get(format!("http://127.0.0.1:{port}/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(ready().await.0, 200);
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE").execute(&mut other).await.unwrap();
    let (status, text) = ready().await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("write"), "{text}");
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    assert_eq!(ready().await.0, 200);
    shutdown.cancel();
    let _ = server.await;
}

/// Case 8: the consent pages send security headers; the leave code never travels in a
/// URL; anonymous starts of enrolment are capped with a clear 429 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_08_consent_pages_are_hardened() {
    let sim = common::simulator(1, 1508).await;
    let dir = tempfile::tempdir().unwrap();
    let (base, _store, _stop) = crate::onboarding::consent_server(&sim, &dir, None).await;
    let http = crate::common::http_builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in ["/connect", "/leave", "/privacy", "/connect/callback?state=x"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
    }
    let leave = http.get(format!("{base}/leave?account=a&secret=s")).send().await.unwrap().text().await.unwrap();
    assert!(!leave.contains("value=\"s\""), "a secret in the URL is not echoed into the page");
    let mut last = 0;
    for _ in 0..1001 {
        let r = http.post(format!("{base}/connect/start")).form(&[("provider", "fitbit")]).send().await.unwrap();
        last = r.status().as_u16();
        if last == 429 {
            break;
        }
        assert_eq!(last, 303, "a redirect to the provider");
    }
    assert_eq!(last, 429, "the 1001st waiting enrolment is refused");
}

/// The hostile cases by hand: `simulate --fault` serves a fault from the command line.
#[tokio::test]
async fn simulate_serves_faults_from_the_command_line() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = common::command(
        dir.path(),
        "none.toml",
        &[
            "simulate",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--people",
            "1",
            "--fault",
            "google.dataPoints.heart-rate=error-text:503:down for maintenance*2",
        ],
    )
    .spawn()
    .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = line.strip_prefix("google health api (fitbit.api_base_url): ") {
            base = Some(url.trim().to_owned());
        }
        if line.starts_with("serving until") {
            break;
        }
    }
    let url = format!("{}/v4/users/me/dataTypes/heart-rate/dataPoints", base.expect("the API's address is printed"));
    for _ in 0..2 {
        let r = crate::common::http().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.text().await.unwrap().contains("down for maintenance"));
    }
    assert_eq!(
        crate::common::http().get(&url).send().await.unwrap().status(),
        401,
        "two faults, then the real answer (no token)"
    );
    let _ = child.kill().await;
}

/// Case 1, the daemon: one account stuck in a long wait (its heart-rate call answers
/// after a minute) holds its own sync slot only; the other account is synced again and
/// again on its schedule meanwhile; shutdown (with `run`'s grace period) ends it all.
#[tokio::test]
async fn case_01_one_slow_account_never_holds_the_others() {
    use std::sync::Arc;
    use std::time::Duration;
    let sim = common::simulator(2, 1512).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_with(&sim, &dir, "1h", |s| {
        s.sync.interval = Some(Duration::from_millis(300));
        s.sync.jitter = Duration::ZERO;
        s.sync.datasets = vec![wearbridge::config::Dataset::Devices, wearbridge::config::Dataset::HeartRate];
    })
    .await;
    sim.faults().inject_for_person(
        "google.dataPoints.heart-rate",
        0,
        simulator::Fault::Delay(Duration::from_secs(60)),
        1,
    );
    let out = Arc::new(common::Collect::default());
    let worker = wearbridge::worker::Worker {
        id: "w1".into(),
        pipeline: Arc::new(h.reopen()),
        publisher: None,
        output: wearbridge::pipeline::Output::DryRun(out.clone()),
        sync: h.loaded.settings.sync.clone(),
    };
    let shutdown = wearbridge::retry::CancellationToken::new();
    let stop = async {
        // Real time: the schedule is 300 ms; the pinned clock is moved along with it. At
        // least 2 s, and on until the healthy account has synced three times (a loaded
        // runner may take longer; 30 s at most).
        for step in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            h.clock.advance(chrono::TimeDelta::milliseconds(100));
            if step >= 20 && sim.request_count("google.dataPoints.heart-rate") > 3 {
                break;
            }
        }
        shutdown.cancel();
    };
    // As `run` does: after the signal, in-flight work gets `sync.shutdown_grace`.
    let run = worker.run(shutdown.clone());
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => panic!("the worker stopped on its own: {result:?}"),
        () = stop => {}
    }
    let graced = tokio::time::timeout(Duration::from_secs(2), &mut run).await;
    assert!(graced.is_err(), "the stuck call is still in flight: the grace period ends it, as in `run`");
    // One heart-rate call is the stuck one; every other is a sync of the healthy account.
    let healthy = sim.request_count("google.dataPoints.heart-rate") - 1;
    assert!(healthy >= 3, "the healthy account kept syncing on its 300 ms schedule: {healthy} syncs");
    let subjects: std::collections::BTreeSet<String> =
        out.of("device-status").iter().map(|m| m["subject"].as_str().unwrap().to_owned()).collect();
    assert_eq!(subjects.len(), 2, "both accounts were claimed");
}
