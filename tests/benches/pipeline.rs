//! Throughput of the stages of one pass, and of a whole dry-run pass against the
//! in-process simulator. Run: `cargo bench --bench pipeline` (numbers in BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anonymizer::{Anonymizer, Modality, Observation, Policy, PseudonymKey, Record};
use chrono::{TimeDelta, Utc};
use secrecy::SecretString;
use wearbridge::clock::Clock;
use wearbridge::config::{Loaded, Settings, SyncStart};
use wearbridge::pipeline::{DeliveryWriter, Output};
use wearbridge::retry::Retry;
use wearbridge::schemas::Schemas;
use wearbridge::simulator::{Simulator, SimulatorConfig};
use wearbridge::sinks::Delivery;
use wearbridge::sources::fitbit::PROVIDER as FITBIT;
use wearbridge::store::{SqlStore, Store, TokenCipher};

/// Median of `runs` timings of `f`, and what `f` reported it processed.
fn measure(runs: usize, mut f: impl FnMut() -> u64) -> (Duration, u64) {
    let mut times = Vec::with_capacity(runs);
    let mut items = 0;
    for _ in 0..runs {
        let start = Instant::now();
        items = f();
        times.push(start.elapsed());
    }
    times.sort();
    (times[runs / 2], items)
}

/// The instant benchmarks run at.
fn bench_now() -> chrono::DateTime<Utc> {
    wearbridge::clock::parse_instant("2026-11-30T12:05:00Z").unwrap()
}

fn report(name: &str, (time, items): (Duration, u64)) {
    let rate = items as f64 / time.as_secs_f64();
    println!("{name:<44} {items:>8} items  {:>9.2} ms  {rate:>12.0} items/s", time.as_secs_f64() * 1e3);
}

fn records(n: usize) -> Vec<Record> {
    let start = bench_now() - TimeDelta::days(1);
    (0..n)
        .map(|i| Record {
            provider: FITBIT,
            account_id: format!("user-{}", i % 50),
            source_key: format!("heart-rate/{i}"),
            observation: Observation::HeartRate {
                beats_per_minute: 60.0 + (i % 40) as f64,
                at: start + TimeDelta::seconds(i as i64 * 7),
                modality: Modality::Sensed,
            },
        })
        .collect()
}

struct Discard;

impl DeliveryWriter for Discard {
    fn write_batch(&self, batch: &[Delivery]) -> std::io::Result<()> {
        std::hint::black_box(batch);
        Ok(())
    }
}

/// A Google Health `dataPoints` page of `n` heart-rate samples, as the API sends it: one
/// every 5 s, a Fitbit device's density while worn.
fn heart_rate_page(n: usize) -> String {
    let start = bench_now() - TimeDelta::days(2);
    let points: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let at = start + TimeDelta::seconds(i as i64 * 5);
            serde_json::json!({
                "dataSource": {"recordingMethod": "PASSIVELY_MEASURED", "platform": "FITBIT",
                    "device": {"displayName": "Pixel Watch 3", "formFactor": "WATCH", "manufacturer": "Google"}},
                "heartRate": {
                    "sampleTime": {"physicalTime": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "utcOffset": "-18000s",
                        "civilTime": {"date": {"year": 2026, "month": 11, "day": 20}, "time": {"hours": 4, "minutes": 15}}},
                    "beatsPerMinute": (55 + i % 60).to_string(),
                    "metadata": {"motionContext": "SEDENTARY", "sensorLocation": "WRIST"}
                }
            })
        })
        .collect();
    serde_json::json!({ "dataPoints": points }).to_string()
}

/// Per core: the whole per-message path against bare serde on the same input.
fn per_message_path() {
    let n = 10_000;
    let page = heart_rate_page(n);
    let anonymizer = Anonymizer::new(PseudonymKey::new("bench", [1; 32]).unwrap(), Policy::default());
    let schemas = Schemas::load().unwrap();
    let bare = measure(7, || {
        let v: serde_json::Value = serde_json::from_str(&page).unwrap();
        let points = v["dataPoints"].as_array().unwrap();
        points.iter().map(|p| serde_json::to_string(p).unwrap().len() as u64).filter(|l| *l > 0).count() as u64
    });
    let full = measure(7, || {
        let parsed: wearbridge::sources::fitbit::api::ListDataPointsResponse =
            wearbridge::normalize::parse_page(page.as_bytes()).unwrap();
        let mut out = 0;
        let mut check = schemas.batch();
        let scope = anonymizer.for_account(FITBIT, "user-1");
        for p in &parsed.data_points {
            let record = p.then(|p| wearbridge::sources::fitbit::normalize::heart_rate("user-1", p)).unwrap();
            let message = scope.anonymize(&record).unwrap();
            out += u64::from(!check.check(&message).unwrap().get().is_empty());
        }
        out
    });
    // The first stage alone: each point parsed on its own (lenient) and normalised.
    let parse = measure(7, || {
        let parsed: wearbridge::sources::fitbit::api::ListDataPointsResponse =
            wearbridge::normalize::parse_page(page.as_bytes()).unwrap();
        let records = parsed
            .data_points
            .iter()
            .filter_map(|p| p.then(|p| wearbridge::sources::fitbit::normalize::heart_rate("user-1", p)).ok());
        records.map(std::hint::black_box).count() as u64
    });
    // Typed bare serde: parse the page into structs holding the fields wearbridge reads
    // (others are skipped, as wearbridge's own types do) and serialise each point.
    #[derive(serde::Deserialize)]
    struct Page {
        #[serde(rename = "dataPoints")]
        points: Vec<Point>,
    }
    #[derive(serde::Deserialize, serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Point {
        heart_rate: Hr,
    }
    #[derive(serde::Deserialize, serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Hr {
        sample_time: SampleTime,
        beats_per_minute: String,
    }
    #[derive(serde::Deserialize, serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SampleTime {
        physical_time: String,
    }
    let typed = measure(7, || {
        let parsed: Page = serde_json::from_str(&page).unwrap();
        parsed.points.iter().map(|p| serde_json::to_string(p).unwrap().len() as u64).filter(|l| *l > 0).count() as u64
    });
    // Series mode (the default): the same samples folded into hourly windows, each window
    // anonymised (per-minute aggregates), checked and serialised; counted per sample.
    let series = measure(7, || {
        let parsed: wearbridge::sources::fitbit::api::ListDataPointsResponse =
            wearbridge::normalize::parse_page(page.as_bytes()).unwrap();
        let mut windows: std::collections::BTreeMap<i64, Vec<(chrono::DateTime<chrono::Utc>, f64)>> =
            std::collections::BTreeMap::new();
        let mut samples = 0;
        for p in &parsed.data_points {
            let record = p.then(|p| wearbridge::sources::fitbit::normalize::heart_rate("user-1", p)).unwrap();
            if let Observation::HeartRate { beats_per_minute, at, .. } = record.observation {
                windows.entry(at.timestamp().div_euclid(3600)).or_default().push((at, beats_per_minute));
                samples += 1;
            }
        }
        let mut check = schemas.batch();
        for (hour, samples) in windows {
            let start = chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap();
            let record = Record {
                provider: FITBIT,
                account_id: "user-1".into(),
                source_key: format!("heart-rate-series/{hour}/r0"),
                observation: Observation::HeartRateSeries {
                    start,
                    end: start + TimeDelta::hours(1),
                    samples,
                    revision: 0,
                },
            };
            std::hint::black_box(check.check(&anonymizer.anonymize(&record).unwrap()).unwrap());
        }
        samples
    });
    report("bare serde: parse page + serialize each point", bare);
    report("typed bare serde: parse page into structs + serialize each", typed);
    report("parse + normalize only", parse);
    report("parse + normalize + anonymize + validate + serialize", full);
    report("series: parse + normalize + fold hourly + anonymize + validate + serialize (per sample)", series);
    let rate = |(t, n): (Duration, u64)| n as f64 / t.as_secs_f64();
    println!("ratio to bare serde: {:.2}", rate(full) / rate(bare));
    println!("ratio to typed bare serde: {:.2}", rate(full) / rate(typed));
    println!("series ratio to typed bare serde (per sample): {:.2}", rate(series) / rate(typed));
}

fn main() {
    per_message_path();
    let n = 20_000;
    let input = records(n);
    let anonymizer = Anonymizer::new(PseudonymKey::new("bench", [1; 32]).unwrap(), Policy::default());
    report(
        "anonymize (record -> message)",
        measure(5, || input.iter().filter(|r| anonymizer.anonymize(r).is_ok()).count() as u64),
    );
    let messages: Vec<serde_json::Value> =
        input.iter().map(|r| serde_json::to_value(anonymizer.anonymize(r).unwrap()).unwrap()).collect();
    let schemas = Schemas::load().unwrap();
    report(
        "schema check (envelope + type), full validator on a Value",
        measure(5, || messages.iter().filter(|m| schemas.validate(m).is_ok()).count() as u64),
    );
    let typed: Vec<_> = input.iter().map(|r| anonymizer.anonymize(r).unwrap()).collect();
    report(
        "schema check, compiled, typed message + serialise",
        measure(5, || {
            let mut check = schemas.batch();
            typed.iter().filter(|m| check.check(m).is_ok()).count() as u64
        }),
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let people = 20;
        // A pinned instant: the same readings (and counts) whatever the hour.
        let clock = Clock::pinned(bench_now());
        let sim = Simulator::start(SimulatorConfig { people, seed: 7, clock: clock.clone(), ..Default::default() })
            .await
            .unwrap();
        sim.register_stream("bench.eth/health", 1);
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::default();
        s.store.url = format!("sqlite://{}", dir.path().join("bench.db").display());
        sim.configure(&mut s);
        s.sync.start = SyncStart::Ago(Duration::from_secs(7 * 86_400));
        s.streamr.streams.insert("default".into(), "bench.eth/health".into());
        let loaded = Loaded::from_settings(s);
        let store = Arc::new(SqlStore::open(&loaded.settings.store.url, TokenCipher::new([2; 32])).await.unwrap());
        for p in sim.people() {
            store.add_account(&p.name, FITBIT, &SecretString::from(p.refresh_token.clone())).await.unwrap();
        }
        let key = PseudonymKey::new("bench", [3; 32]).unwrap();
        let pipeline = wearbridge::app::pipeline(&loaded, store.clone(), key, Retry::default(), clock.clone()).unwrap();
        let output = Output::DryRun(Arc::new(Discard));
        let mut times = Vec::new();
        let mut messages = 0;
        for _ in 0..3 {
            let start = Instant::now();
            messages = pipeline.run_pass(&output).await.unwrap().messages;
            times.push(start.elapsed());
        }
        times.sort();
        report(&format!("dry-run pass, {people} people x 7 days (simulator)"), (times[1], messages));

        let start = Instant::now();
        let summary = pipeline.run_pass(&Output::Outbox).await.unwrap();
        report("outbox pass (same, first commit to SQLite)", (start.elapsed(), summary.messages));
        let entries: Vec<_> = store.outbox_pending(5_000).await.unwrap().into_iter().map(|p| p.entry).collect();
        sinks(&sim, &loaded, &entries, dir.path()).await;
        sim.stop().await;
    });
}

/// Drains `entries` from a fresh outbox through each sink with no rate limit: the
/// outbox read and acknowledgement are included, as in production.
async fn sinks(sim: &Simulator, loaded: &Loaded, entries: &[wearbridge::store::OutboxEntry], dir: &std::path::Path) {
    use wearbridge::config::{Confirm, Transport};
    let archive = dir.join("archive");
    let ws = sim.streamr_ws_url().to_owned();
    // (name, transport, url, confirm, partitions of the stream)
    let cases = [
        ("outbox -> streamr http plugin (simulated)", Transport::Http, sim.streamr_http_url(), Confirm::Subscribe, 1),
        ("outbox -> streamr websocket, confirm=subscribe", Transport::Websocket, ws.clone(), Confirm::Subscribe, 1),
        (
            "outbox -> streamr websocket, subscribe, 3 partitions",
            Transport::Websocket,
            ws.clone(),
            Confirm::Subscribe,
            3,
        ),
        ("outbox -> streamr websocket, confirm=none", Transport::Websocket, ws, Confirm::None, 1),
        (
            "outbox -> NDJSON files (fsync per batch)",
            Transport::File,
            format!("file://{}", archive.display()),
            Confirm::None,
            1,
        ),
    ];
    for (i, (name, transport, url, confirm, partitions)) in cases.into_iter().enumerate() {
        let store = Arc::new(
            SqlStore::open(
                &format!("sqlite://{}", dir.join(format!("sink{i}.db")).display()),
                TokenCipher::new([4; 32]),
            )
            .await
            .unwrap(),
        );
        let account = store.add_account("bench", FITBIT, &SecretString::from("t")).await.unwrap();
        for chunk in entries.chunks(500) {
            store.commit_batch(account.id, "bench", "c", chunk, &[]).await.unwrap();
        }
        sim.register_stream("bench.eth/health", partitions);
        let mut loaded = loaded.clone();
        let s = &mut loaded.settings.streamr;
        (s.transport, s.url, s.confirm, s.partitions) = (transport, url, confirm, partitions);
        (s.messages_per_second, s.stream_messages_per_second, s.burst) = (u32::MAX, u32::MAX, 10_000);
        let publisher =
            wearbridge::app::publisher(&loaded, store.clone(), Retry::default(), Clock::pinned(bench_now())).unwrap();
        let start = Instant::now();
        let summary = publisher.drain().await.unwrap();
        assert_eq!(summary.published as usize, entries.len(), "{name}: {summary:?}");
        report(name, (start.elapsed(), summary.published));
    }
}
