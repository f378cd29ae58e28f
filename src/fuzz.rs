//! Mutation fuzzing of every parser of outside bytes: Google Health pages and error
//! bodies, Withings envelopes, token answers, the Streamr node's websocket frames and
//! configuration values. Each target runs for a time budget
//! (`WEARBRIDGE_FUZZ_SECONDS`, default 3; `tests/run.sh` gives each 30) from a seed
//! (`WEARBRIDGE_FUZZ_SEED`, default: the clock, printed) and must never panic; inputs
//! are at most 1 MiB.
//!
//! The mutator starts from real answers (captured samples, the shapes the simulator
//! serves) and flips bits, inserts, deletes, duplicates and splices bytes, and swaps JSON
//! scalars for hostile ones (`1e308`, `"NaN"`, integers beyond 64 bits, dates at the
//! calendar's edge), which is what reaches past the JSON syntax into the normalisers.
//! Written here rather than with `cargo-fuzz`, which needs a nightly compiler.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use anonymizer::{Anonymizer, Policy, PseudonymKey, Record};

use crate::normalize::Skipped;
use crate::sources::{fitbit, withings};

const MAX_INPUT: usize = 1 << 20;

/// Scalars that break naive parsers and arithmetic.
const HOSTILE: &[&str] = &[
    "1e308",
    "-1e308",
    "1e-320",
    "NaN",
    "\"NaN\"",
    "\"Infinity\"",
    "-0",
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775809",
    "18446744073709551616",
    "\"99999999999999999999999\"",
    "null",
    "true",
    "[]",
    "{}",
    "\"\"",
    "\"seventy\"",
    "\"9999-12-31T23:59:59Z\"",
    "\"-262143-01-01T00:00:00Z\"",
    "\"+262142-12-31T23:59:59Z\"",
    "-8334601228800",
    "8334601228800",
    "\"\\u0000\\ud800\"",
    "{\"year\":-2147483648,\"month\":13,\"day\":0}",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// The end of the JSON scalar starting at `start` (a number or a string).
fn scalar_end(data: &[u8], start: usize) -> usize {
    if data[start] == b'"' {
        let mut i = start + 1;
        while i < data.len() {
            match data[i] {
                b'\\' => i += 2,
                b'"' => return i + 1,
                _ => i += 1,
            }
        }
        data.len()
    } else {
        let mut i = start;
        while i < data.len() && matches!(data[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
            i += 1;
        }
        i
    }
}

fn mutate(rng: &mut Rng, seeds: &[&[u8]]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].to_vec();
    for _ in 0..1 + rng.below(6) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                data.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(256)).min(len);
                let copy = data[at..end].to_vec();
                let to = rng.below(data.len() + 1);
                data.splice(to..to, copy);
            }
            5 | 6 if len > 0 => {
                // Swap a scalar for a hostile one.
                let from = rng.below(len);
                if let Some(start) = (from..len).find(|&i| matches!(data[i], b'"' | b'0'..=b'9' | b'-')) {
                    let end = scalar_end(&data, start).max(start + 1).min(len);
                    let hostile = HOSTILE[rng.below(HOSTILE.len())].as_bytes().to_vec();
                    data.splice(start..end, hostile);
                }
            }
            _ => {
                // Splice with another seed.
                let other = seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
        data.truncate(MAX_INPUT);
    }
    data
}

fn budget() -> Duration {
    let secs = std::env::var("WEARBRIDGE_FUZZ_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(3.0);
    Duration::from_secs_f64(secs.clamp(0.1, 3600.0))
}

/// Runs `target` on mutated seeds until the budget is spent; a panic fails the test with
/// the seed and the input (hex, cut) that caused it.
fn fuzz(name: &str, seeds: &[&[u8]], target: impl Fn(&[u8])) {
    let seed = std::env::var("WEARBRIDGE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    eprintln!("fuzz {name}: WEARBRIDGE_FUZZ_SEED={seed}");
    let mut rng = Rng(seed);
    // The seeds themselves first: they must pass.
    for s in seeds {
        target(s);
    }
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let input = mutate(&mut rng, seeds);
        if std::panic::catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let shown: String = hex::encode(&input[..input.len().min(512)]);
            panic!(
                "fuzz {name}: a panic after {runs} runs (WEARBRIDGE_FUZZ_SEED={seed}); input (hex, first 512 bytes): {shown}"
            );
        }
        runs += 1;
    }
    eprintln!("fuzz {name}: {runs} inputs, no panic");
}

/// Everything a record goes through after a source: the anonymizer (with a date shift)
/// and the schema check.
struct Downstream {
    anonymizer: Anonymizer,
    schemas: crate::schemas::Schemas,
}

impl Downstream {
    fn new() -> Self {
        let key = PseudonymKey::new("fuzz", [9; 32]).unwrap_or_else(|e| panic!("key: {e}"));
        let schemas = crate::schemas::Schemas::load().unwrap_or_else(|e| panic!("schemas: {e}"));
        Self { anonymizer: Anonymizer::new(key, Policy::default().with_date_shift_days(3650)), schemas }
    }

    fn take(&self, record: Result<Record, Skipped>) {
        if let Ok(record) = record
            && let Ok(message) = self.anonymizer.anonymize(&record)
            && let Ok(value) = serde_json::to_value(&message)
        {
            let _ = self.schemas.validate(&value);
        }
    }
}

const GOOGLE_POINTS: &str = r#"{"dataPoints":[
 {"dataSource":{"recordingMethod":"PASSIVELY_MEASURED","platform":"FITBIT"},
  "heartRate":{"sampleTime":{"physicalTime":"2026-09-01T08:15:00Z","utcOffset":"-14400s"},"beatsPerMinute":"72"}},
 {"dailyRestingHeartRate":{"date":{"year":2026,"month":9,"day":1},"beatsPerMinute":"58"}},
 {"sleep":{"interval":{"startTime":"2026-08-31T22:10:00Z","endTime":"2026-09-01T06:20:00Z"},
  "metadata":{"nap":false},"summary":{"minutesAsleep":"430","minutesAwake":"60",
  "stagesSummary":[{"type":"DEEP","minutes":"80"},{"type":"REM","minutes":"90"},{"type":"LIGHT","minutes":"260"}]}}},
 {"dataSource":{"recordingMethod":"MANUAL"},"weight":{"sampleTime":{"physicalTime":"2026-09-01T07:00:00Z"},"weightGrams":72300.5}},
 {"bodyFat":{"sampleTime":{"physicalTime":"2026-09-01T07:00:00Z"},"percentage":21.4}}],
 "nextPageToken":"CiAK"}"#;

const GOOGLE_ROLLUPS: &str = r#"{"rollupDataPoints":[
 {"civilStartTime":{"date":{"year":2026,"month":11,"day":1}},"steps":{"countSum":"3822"}},
 {"civilStartTime":{"date":{"year":2026,"month":11,"day":1}},"distance":{"millimetersSum":"2900000"}},
 {"civilStartTime":{"date":{"year":2026,"month":11,"day":2}},"totalCalories":{"kcalSum":1650.5}},
 {"civilStartTime":{"date":{"year":2026,"month":11,"day":1}},"activeMinutes":{"activeMinutesRollupByActivityLevel":[
  {"activityLevel":"LIGHT","activeMinutesSum":"30"},{"activityLevel":"VIGOROUS","activeMinutesSum":"5"}]}}]}"#;

const GOOGLE_DEVICES: &str = r#"{"pairedDevices":[{"name":"users/me/pairedDevices/abc","deviceType":"WATCH",
 "deviceVersion":"Pixel Watch 3","batteryLevel":"81","lastSyncTime":"2026-09-01T08:00:00Z"}]}"#;

const GOOGLE_ERROR: &str = r#"{"error":{"code":403,"message":"Request had insufficient authentication scopes.",
 "status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}}"#;

#[test]
fn google_health_pages() {
    let down = Downstream::new();
    let seeds: Vec<&[u8]> =
        [GOOGLE_POINTS, GOOGLE_ROLLUPS, GOOGLE_DEVICES, GOOGLE_ERROR].iter().map(|s| s.as_bytes()).collect();
    fuzz("google_health_pages", &seeds, |bytes| {
        let endpoint = "fuzz";
        if let Ok(page) =
            fitbit::client::parse_answer::<fitbit::api::ListDataPointsResponse>(endpoint, 200, None, bytes)
        {
            for p in &page.data_points {
                down.take(p.then(|p| fitbit::normalize::heart_rate("u", p)));
                down.take(p.then(|p| fitbit::normalize::resting_heart_rate("u", p)));
                down.take(p.then(|p| fitbit::normalize::sleep("u", p)));
                down.take(p.then(|p| fitbit::normalize::weight("u", p)));
                down.take(p.then(|p| fitbit::normalize::body_fat("u", p)));
            }
        }
        if let Ok(page) = fitbit::client::parse_answer::<fitbit::api::DailyRollUpResponse>(endpoint, 200, None, bytes) {
            for r in fitbit::normalize::daily_activity("u", &page.rollup_data_points) {
                down.take(r);
            }
        }
        if let Ok(page) =
            fitbit::client::parse_answer::<fitbit::api::ListPairedDevicesResponse>(endpoint, 200, None, bytes)
        {
            for d in &page.paired_devices {
                down.take(d.then(|d| fitbit::normalize::device_status("u", d)));
            }
        }
        for status in [403, 429, 500] {
            if let Err(e) = fitbit::client::parse_answer::<serde::de::IgnoredAny>(endpoint, status, None, bytes) {
                let _ = (e.to_string(), e.is_scope_insufficient());
            }
        }
    });
}

const WITHINGS_INTRADAY: &str =
    r#"{"status":0,"body":{"series":{"1767225600":{"heart_rate":61},"1767225660":{"heart_rate":"63"}}}}"#;
const WITHINGS_THROTTLE: &str = r#"{"status":601,"body":{"wait_seconds":60},"error":"Too Many Requests"}"#;

fn enveloped(body: &str) -> String {
    format!(r#"{{"status":0,"body":{body}}}"#)
}

#[test]
fn withings_envelopes() {
    let down = Downstream::new();
    let activities = format!(
        r#"{{"activities":{},"more":false,"offset":0}}"#,
        include_str!("../tests/fixtures/withings/activity.json")
    );
    let owned = [
        enveloped(include_str!("../tests/fixtures/withings/get_meas.json")),
        enveloped(include_str!("../tests/fixtures/withings/get_sleep.json")),
        enveloped(include_str!("../tests/fixtures/withings/get_device.json")),
        enveloped(&activities),
        WITHINGS_INTRADAY.to_owned(),
        WITHINGS_THROTTLE.to_owned(),
    ];
    let seeds: Vec<&[u8]> = owned.iter().map(|s| s.as_bytes()).collect();
    fuzz("withings_envelopes", &seeds, |bytes| {
        use withings::api::{ActivityBody, DeviceBody, IntradayBody, MeasureBody, SleepBody};
        use withings::client::parse_envelope;
        if let Ok(b) = parse_envelope::<MeasureBody>("fuzz", bytes) {
            for g in b.measuregrps.iter().filter_map(|g| g.good()) {
                withings::normalize::measure_group("u", g).into_iter().for_each(|r| down.take(r));
            }
        }
        if let Ok(b) = parse_envelope::<SleepBody>("fuzz", bytes) {
            b.series.iter().for_each(|s| down.take(s.then(|s| withings::normalize::sleep("u", s))));
        }
        if let Ok(b) = parse_envelope::<DeviceBody>("fuzz", bytes) {
            b.devices.iter().for_each(|d| down.take(d.then(|d| withings::normalize::device_status("u", d))));
        }
        if let Ok(b) = parse_envelope::<ActivityBody>("fuzz", bytes) {
            b.activities.iter().for_each(|a| down.take(a.then(|a| withings::normalize::activity("u", a))));
        }
        if let Ok(b) = parse_envelope::<IntradayBody>("fuzz", bytes) {
            for (ts, sample) in &b.series {
                if let (Ok(secs), Some(bpm)) = (ts.parse::<i64>(), sample.good().and_then(|s| s.heart_rate))
                    && let Some(at) = chrono::DateTime::from_timestamp(secs, 0)
                {
                    down.take(Ok(withings::normalize::heart_rate("u", at, bpm)));
                }
            }
        }
    });
}

#[test]
fn token_answers() {
    let owned = [
        r#"{"access_token":"ya29.a0AfB","expires_in":3599,"refresh_token":"1//0g","scope":"https://www.googleapis.com/auth/googlehealth.sleep.readonly","token_type":"Bearer"}"#.to_owned(),
        r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#.to_owned(),
        r#"{"status":0,"body":{"userid":363,"access_token":"a","refresh_token":"r","expires_in":10800,"scope":"user.info,user.metrics","csrf_token":"c","token_type":"Bearer"}}"#.to_owned(),
        r#"{"status":601,"body":{"wait_seconds":99999999999},"error":"Too Many Requests"}"#.to_owned(),
        r#"{"status":503,"body":{},"error":"Invalid Params: invalid refresh_token"}"#.to_owned(),
    ];
    let seeds: Vec<&[u8]> = owned.iter().map(|s| s.as_bytes()).collect();
    fuzz("token_answers", &seeds, |bytes| {
        for status in [200, 400, 401, 429, 500] {
            let _ = fitbit::oauth::parse_refresh(status, bytes).map_err(|e| e.to_string());
            let _ = withings::oauth::parse_refresh(status, bytes).map_err(|e| e.to_string());
        }
    });
}

#[test]
fn node_websocket_frames() {
    let owned = [
        r#"{"subject":"2034ff0c8ef7502cb503bd701626632a","key_epoch":"1","header":{"uuid":"0b6e6f8c-1d2e-8f00-9a1b-2c3d4e5f6a7b"},"body":{}}"#.to_owned(),
        r#"{"content":{"header":{"uuid":"x"}},"metadata":{"timestamp":1767225600000,"sequenceNumber":0,"publisherId":"0xabc","msgChainId":"m"}}"#.to_owned(),
        "ping".to_owned(),
    ];
    let seeds: Vec<&[u8]> = owned.iter().map(|s| s.as_bytes()).collect();
    fuzz("node_websocket_frames", &seeds, |bytes| {
        let _ = crate::sinks::streamr_ws::confirmed_id(&String::from_utf8_lossy(bytes));
    });
}

#[test]
fn configuration_values() {
    let example = include_str!("../deploy/wearbridge.example.toml");
    let keys = [
        "sync.start",
        "sync.interval",
        "sync.lookback",
        "sync.jitter",
        "sync.lease",
        "sync.shutdown_grace",
        "sync.datasets",
        "sync.max_response_bytes",
        "anonymizer.granularity.heart-rate",
        "anonymizer.date_shift_days",
        "anonymizer.mass_step_kg",
        "streamr.messages_per_second",
        "streamr.partitions",
        "streamr.url",
        "streamr.streams.default",
        "store.url",
        "fitbit.page_size",
        "server.listen",
    ];
    let seeds: Vec<&[u8]> = vec![example.as_bytes(), b"7d", b"2026-11-01", b"15m", b"[\"heart_rate\"]", b"0.1"];
    let dir = std::env::temp_dir().join(format!("wearbridge-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("fuzz.toml");
    let counter = std::cell::Cell::new(0usize);
    fuzz("configuration_values", &seeds, |bytes| {
        let n = counter.get();
        counter.set(n + 1);
        let text = String::from_utf8_lossy(bytes);
        let value: String = text.chars().filter(|c| *c != '\n').take(200).collect();
        let set = format!("{}={value}", keys[n % keys.len()]);
        let _ = crate::config::load(&crate::config::LoadOptions {
            file: None,
            default_file: None,
            env: Vec::new(),
            overrides: vec![set],
        });
        // Now and then a whole mutated file.
        if n % 8 == 0 && std::fs::write(&file, bytes).is_ok() {
            let _ = crate::config::load(&crate::config::LoadOptions {
                file: Some(file.clone()),
                default_file: None,
                env: Vec::new(),
                overrides: Vec::new(),
            });
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn push_notifications() {
    let seeds: Vec<&[u8]> = vec![
        br#"{"healthUserId":"u1","dataType":"weight","operation":"UPSERT","intervals":[{"startTime":"2026-11-30T07:00:00Z","endTime":"2026-11-30T07:05:00Z"}]}"#,
        br#"[{"healthUserId":"u1","dataType":"HEART_RATE","operation":"DELETE"},{"healthuserid":"users/u2","datatype":"sleep","interval":{"startTime":1764500000}}]"#,
        b"userid=12345&appli=1&startdate=1764500000&enddate=1764500060",
        b"userid=12345&appli=44&startdate=1764500000&enddate=1764500060&date=2026-11-30",
    ];
    fuzz("push_notifications", &seeds, |bytes| {
        let _ = fitbit::push::parse(bytes);
        let _ = withings::push::parse(bytes);
    });
}

#[test]
fn local_scale_uploads() {
    use crate::sources::local::{aria, wbs01};
    let reading = aria::Reading {
        impedance: 500,
        weight_grams: 72_500,
        time: 1_764_499_000,
        user: 1,
        fat1: 0,
        covariance: 0,
        fat2: 0,
    };
    let upload = aria::Upload {
        battery_percent: 90,
        mac: [0, 0x1d, 0xc9, 1, 2, 3],
        auth: [7; 16],
        firmware: 39,
        scale_time: 1_764_500_000,
        readings: vec![reading; 3],
    };
    let body = aria::encode(&upload);
    let answer =
        aria::response(1_764_500_000, &[aria::ScaleUser { id: 1, name: "ANN".into(), min_grams: 1, max_grams: 2 }]);
    let form = b"action=store&sessionid=1-2-3&macaddress=00:24:e4:01:02:03&userid=5&meastime=1764500000&measures=%7B%22measures%22%3A%5B%7B%22value%22%3A66850%2C%22type%22%3A1%2C%22unit%22%3A-3%7D%5D%7D".to_vec();
    let seeds: Vec<&[u8]> = vec![&body, &answer, &form];
    fuzz("local_scale_uploads", &seeds, |bytes| {
        let _ = aria::parse(bytes);
        let _ = aria::parse_response(bytes);
        let _ = wbs01::parse_store(&wbs01::form(bytes));
    });
}
