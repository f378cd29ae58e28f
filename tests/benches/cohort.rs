//! Real-volume cohort benchmark (issue 16): the simulator in a process of its own at a
//! real device's density (heart rate every 5 s, 1 s in exercise bouts), `wearbridge run
//! --once` in another, measured with `/usr/bin/time` (CPU seconds and max RSS of the
//! wearbridge process only).
//!
//! Run: `cargo bench --bench cohort` (environment: `WEARBRIDGE_BIN`; `COHORT_PEOPLE`, default 50;
//! `COHORT_RUNS`, default 3; `COHORT_HR_INTERVAL`, default 5s; `COHORT_MODES`, default
//! `series,samples`). Each person has a Fitbit and a Withings account; a pass
//! reads 27 hours (the day before, plus three hours of windows not closed yet). The
//! client-side quotas are lifted (Withings allows 120 requests a minute per application,
//! which would make this a measure of waiting): CPU and memory are what is measured.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

#[path = "shared.rs"]
mod shared;

use shared::{NOW, base_config, enrol, env_or, measured_bin, simulator};

/// Hours of data one pass reads per account.
const HOURS_READ: f64 = 27.0;

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
    let sim_bin = env!("CARGO_BIN_EXE_wearbridge");
    let measured_path = measured_bin();
    let bin = measured_path.as_str();
    let people = env_or("COHORT_PEOPLE", 50);
    let runs = env_or("COHORT_RUNS", 3);
    let hr_interval = std::env::var("COHORT_HR_INTERVAL").unwrap_or_else(|_| "5s".into());
    let modes = std::env::var("COHORT_MODES").unwrap_or_else(|_| "series,samples".into());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    for mode in modes.split(',') {
        let mut rows = Vec::new();
        for run in 0..runs {
            // A fresh simulator per run: Withings rotates refresh tokens on every refresh.
            let (mut sim, urls) = simulator(sim_bin, people, &hr_interval, true);
            let dir = tempfile::tempdir().expect("dir");
            let d = dir.path();
            enrol(&runtime, d, people);
            let config = d.join("wearbridge.toml");
            std::fs::write(
                &config,
                format!(
                    r#"{base}[sync]
start = "2026-11-29"
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
                    base = base_config(d, &urls, true),
                    d = d.display(),
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
