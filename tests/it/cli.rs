//! The `wearbridge` binary end to end: configuration errors, enrolment, a dry run against
//! the simulator, the demo.

use crate::common;

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use wearbridge::simulator::{self, Simulator};

/// Runs the binary in `dir` with a clean environment (no WEARBRIDGE__ variables).
async fn wearbridge(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wearbridge"));
    // At the simulator's pinned instant (a global option, so it may follow the command).
    cmd.args(args).args(["--now", common::NOW]).current_dir(dir).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.to_uppercase().starts_with("WEARBRIDGE__") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("binary starts");
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).await.unwrap();
        }
        drop(pipe);
    }
    child.wait_with_output().await.expect("binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn config_for(sim: &Simulator, dir: &Path) -> std::path::PathBuf {
    let toml = format!(
        r#"[store]
url = "sqlite://{db}"
key_file = "{dir}/store.key"

[fitbit]
client_id = "{client_id}"
client_secret_file = "{dir}/client_secret"
api_base_url = "{api}"
token_url = "{token}"

[sync]
start = "1d"
datasets = ["heart_rate"]

[anonymizer]
key_file = "{dir}/anonymizer.key"
epoch = "2026a"

[anonymizer.series.heart-rate]
publish = "samples"

[streamr.streams]
default = "{stream}"
"#,
        db = dir.join("wb.db").display(),
        dir = dir.display(),
        client_id = simulator::CLIENT_ID,
        api = sim.google_api_base(),
        token = sim.google_token_url(),
        stream = common::STREAM,
    );
    std::fs::write(dir.join("client_secret"), format!("{}\n", simulator::CLIENT_SECRET)).unwrap();
    let path = dir.join("wearbridge.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_end_to_end() {
    let sim = common::simulator(3, 21).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = config_for(&sim, d);
    let config = config.to_str().unwrap();
    let p0 = &sim.people()[0];
    std::fs::write(d.join("rt"), format!("  {}\n", sim.people()[1].refresh_token)).unwrap();

    let out = wearbridge(
        d,
        &["--config", config, "users", "add", "fitbit", "alice", "--refresh-token-stdin"],
        &[],
        Some(&format!("{}\n", p0.refresh_token)),
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("added alice's fitbit account (active)"), "{}", text(&out.stdout));
    let out =
        wearbridge(d, &["--config", config, "users", "add", "fitbit", "bob", "--refresh-token-file", "rt"], &[], None)
            .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = wearbridge(
        d,
        &["--config", config, "users", "add", "fitbit", "carol", "--refresh-token-file", "rt"],
        &[],
        None,
    )
    .await;
    assert!(out.status.success(), "the same token twice: whose account it is shows at the first sync");
    let out = wearbridge(d, &["--config", config, "users", "remove", "carol"], &[], None).await;
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("cannot be recalled"));
    let out = wearbridge(d, &["--config", config, "users", "list"], &[], None).await;
    let listing = text(&out.stdout);
    assert!(
        listing.contains("alice")
            && listing.contains("active")
            && listing.contains("carol")
            && listing.contains("removed"),
        "{listing}"
    );
    let out = wearbridge(
        d,
        &["--config", config, "users", "add", "fitbit", "alice", "--refresh-token-file", "rt"],
        &[],
        None,
    )
    .await;
    assert!(!out.status.success() && text(&out.stderr).contains("already enrolled"), "{}", text(&out.stderr));

    let out = wearbridge(d, &["--config", config, "run", "--once", "--dry-run"], &[], None).await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let served = sim.request_count("points.heart-rate") + sim.request_count("points.daily-resting-heart-rate");
    assert_eq!(lines.len() as u64, served, "one line per upstream sample or daily value");
    assert_eq!(lines.len(), 279, "two people, a day of ten-minute samples: {}", lines.len());
    let mut ids = std::collections::BTreeSet::new();
    let mut subjects = std::collections::BTreeSet::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).expect("every stdout line is JSON");
        let obj = v.as_object().unwrap();
        assert_eq!(obj.keys().collect::<Vec<_>>(), ["stream", "partition_key", "message"]);
        assert_eq!(v["stream"], common::STREAM);
        assert_eq!(v["partition_key"], v["message"]["subject"]);
        let name = v["message"]["header"]["schema_id"]["name"].as_str().unwrap();
        assert!(name == "heart-rate" || name == "resting-heart-rate", "{name}");
        assert_eq!(v["message"]["key_epoch"], "2026a");
        ids.insert(v["message"]["header"]["uuid"].as_str().unwrap().to_owned());
        subjects.insert(v["partition_key"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), lines.len(), "unique deterministic ids");
    assert_eq!(subjects.len(), 2, "alice and bob; carol was removed");
    for p in sim.people() {
        for secret in [&p.health_user_id, &p.legacy_user_id, &p.refresh_token] {
            assert!(!stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()), "{secret} leaked");
        }
    }
    assert!(!stderr.contains("ya29.") && !stderr.contains(simulator::CLIENT_SECRET));

    // The same pass again prints the same ids (nothing moved in the dry run).
    let again = wearbridge(d, &["--config", config, "run", "--once", "--dry-run"], &[], None).await;
    let again_ids: std::collections::BTreeSet<String> = text(&again.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["message"]["header"]["uuid"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.intersection(&again_ids).count() + 4 >= ids.len());

    // No stored secret is readable in the database files.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(d).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("wb.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!bytes.is_empty());
    for p in sim.people() {
        let needle = p.refresh_token.as_bytes();
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "refresh token in clear in the SQLite file");
        assert!(!bytes.windows(5).any(|w| w == b"ya29."), "access token in clear");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["store.key", "anonymizer.key"] {
            let mode = std::fs::metadata(d.join(key)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
}

#[tokio::test]
async fn run_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = wearbridge(dir.path(), &["run", "--once", "--dry-run"], &[], None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("fitbit.client_id"), "{}", text(&out.stderr));
    let env = [
        ("WEARBRIDGE__FITBIT__CLIENT_ID", "x"),
        ("WEARBRIDGE__FITBIT__CLIENT_SECRET", "y"),
        ("WEARBRIDGE__STREAMR__STREAMS__DEFAULT", "coop.eth/all"),
    ];
    let out = wearbridge(dir.path(), &["run", "--once"], &env, None).await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("streamr.api_key"), "publishing needs the node's key: {err}");
}

#[tokio::test]
async fn check_config_names_the_key_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.toml"), "[sync]\ninterval = \"often\"\n").unwrap();
    let out = wearbridge(d, &["--config", "bad.toml", "check-config"], &[], None).await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("sync.interval") && err.contains("bad.toml"), "{err}");
    assert!(out.stdout.is_empty());

    let out = wearbridge(d, &["check-config"], &[("WEARBRIDGE__STREAMR__TRANSPORT", "pigeon")], None).await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("streamr.transport") && err.contains("WEARBRIDGE__STREAMR__TRANSPORT"), "{err}");

    std::fs::write(d.join("typo.toml"), "[fitbit]\nclient_secrte = \"x\"\n").unwrap();
    let out = wearbridge(d, &["--config", "typo.toml", "check-config"], &[], None).await;
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("fitbit.client_secrte") && err.contains("unknown"), "{err}");

    // ./wearbridge.toml is read by default; the environment beats it; --set beats both.
    std::fs::write(d.join("wearbridge.toml"), "[sync]\ninterval = \"5m\"\nlookback = \"1h\"\nstart = \"2d\"\n[fitbit]\nclient_secret = \"file-secret-value\"\n").unwrap();
    let out = wearbridge(
        d,
        &["check-config", "--for", "syntax", "--set", "sync.start=3d"],
        &[("WEARBRIDGE__SYNC__INTERVAL", "10m"), ("WEARBRIDGE__STREAMR__API_KEY", "env-api-key-value")],
        None,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let parsed: toml::Value = toml::from_str(&printed).expect("check-config prints TOML");
    assert_eq!(parsed["sync"]["interval"].as_str(), Some("10m"));
    assert_eq!(parsed["sync"]["lookback"].as_str(), Some("1h"));
    assert_eq!(parsed["sync"]["start"].as_str(), Some("3d"));
    assert_eq!(parsed["fitbit"]["client_secret"].as_str(), Some("<redacted>"));
    assert_eq!(parsed["streamr"]["api_key"].as_str(), Some("<redacted>"));
    assert!(!printed.contains("file-secret-value") && !printed.contains("env-api-key-value"));
}

#[tokio::test]
async fn check_config_refuses_what_run_refuses() {
    let sim = common::simulator(1, 1903).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No provider at all: `run` refuses it, and so does check-config.
    std::fs::write(d.join("empty.toml"), "[streamr.streams]\ndefault = \"x.eth/health\"\n").unwrap();
    for command in [&["check-config"][..], &["run", "--once", "--dry-run"][..]] {
        let mut args = vec!["--config", "empty.toml"];
        args.extend_from_slice(command);
        let out = wearbridge(d, &args, &[], None).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {err}");
        assert!(err.contains("fitbit.client_id") && err.contains("not set") && err.contains("no provider"), "{err}");
        assert!(!err.contains("built-in default"), "{err}");
    }
    // A provider but no API key for the node: `run` (publishing) refuses, a dry run not.
    let config = common::upstream_toml(&sim, d) + "[streamr.streams]\ndefault = \"x.eth/health\"\n";
    std::fs::write(d.join("nokey.toml"), config).unwrap();
    for command in [&["check-config"][..], &["run", "--once"][..]] {
        let mut args = vec!["--config", "nokey.toml"];
        args.extend_from_slice(command);
        let out = wearbridge(d, &args, &[], None).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {err}");
        assert!(err.contains("streamr.api_key") && err.contains("not set"), "{err}");
    }
    let out = wearbridge(d, &["--config", "nokey.toml", "check-config", "--for", "dry-run"], &[], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[tokio::test]
async fn read_only_and_built_in_commands_say_what_they_do_not_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // `users list` where nobody was ever enrolled: says so, creates nothing.
    let out = wearbridge(d, &["users", "list"], &[], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("nobody is enrolled yet"));
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0, "no store, no key file");
    // The demo's configuration is built in: --set and --config are refused, not ignored.
    for args in [&["demo", "--set", "nonsense.key=1"][..], &["--config", "x.toml", "demo"][..]] {
        let out = wearbridge(d, args, &[], None).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains("do not apply"), "{}", text(&out.stderr));
    }
    // A busy port names the address and the flag.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    let out = wearbridge(d, &["simulate", "--listen", &address], &[], None).await;
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains(&address) && err.contains("--listen"), "{err}");
}

#[tokio::test]
async fn simulate_writes_a_configuration_that_run_uses_as_is() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_wearbridge"))
        .args(["simulate", "--listen", &listen, "--people", "1", "--hr-interval", "10m"])
        .args(["--write-config", "sim.toml"])
        .current_dir(d)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(sim.stdout.take().unwrap()).lines();
    let mut token = None;
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, t)) = line.split_once(": fitbit refresh token ") {
                token = Some(t.to_owned());
            }
            if line.starts_with("serving until") {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read).await.expect("the simulator starts");
    std::fs::write(d.join("rt"), token.expect("a token is printed")).unwrap();
    let out = wearbridge(d, &["--config", "sim.toml", "check-config"], &[], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = wearbridge(
        d,
        &["--config", "sim.toml", "users", "add", "fitbit", "me", "--refresh-token-file", "rt"],
        &[],
        None,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // On a terminal, the drain shows a bar with counts.
    let (ok, drawn) = on_a_terminal(d, "--config sim.toml --set sync.start=1d run --once").await;
    assert!(ok, "run --once publishes to the simulated node: {drawn}");
    assert!(drawn.contains("messages published"), "the drain's bar: {drawn:.3000}");
    let _ = sim.kill().await;
}

#[tokio::test]
async fn describe_lists_every_published_type_as_its_schema_says() {
    let dir = tempfile::tempdir().unwrap();
    let stream = "0x1234567890abcdef1234567890abcdef12345678/wearbridge/health";
    let set = format!("streamr.streams.default={stream}");
    let out = wearbridge(dir.path(), &["--set", &set, "describe", "--format", "json"], &[], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = d["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["id"], stream);
    let envelope: Value = serde_json::from_str(wearbridge::schemas::Schemas::text("envelope").unwrap()).unwrap();
    let names = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect()
    };
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(names(&streams[0]["config"]["fields"]), keys(&envelope["properties"]));
    let listed: Vec<String> = names(&streams[0]["message_types"]);
    let expected: Vec<String> = wearbridge::schemas::Schemas::names()
        .filter(|n| *n != "envelope" && *n != "heart-rate")
        .map(str::to_owned)
        .collect();
    assert_eq!(
        listed.iter().collect::<std::collections::BTreeSet<_>>(),
        expected.iter().collect(),
        "series mode: no per-sample type"
    );
    for t in streams[0]["message_types"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let schema: Value = serde_json::from_str(wearbridge::schemas::Schemas::text(name).unwrap()).unwrap();
        assert_eq!(t["description"], schema["description"], "{name}");
        assert_eq!(t["schema"], schema["$id"], "{name}");
        assert_eq!(names(&t["body_fields"]), keys(&schema["properties"]["body"]["properties"]), "{name}");
        assert!(!t["cadence"].as_str().unwrap().is_empty());
    }
    let privacy = d["privacy"].to_string();
    assert!(privacy.contains("one subject per person") && privacy.contains("re-identify"), "{privacy}");
    // The Markdown form carries the same.
    let out = wearbridge(dir.path(), &["--set", &set, "describe"], &[], None).await;
    let md = text(&out.stdout);
    assert!(
        md.contains(&format!("# Stream `{stream}`"))
            && md.contains("## `heart-rate-series`")
            && md.contains("# Privacy")
    );
}

/// Runs `wearbridge ARGS` on a pseudo-terminal (util-linux `script` gives it one and
/// copies what it drew): whether it succeeded, and what it drew.
async fn on_a_terminal(dir: &Path, args: &str) -> (bool, String) {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_wearbridge"));
    let out = tokio::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("script (util-linux) runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn long_work_shows_progress_on_a_terminal_and_not_in_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, drawn) = on_a_terminal(dir.path(), &format!("--now {} demo --people 4", common::NOW)).await;
    assert!(ok, "{drawn}");
    assert!(drawn.contains("accounts synced") && drawn.contains("/8"), "a bar with counts: {drawn:.2000}");
    // Without a terminal: no bar, just the payload lines and the summary.
    let out = wearbridge(dir.path(), &["--now", common::NOW, "demo", "--people", "4"], &[], None).await;
    assert!(out.status.success());
    assert!(!text(&out.stderr).contains("accounts synced") && !text(&out.stdout).contains("accounts synced"));
}

#[tokio::test]
async fn schemas_are_listed_and_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = wearbridge(dir.path(), &["schemas"], &[], None).await;
    assert!(out.status.success());
    assert!(text(&out.stdout).lines().any(|l| l == "heart-rate"));
    let out = wearbridge(dir.path(), &["schemas", "heart-rate"], &[], None).await;
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    let out = wearbridge(dir.path(), &["schemas", "nope"], &[], None).await;
    assert!(!out.status.success() && text(&out.stderr).contains("heart-rate"));
}

#[tokio::test]
async fn demo_prints_at_least_100_lines_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = wearbridge(dir.path(), &["demo"], &[], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // 398 from the providers, 2 from the locally captured scale.
    assert_eq!(lines.len(), 400, "{}", lines.len());
    let schemas = wearbridge::schemas::Schemas::load().unwrap();
    let mut types = std::collections::BTreeSet::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        schemas.validate(&v["message"]).unwrap_or_else(|e| panic!("{e}"));
        types.insert(v["message"]["header"]["schema_id"]["name"].as_str().unwrap().to_owned());
    }
    // All five datasets: devices, activity, heart rate (series and resting), sleep, body.
    for t in [
        "device-status",
        "daily-activity",
        "heart-rate-series",
        "resting-heart-rate",
        "sleep-episode",
        "body-weight",
        "body-fat-percentage",
    ] {
        assert!(types.contains(t), "demo printed no {t}: {types:?}");
    }
    let captured = lines.iter().filter(|l| l.contains(r#""source_provider":"local""#)).count();
    assert_eq!(captured, 2, "the scale's newest and cached readings");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one summary line: {stderr}");
    assert!(stderr.starts_with("demo: 3 simulated people"), "{stderr}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the demo leaves no files behind");
}

#[tokio::test]
async fn scales_are_enrolled_assigned_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = wearbridge(d, &["scales", "list"], &[], None).await;
    assert!(out.status.success() && text(&out.stdout).contains("no scale is enrolled yet"));
    assert!(!d.join("wearbridge.db").exists(), "listing creates no store");
    let out = wearbridge(d, &["scales", "add", "aria", "bath", "--mac", "not-a-mac"], &[], None).await;
    assert!(!out.status.success() && text(&out.stderr).contains("--mac"), "{}", text(&out.stderr));
    let out = wearbridge(d, &["scales", "add", "aria", "bath", "--mac", "00:1D:C9:12:34:56"], &[], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = wearbridge(d, &["scales", "assign", "bath", "0", "ann"], &[], None).await;
    assert!(!out.status.success() && text(&out.stderr).contains("guest"), "{}", text(&out.stderr));
    let out = wearbridge(d, &["scales", "assign", "bath", "1", "ann"], &[], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = wearbridge(d, &["scales", "assign", "shower", "1", "ann"], &[], None).await;
    assert!(!out.status.success() && text(&out.stderr).contains("no scale named"), "{}", text(&out.stderr));
    let list = text(&wearbridge(d, &["scales", "list"], &[], None).await.stdout);
    assert!(list.contains("bath") && list.contains("aria") && list.contains("1=ann"), "{list}");
    assert!(!list.contains("00:1D") && !list.to_lowercase().contains("00:1d"), "the MAC is not kept");
    let users = text(&wearbridge(d, &["users", "list"], &[], None).await.stdout);
    assert!(users.contains("ann") && users.contains("local"), "{users}");
    // A local account is not something `users add` enrols.
    let out = wearbridge(d, &["users", "add", "local", "bob", "--refresh-token-stdin"], &[], Some("x")).await;
    assert!(!out.status.success() && text(&out.stderr).contains("fitbit, withings"), "{}", text(&out.stderr));
    let out = wearbridge(d, &["scales", "remove", "bath"], &[], None).await;
    assert!(out.status.success());
    assert!(text(&wearbridge(d, &["scales", "list"], &[], None).await.stdout).lines().count() == 1);
}
