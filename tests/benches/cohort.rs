//! Real-volume cohort benchmark (issue 16): the simulator in a process of its own at a
//! real device's density (heart rate every 5 s, 1 s in exercise bouts), `wearbridge run
//! --once` in another, measured with `/usr/bin/time` (CPU seconds and max RSS of the
//! wearbridge process only).
//!
//! Run: `cargo bench --bench cohort` (environment: `COHORT_PEOPLE`, default 50;
//! `COHORT_RUNS`, default 3; `COHORT_HR_INTERVAL`, default 5s; `COHORT_MODES`, default
//! `series,samples`). Each person has a Fitbit and a Withings account; a pass
//! reads 27 hours (the day before, plus three hours of windows not closed yet). The
//! client-side quotas are lifted (Withings allows 120 requests a minute per application,
//! which would make this a measure of waiting): CPU and memory are what is measured.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use secrecy::SecretString;
use wearbridge::simulator::generate_people;
use wearbridge::store::{SqlStore, Store, TokenCipher};

const NOW: &str = "2026-11-30T03:05:00Z";
const SEED: u64 = 42;
/// Hours of data one pass reads per account.
const HOURS_READ: f64 = 27.0;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Starts `wearbridge simulate`; returns the child and its printed settings by label.
fn simulator(bin: &str, people: usize, hr_interval: &str) -> (std::process::Child, Vec<(String, String)>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0);
    let mut child = Command::new(bin)
        .args(["--now", NOW, "simulate", "--listen", &format!("127.0.0.1:{port}"), "--people", &people.to_string()])
        .args(["--seed", &SEED.to_string(), "--hr-interval", hr_interval, "--stream", "bench.eth/health"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the simulator");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if line.starts_with("serving until") {
            break;
        }
        if let Some((label, value)) = line.split_once(": ") {
            printed.push((label.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (child, printed)
}

fn printed<'a>(all: &'a [(String, String)], label: &str) -> &'a str {
    all.iter().find(|(l, _)| l.starts_with(label)).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("{label}"))
}

/// `wearbridge run --once` under `/usr/bin/time`: (wall s, CPU s, max RSS KiB, stdout).
fn measured(bin: &str, config: &Path, args: &[&str]) -> (f64, f64, u64, Vec<u8>) {
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %U %S %M", bin, "--now", NOW, "--config"])
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wearbridge under /usr/bin/time");
    // Both pipes at once: a child blocked on a full stderr pipe never closes stdout.
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let mut out = Vec::new();
    child.stdout.take().expect("stdout").read_to_end(&mut out).expect("read stdout");
    let err = reader.join().unwrap_or_default();
    let status = child.wait().expect("wait");
    let line = err.lines().rev().find(|l| l.starts_with("TIME ")).unwrap_or_else(|| panic!("no timing: {err}"));
    let f: Vec<f64> = line[5..].split_whitespace().filter_map(|x| x.parse().ok()).collect();
    assert!(status.success() || status.code() == Some(3), "wearbridge failed: {err}");
    (f[0], f[1] + f[2], f[3] as u64, out)
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_wearbridge");
    let people = env_or("COHORT_PEOPLE", 50);
    let runs = env_or("COHORT_RUNS", 3);
    let hr_interval = std::env::var("COHORT_HR_INTERVAL").unwrap_or_else(|_| "5s".into());
    let modes = std::env::var("COHORT_MODES").unwrap_or_else(|_| "series,samples".into());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    for mode in modes.split(',') {
        let mut rows = Vec::new();
        for run in 0..runs {
            // A fresh simulator per run: Withings rotates refresh tokens on every refresh.
            let (mut sim, urls) = simulator(bin, people, &hr_interval);
            let dir = tempfile::tempdir().expect("dir");
            let d = dir.path();
            let key = wearbridge::keyfile::load_or_create(&d.join("store.key"), "store.key_file").expect("key");
            runtime.block_on(async {
                let store = SqlStore::open(&format!("sqlite://{}", d.join("wb.db").display()), TokenCipher::new(key))
                    .await
                    .expect("store");
                for p in generate_people(SEED, people) {
                    for (provider, token) in p.accounts() {
                        let name = format!("{}-{provider}", p.name);
                        store.add_account(&name, provider, &SecretString::from(token.to_owned())).await.expect("enrol");
                    }
                }
                store.close().await;
            });
            let config = d.join("wearbridge.toml");
            std::fs::write(
                &config,
                format!(
                    r#"[store]
url = "sqlite://{d}/wb.db"
key_file = "{d}/store.key"
[fitbit]
client_id = "{id}"
client_secret = "{secret}"
api_base_url = "{google}"
token_url = "{token}"
requests_per_minute = 1000000
project_requests_per_minute = 100000000
[withings]
client_id = "{id}"
client_secret = "{secret}"
api_base_url = "{withings}"
requests_per_minute = 1000000
[sync]
start = "2026-11-29"
[anonymizer]
key_file = "{d}/anonymizer.key"
[anonymizer.series.heart-rate]
publish = "{mode}"
[streamr]
transport = "file"
url = "file://{d}/archive"
messages_per_second = 1000000
stream_messages_per_second = 1000000
burst = 1000000
[streamr.streams]
default = "bench.eth/health"
"#,
                    d = d.display(),
                    id = printed(&urls, "client id"),
                    secret = printed(&urls, "client secret"),
                    google = printed(&urls, "google health api"),
                    token = printed(&urls, "google oauth token"),
                    withings = printed(&urls, "withings api"),
                ),
            )
            .expect("config");
            let (dry_wall, dry_cpu, dry_rss, out) = measured(bin, &config, &["run", "--once", "--dry-run"]);
            let lines = out.iter().filter(|b| **b == b'\n').count();
            let hr: Vec<&[u8]> = out
                .split(|b| *b == b'\n')
                .filter(|l| {
                    let l = String::from_utf8_lossy(l);
                    l.contains("\"name\":\"heart-rate-series\"") || l.contains("\"name\":\"heart-rate\"")
                })
                .collect();
            let hr_bytes: usize = hr.iter().map(|l| l.len() + 1).sum();
            let (pub_wall, pub_cpu, pub_rss, _) = measured(bin, &config, &["run", "--once"]);
            let archive: u64 = std::fs::read_dir(d.join("archive"))
                .map(|it| it.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
                .unwrap_or(0);
            rows.push((
                dry_wall,
                dry_cpu,
                dry_rss,
                pub_wall,
                pub_cpu,
                pub_rss,
                lines,
                out.len(),
                hr.len(),
                hr_bytes,
                archive,
            ));
            let _ = sim.kill();
            let _ = sim.wait();
            eprintln!("{mode} run {run}: done");
        }
        let person_days = people as f64 * HOURS_READ / 24.0;
        println!(
            "mode = {mode}, {people} people (Fitbit + Withings each), heart rate every {hr_interval}, {person_days:.1} person-days per pass"
        );
        println!(
            "run | dry wall s | dry CPU s | dry CPU s / 1000 person-days | dry max RSS MiB | publish wall s | publish CPU s | publish CPU s / 1000 person-days | publish max RSS MiB | messages / person-day | published bytes / person-day | heart-rate messages / person-day | heart-rate bytes / person-day"
        );
        for (i, r) in rows.iter().enumerate() {
            println!(
                "{} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}",
                i + 1,
                r.0,
                r.1,
                r.1 / person_days * 1000.0,
                r.2 as f64 / 1024.0,
                r.3,
                r.4,
                r.4 / person_days * 1000.0,
                r.5 as f64 / 1024.0,
                r.6 as f64 / person_days,
                r.10 as f64 / person_days,
                r.8 as f64 / person_days,
                r.9 as f64 / person_days,
            );
        }
    }
}
