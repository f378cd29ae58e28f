use std::io::Write;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;
use crate::config::Dataset;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path
}

fn opts(file: Option<PathBuf>, env: &[(&str, &str)], flags: &[&str]) -> LoadOptions {
    LoadOptions {
        file,
        default_file: None,
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        overrides: flags.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn defaults_apply_without_sources() {
    let loaded = load(&opts(None, &[], &[])).unwrap();
    assert_eq!(loaded.settings.store.url, "sqlite://wearbridge.db");
    assert_eq!(loaded.settings.fitbit.api_base_url, "https://health.googleapis.com");
    assert_eq!(loaded.settings.fitbit.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(loaded.settings.withings.api_base_url, "https://wbsapi.withings.net");
    assert_eq!(loaded.settings.sync.datasets, Dataset::ALL.to_vec());
    assert_eq!(loaded.origin("sync.interval"), Origin::Default);
}

#[test]
fn precedence_is_default_file_env_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "w.toml",
        "[sync]\ninterval = \"5m\"\nlookback = \"1h\"\nstart = \"2026-10-01\"\n[store]\nurl = \"sqlite://f.db\"\n",
    );
    let env = [("WEARBRIDGE__SYNC__INTERVAL", "10m"), ("WEARBRIDGE__SYNC__LOOKBACK", "2h"), ("OTHER", "x")];
    let loaded = load(&opts(Some(file.clone()), &env, &["sync.interval=20m"])).unwrap();
    let s = &loaded.settings;
    assert_eq!(s.store.url, "sqlite://f.db");
    assert_eq!(s.sync.lookback, Some(Duration::from_secs(7200)));
    assert_eq!(s.sync.interval, Some(Duration::from_secs(1200)));
    assert_eq!(loaded.origin("store.url"), Origin::File(file));
    assert_eq!(loaded.origin("sync.lookback"), Origin::Env("WEARBRIDGE__SYNC__LOOKBACK".into()));
    assert_eq!(loaded.origin("sync.interval"), Origin::Flag("sync.interval".into()));
}

#[test]
fn lists_from_env_and_flags() {
    let loaded = load(&opts(None, &[("WEARBRIDGE__SYNC__DATASETS", "heart_rate,body")], &[])).unwrap();
    assert_eq!(loaded.settings.sync.datasets, vec![Dataset::HeartRate, Dataset::Body]);
    let loaded = load(&opts(None, &[], &["sync.datasets=sleep"])).unwrap();
    assert_eq!(loaded.settings.sync.datasets, vec![Dataset::Sleep]);
}

#[test]
fn unknown_key_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "w.toml", "[sync]\nintervall = \"5m\"\n");
    let err = load(&opts(Some(file.clone()), &[], &[])).unwrap_err().to_string();
    assert!(err.contains("sync.intervall"), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
}

#[test]
fn unknown_key_from_env_names_variable() {
    let err = load(&opts(None, &[("WEARBRIDGE__STORE__PATH", "x")], &[])).unwrap_err().to_string();
    assert!(err.contains("store.path") && err.contains("WEARBRIDGE__STORE__PATH"), "{err}");
}

#[test]
fn invalid_value_names_key_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "w.toml", "[sync]\ninterval = \"soon\"\n");
    let err = load(&opts(Some(file.clone()), &[], &[])).unwrap_err().to_string();
    assert!(err.contains("sync.interval") && err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("duration"), "{err}");

    let err = load(&opts(None, &[("WEARBRIDGE__STREAMR__TRANSPORT", "carrier-pigeon")], &[])).unwrap_err().to_string();
    assert!(err.contains("streamr.transport") && err.contains("WEARBRIDGE__STREAMR__TRANSPORT"), "{err}");

    let err = load(&opts(None, &[], &["sync.datasets=heart_rate,steps"])).unwrap_err().to_string();
    assert!(err.contains("sync.datasets") && err.contains("--set sync.datasets"), "{err}");

    let err = load(&opts(None, &[("WEARBRIDGE__SERVER__LISTEN", "nowhere")], &[])).unwrap_err().to_string();
    assert!(err.contains("server.listen") && err.contains("WEARBRIDGE__SERVER__LISTEN"), "{err}");

    let err = load(&opts(None, &[("WEARBRIDGE__STORE__URL", "mysql://x")], &[])).unwrap_err().to_string();
    assert!(err.contains("store.url") && err.contains("WEARBRIDGE__STORE__URL"), "{err}");
}

#[test]
fn partitions_per_stream_are_keyed_by_stream_id() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[streamr]\npartitions = 2\n\n[streamr.stream_partitions]\n\"0xAbC/Heart.Rate\" = 5\n";
    let file = write(&dir, "w.toml", text);
    let loaded = load(&opts(Some(file), &[], &[])).unwrap();
    assert_eq!(loaded.settings.streamr.partitions_of("0xAbC/Heart.Rate"), 5, "dots and case survive");
    assert_eq!(loaded.settings.streamr.partitions_of("other.eth/x"), 2);

    let file = write(&dir, "bad.toml", "[streamr.stream_partitions]\n\"s.eth/x\" = 0\n");
    let err = load(&opts(Some(file.clone()), &[], &[])).unwrap_err().to_string();
    assert!(err.contains("streamr.stream_partitions.s.eth/x") && err.contains("1 to 100"), "{err}");
    let err = load(&opts(None, &[], &["streamr.partitions=101"])).unwrap_err().to_string();
    assert!(err.contains("streamr.partitions") && err.contains("--set"), "{err}");
}

#[test]
fn missing_file_and_bad_toml_are_clear() {
    let err = load(&opts(Some("/nonexistent/w.toml".into()), &[], &[])).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/w.toml") && err.contains("does not exist"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "w.toml", "[sync\n");
    let err = load(&opts(Some(file.clone()), &[], &[])).unwrap_err().to_string();
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(load(&opts(None, &[], &["novalue"])).is_err());
}

#[test]
fn secrets_from_files_are_trimmed_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(&dir, "secret", "  s3cr3t-value\n");
    let env = [
        ("WEARBRIDGE__FITBIT__CLIENT_SECRET_FILE", secret.to_str().unwrap()),
        ("WEARBRIDGE__STREAMR__API_KEY", "key-123"),
    ];
    let loaded = load(&opts(None, &env, &[])).unwrap();
    let s = &loaded.settings;
    assert_eq!(s.fitbit.client_secret.as_ref().unwrap().expose_secret(), "s3cr3t-value");
    let toml = s.to_redacted_toml().unwrap();
    assert!(!toml.contains("s3cr3t-value") && !toml.contains("key-123"), "{toml}");
    assert!(toml.contains("client_secret = \"<redacted>\""), "{toml}");
    assert!(toml.contains("api_key = \"<redacted>\""), "{toml}");
    assert!(!format!("{s:?}").contains("s3cr3t-value"));
}

#[test]
fn secret_file_problems_are_clear() {
    let env = [("WEARBRIDGE__STREAMR__API_KEY_FILE", "/nonexistent/key")];
    let err = load(&opts(None, &env, &[])).unwrap_err().to_string();
    assert!(err.contains("streamr.api_key_file") && err.contains("WEARBRIDGE__STREAMR__API_KEY_FILE"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let secret = write(&dir, "secret", "x");
    let env = [("WEARBRIDGE__STREAMR__API_KEY_FILE", secret.to_str().unwrap()), ("WEARBRIDGE__STREAMR__API_KEY", "y")];
    let err = load(&opts(None, &env, &[])).unwrap_err().to_string();
    assert!(err.contains("both set"), "{err}");
}

#[test]
fn redacted_toml_round_trips_through_load() {
    let loaded = load(&opts(None, &[], &["streamr.streams.default=demo.eth/wearbridge"])).unwrap();
    let toml = loaded.settings.to_redacted_toml().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "w.toml", &toml);
    let again = load(&opts(Some(file), &[], &[])).unwrap();
    assert_eq!(again.settings.streamr.streams.get("default").map(String::as_str), Some("demo.eth/wearbridge"));
}

#[test]
fn anonymizer_policy_settings() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "w.toml",
        "[anonymizer]\ndate_shift_days = 30\nmass_step_kg = 0.5\nweight_top_code_kg = 150\nmessage_types = [\"heart-rate\"]\n[anonymizer.granularity]\nheart-rate = \"5m\"\n",
    );
    let loaded = load(&opts(Some(file), &[], &[])).unwrap();
    let a = &loaded.settings.anonymizer;
    assert_eq!(a.granularity.get("heart-rate"), Some(&Duration::from_secs(300)));
    assert!(a.policy().allows("heart-rate") && !a.policy().allows("sleep-episode"));
    let err = load(&opts(None, &[], &["anonymizer.granularity.heartrate=5m"])).unwrap_err().to_string();
    assert!(err.contains("anonymizer.granularity.heartrate"), "{err}");
    let err = load(&opts(None, &[("WEARBRIDGE__ANONYMIZER__MASS_STEP_KG", "0")], &[])).unwrap_err().to_string();
    assert!(err.contains("anonymizer.mass_step_kg") && err.contains("WEARBRIDGE__ANONYMIZER__MASS_STEP_KG"), "{err}");
}

#[test]
fn page_size_is_bounded() {
    for bad in ["0", "10001"] {
        let err = load(&opts(None, &[], &[&format!("fitbit.page_size={bad}")])).unwrap_err().to_string();
        assert!(err.contains("fitbit.page_size") && err.contains("--set"), "{err}");
    }
    assert_eq!(load(&opts(None, &[], &["fitbit.page_size=40"])).unwrap().settings.fitbit.page_size, 40);
}

#[test]
fn dataset_schedules_load_and_a_bad_one_names_its_key_and_file() {
    use crate::config::When;
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        &dir,
        "good.toml",
        "[sync.schedule.heart_rate]\ninterval = \"1h\"\nlookback = \"30m\"\n[sync.schedule.activity]\nat = \"06:30\"\n",
    );
    let s = load(&opts(Some(good), &[], &[])).unwrap().settings.sync;
    let hr = s.plan(Dataset::HeartRate);
    assert_eq!((hr.when, hr.lookback), (When::Every(Duration::from_secs(3600)), Duration::from_secs(1800)));
    assert_eq!(s.plan(Dataset::Activity).when, When::DailyAt(chrono::NaiveTime::from_hms_opt(6, 30, 0).unwrap()));
    // Unset members keep the built-in schedule.
    assert_eq!(s.plan(Dataset::Activity).lookback, Duration::from_secs(86_400));
    assert_eq!(s.plan(Dataset::Body).when, When::Every(Duration::from_secs(8 * 3600)));
    // A flag reaches one member.
    let s = load(&opts(None, &[], &["sync.schedule.sleep.at=07:00"])).unwrap().settings.sync;
    assert_eq!(s.plan(Dataset::Sleep).when, When::DailyAt(chrono::NaiveTime::from_hms_opt(7, 0, 0).unwrap()));

    for (text, key) in [
        ("[sync.schedule.steps]\ninterval = \"1h\"\n", "sync.schedule.steps"),
        ("[sync.schedule.sleep]\ninterval = \"1h\"\nat = \"10:00\"\n", "sync.schedule.sleep.at"),
        ("[sync.schedule.sleep]\nat = \"25:00\"\n", "sync.schedule.sleep.at"),
        ("[sync.schedule.body]\ninterval = \"0s\"\n", "sync.schedule.body.interval"),
        ("[sync.schedule.body]\nlookback = \"91d\"\n", "sync.schedule.body.lookback"),
        ("[sync.schedule.body]\nevery = \"1h\"\n", "sync.schedule.body.every"),
    ] {
        let path = write(&dir, "bad.toml", text);
        let err = load(&opts(Some(path), &[], &[])).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("bad.toml"), "{text}: {err}");
    }
}

#[test]
fn store_url_from_a_file_keeps_the_password_out_of_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = write(&dir, "store_url", "postgres://wb:pa55word@db:5432/wb\n");
    let env = [("WEARBRIDGE__STORE__URL_FILE", url_file.to_str().unwrap())];
    let loaded = load(&opts(None, &env, &[])).unwrap();
    assert_eq!(loaded.settings.store.url, "postgres://wb:pa55word@db:5432/wb");
    let toml = loaded.settings.to_redacted_toml().unwrap();
    assert!(!toml.contains("pa55word"), "{toml}");

    // Both forms: refused, naming both sources.
    let err = load(&opts(None, &env, &["store.url=sqlite://other.db"])).unwrap_err().to_string();
    assert!(
        err.contains("both set") && err.contains("store.url") && err.contains("WEARBRIDGE__STORE__URL_FILE"),
        "{err}"
    );

    // A file that holds no store URL names the file key, never the password.
    let bad = write(&dir, "bad_url", "mysql://wb:pa55word@db/wb");
    let env = [("WEARBRIDGE__STORE__URL_FILE", bad.to_str().unwrap())];
    let err = load(&opts(None, &env, &[])).unwrap_err().to_string();
    assert!(err.contains("store.url_file") && !err.contains("pa55word"), "{err}");
    let env = [("WEARBRIDGE__STORE__URL_FILE", "/nonexistent/store_url")];
    let err = load(&opts(None, &env, &[])).unwrap_err().to_string();
    assert!(err.contains("store.url_file") && err.contains("cannot read"), "{err}");
}

#[test]
fn push_settings_load_validate_and_raise_short_intervals_of_covered_datasets() {
    use crate::config::{Dataset, When};
    let dir = tempfile::tempdir().unwrap();
    let secret = write(&dir, "push", "Bearer s3cr3t\n");
    let env = [("WEARBRIDGE__PUSH__GOOGLE_AUTHORIZATION_FILE", secret.to_str().unwrap())];
    let flags = ["push.enabled=true", "sync.interval=15m", "fitbit.client_id=x"];
    let loaded = load(&opts(None, &env, &flags)).unwrap();
    let s = &loaded.settings;
    assert_eq!(s.push.google_authorization.as_ref().unwrap().expose_secret(), "Bearer s3cr3t");
    assert!(!s.to_redacted_toml().unwrap().contains("s3cr3t"));
    // Push covers heart rate: polled every 6 h, not 15 min; devices keep 15 min.
    let six_hours = std::time::Duration::from_secs(6 * 3600);
    assert_eq!(s.sync.plan(Dataset::HeartRate).when, When::Every(six_hours));
    assert_eq!(s.sync.plan(Dataset::Devices).when, When::Every(std::time::Duration::from_secs(900)));
    // Push off: as configured.
    let off = load(&opts(None, &[], &["sync.interval=15m"])).unwrap();
    assert_eq!(off.settings.sync.plan(Dataset::HeartRate).when, When::Every(std::time::Duration::from_secs(900)));

    // Errors name the key.
    let err = load(&opts(None, &[], &["push.enabled=true", "fitbit.client_id=x"])).unwrap_err().to_string();
    assert!(err.contains("push.google_authorization") && err.contains("not set"), "{err}");
    let err = load(&opts(None, &[], &["push.withings_applis=1,54"])).unwrap_err().to_string();
    assert!(err.contains("push.withings_applis") && err.contains("54"), "{err}");
    let err = load(&opts(None, &[], &["push.poll_interval=10s"])).unwrap_err().to_string();
    assert!(err.contains("push.poll_interval"), "{err}");
}
