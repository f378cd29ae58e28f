//! Privacy properties end to end: a canary run over both providers' simulator data
//! (every identifying or free-text upstream value carries a marker; none may surface in
//! stdout, stderr or the store), and property tests on random upstream payloads.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use anonymizer::{Anonymizer, MeasureKind, Modality, Observation, Policy, PseudonymKey, Record};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use wearbridge::clock::Clock;
use wearbridge::pipeline::Output;
use wearbridge::schemas::Schemas;
use wearbridge::simulator::{self, Simulator, SimulatorConfig};
use wearbridge::sources::fitbit::PROVIDER as FITBIT;
use wearbridge::sources::withings::PROVIDER as WITHINGS;
use wearbridge::store::{SqlStore, Store, TokenCipher};

/// The numeric markers are long digit runs: a six-digit one once turned up inside a random
/// message uuid (every hex digest in the output is a place for a digit run to appear).
const MARKERS: &[&str] = &["CANARY", "424242424242", "1337133713"];

fn contains_marker(bytes: &[u8]) -> bool {
    MARKERS.iter().any(|m| bytes.windows(m.len()).any(|w| w == m.as_bytes()))
}

fn assert_clean(what: &str, bytes: &[u8]) {
    for marker in MARKERS {
        let m = marker.as_bytes();
        if let Some(i) = bytes.windows(m.len()).position(|w| w == m) {
            let from = i.saturating_sub(60);
            let context = String::from_utf8_lossy(&bytes[from..(i + 60).min(bytes.len())]);
            panic!("{marker} found in {what}: …{context}…");
        }
    }
}

fn config(sim: &Simulator, dir: &Path) -> std::path::PathBuf {
    let mut s = common::settings(sim, &tempfile::tempdir_in(dir).unwrap(), "2d");
    s.store.url = format!("sqlite://{}", dir.join("wb.db").display());
    s.store.key_file = dir.join("store.key");
    s.anonymizer.key_file = dir.join("anonymizer.key");
    let mut text = s.to_redacted_toml().unwrap();
    text = text.replace("\"<redacted>\"", &format!("\"{}\"", simulator::CLIENT_SECRET));
    let path = dir.join("wearbridge.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_markers_never_leave_for_either_provider() {
    let sim = Simulator::start(SimulatorConfig {
        people: 3,
        seed: 61,
        canary: true,
        clock: Clock::pinned(common::now()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(sim.people()[0].health_user_id.contains("CANARY"));
    // Positive control, with the third person (not enrolled, so their rotated token does
    // not matter): the upstream answers do carry the markers the checks look for.
    let http = crate::common::http();
    let form = [
        ("action", "requesttoken"),
        ("grant_type", "refresh_token"),
        ("client_id", simulator::CLIENT_ID),
        ("client_secret", simulator::CLIENT_SECRET),
        ("refresh_token", sim.people()[2].withings_refresh_token.as_str()),
    ];
    let token: serde_json::Value = http
        .post(format!("{}/v2/oauth2", sim.withings_api_base()))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(contains_marker(token.to_string().as_bytes()), "the userid is a canary");
    let at = token["body"]["access_token"].as_str().unwrap();
    let since = (common::now() - chrono::TimeDelta::days(2)).timestamp().to_string();
    for (path, action) in [("/v2/user", "getdevice"), ("/measure", "getmeas"), ("/v2/sleep", "getsummary")] {
        let body = http
            .post(format!("{}{path}", sim.withings_api_base()))
            .bearer_auth(at)
            .form(&[("action", action), ("lastupdate", since.as_str())])
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(contains_marker(&body), "{action} answers carry markers");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = config(&sim, d);
    let run = |args: Vec<String>, stdin: Option<String>| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wearbridge"));
        cmd.args(&args).args(["--now", common::NOW]).current_dir(d).env_remove("RUST_LOG");
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        async move {
            use tokio::io::AsyncWriteExt;
            let mut child = cmd.spawn().unwrap();
            let mut pipe = child.stdin.take().unwrap();
            if let Some(text) = stdin {
                pipe.write_all(text.as_bytes()).await.unwrap();
            }
            drop(pipe);
            child.wait_with_output().await.unwrap()
        }
    };
    let cfg = config.to_str().unwrap().to_owned();
    for p in sim.people().iter().take(2) {
        for (provider, token) in [("fitbit", &p.refresh_token), ("withings", &p.withings_refresh_token)] {
            let args = [
                "--config",
                &cfg,
                "users",
                "add",
                provider,
                &format!("{}-{provider}", p.name),
                "--refresh-token-stdin",
            ];
            let out = run(args.iter().map(|s| s.to_string()).collect(), Some(token.clone())).await;
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    // Trace-level logs on purpose: nothing the logs say may carry a marker either.
    let out =
        run(["--config", &cfg, "-vv", "run", "--once", "--dry-run"].iter().map(|s| s.to_string()).collect(), None)
            .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(lines, 1211, "both providers' data went through: {lines}");
    assert_clean("stdout", &out.stdout);
    assert_clean("stderr", &out.stderr);

    // The outbox path, and then every byte the store wrote.
    let store = Arc::new(
        SqlStore::open(
            &format!("sqlite://{}", d.join("wb.db").display()),
            TokenCipher::new(wearbridge::keyfile::load_or_create(&d.join("store.key"), "store.key_file").unwrap()),
        )
        .await
        .unwrap(),
    );
    let loaded =
        wearbridge::config::load(&wearbridge::config::LoadOptions { file: Some(config.clone()), ..Default::default() })
            .unwrap();
    let key = wearbridge::app::pseudonym_key(&loaded).unwrap();
    let pipeline =
        wearbridge::app::pipeline(&loaded, store.clone(), key, common::fast_retry(), sim.clock().clone()).unwrap();
    let summary = pipeline.run_pass(&Output::Outbox).await.unwrap();
    assert_eq!((summary.synced, summary.failed), (4, 0), "{summary:?}");
    assert_eq!(store.outbox_len().await.unwrap(), 1211, "at the pinned instant");
    store.close().await;
    for entry in std::fs::read_dir(d).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("wb.db") {
            assert_clean(&path.display().to_string(), &std::fs::read(&path).unwrap());
        }
    }
}

fn anonymizer() -> Anonymizer {
    Anonymizer::new(PseudonymKey::new("p1", [7; 32]).unwrap(), Policy::default())
}

fn observation() -> impl Strategy<Value = Observation> {
    let at = (1_500_000_000i64..2_000_000_000).prop_map(|s| DateTime::<Utc>::from_timestamp(s, 0).unwrap());
    let value = prop_oneof![any::<f64>(), -10.0..500.0f64];
    let kind = proptest::sample::select(MeasureKind::ALL.to_vec());
    prop_oneof![
        (value.clone(), at.clone()).prop_map(|(v, at)| Observation::HeartRate {
            beats_per_minute: v,
            at,
            modality: Modality::Sensed
        }),
        (value.clone(), at.clone()).prop_map(|(v, at)| Observation::BodyWeight {
            kg: v,
            at,
            modality: Modality::SelfReported
        }),
        (value.clone(), at.clone()).prop_map(|(v, at)| Observation::BodyFat {
            percent: v,
            at,
            modality: Modality::Sensed
        }),
        (kind, value.clone(), at.clone()).prop_map(|(kind, v, at)| Observation::Measurement {
            kind,
            value: v,
            at,
            modality: Modality::Sensed
        }),
        (value.clone(), value, at).prop_map(|(s, d, at)| Observation::BloodPressure {
            systolic: s,
            diastolic: d,
            at,
            modality: Modality::Sensed
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the values, a built message validates, and no input string appears in it.
    #[test]
    fn random_records_validate_and_leak_nothing(
        account in "[A-Za-z0-9_-]{6,40}",
        source in "[A-Za-z0-9/:._-]{6,40}",
        observation in observation(),
    ) {
        let schemas = Schemas::load().unwrap();
        let a = anonymizer();
        let record = Record { provider: WITHINGS, account_id: account.clone(), source_key: source.clone(), observation };
        if let Ok(message) = a.anonymize(&record) {
            let value = serde_json::to_value(&message).unwrap();
            prop_assert!(schemas.validate(&value).is_ok(), "{value}");
            let text = value.to_string();
            prop_assert!(!text.contains(&account) && !text.contains(&source));
        }
    }

    /// Random Withings measure groups: normalised records either validate or are skipped;
    /// device ids, group ids and comments never reach the output.
    #[test]
    fn random_withings_groups_validate_and_leak_nothing(
        grpid in 100_000_000_000u64..999_999_999_999,
        device in "[a-f0-9]{20,40}",
        comment in "[A-Za-z ]{8,30}",
        attrib in 0i64..9,
        category in 1i64..3,
        measures in proptest::collection::vec((proptest::sample::select(vec![1i64, 4, 5, 6, 8, 9, 10, 11, 12, 54, 71, 73, 76, 77, 88, 91, 123, 155, 170]), -200_000i64..200_000, -4i32..2), 1..8),
    ) {
        let measures: Vec<serde_json::Value> =
            measures.iter().map(|(t, v, u)| serde_json::json!({"type": t, "value": v, "unit": u})).collect();
        let group: wearbridge::sources::withings::api::MeasureGroup = serde_json::from_value(serde_json::json!({
            "grpid": grpid, "attrib": attrib, "category": category, "date": 1_763_000_000, "modified": 1_763_000_100,
            "deviceid": device, "hash_deviceid": device, "comment": comment, "model": "Body+", "measures": measures,
        })).unwrap();
        let schemas = Schemas::load().unwrap();
        let a = anonymizer();
        for record in wearbridge::sources::withings::normalize::measure_group("424242424242", &group).into_iter().flatten() {
            if let Ok(message) = a.anonymize(&record) {
                let value = serde_json::to_value(&message).unwrap();
                prop_assert!(schemas.validate(&value).is_ok(), "{value}");
                let text = value.to_string();
                prop_assert!(!text.contains(&grpid.to_string()) && !text.contains(&device) && !text.contains(&comment) && !text.contains("424242424242"));
            }
        }
    }
}

#[test]
fn same_input_gives_byte_identical_messages_and_keys_do_not_link() {
    let record = Record {
        provider: FITBIT,
        account_id: "acct".into(),
        source_key: "k".into(),
        observation: Observation::HeartRate { beats_per_minute: 61.0, at: common::now(), modality: Modality::Sensed },
    };
    let a = serde_json::to_string(&anonymizer().anonymize(&record).unwrap()).unwrap();
    let b = serde_json::to_string(&anonymizer().anonymize(&record).unwrap()).unwrap();
    assert_eq!(a, b);
    let other_epoch = Anonymizer::new(PseudonymKey::new("p2", [8; 32]).unwrap(), Policy::default());
    let c = other_epoch.anonymize(&record).unwrap();
    assert!(!a.contains(&c.subject) && !a.contains(&c.header.uuid));
}
