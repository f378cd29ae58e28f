//! The daemon at cohort scale (issue 17): `wearbridge run` over many accounts, the
//! simulator in a process of its own, sampled every few seconds from outside — accounts
//! synced (from `/metrics`), schedule lag, outbox depth, resident memory and CPU time of
//! the wearbridge process (`/proc`).
//!
//! Run: `cargo bench --bench daemon` (environment: `WEARBRIDGE_BIN`; `DAEMON_PEOPLE`, default 5000, each
//! with a Fitbit and a Withings account; `DAEMON_RUNS`, default 3; `DAEMON_SECONDS`, how
//! long a run with default limits is watched, default 600; `DAEMON_LIMITS`, default
//! `default,lifted`; `DAEMON_HR_INTERVAL`, default `10m`). "lifted" lifts the client-side
//! upstream quotas and the publish rate and runs until every account has synced once.
//! The sink is the file sink (the publish rate limit applies to it as to a node).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "shared.rs"]
mod shared;

use shared::{NOW, base_config, enrol, env_or, measured_bin, simulator};

/// One sample of the daemon from outside.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at_s: f64,
    rss_kib: u64,
    cpu_s: f64,
    syncs: f64,
    lag_s: f64,
    outbox: f64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// VmRSS (KiB) and user + system CPU seconds of `pid`.
fn process(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, f)| f.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/PID/stat, 12 and 13 after ") ".
    (rss, (ticks(11) + ticks(12)) / 100.0)
}

/// `GET /metrics` over a bare socket (the bench has no HTTP client of its own).
fn metrics(port: u16) -> String {
    let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = socket.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut text = String::new();
    let _ = socket.read_to_string(&mut text);
    text
}

/// The sum of every series of `name` (all label sets).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    let sim_bin = env!("CARGO_BIN_EXE_wearbridge");
    let measured_path = measured_bin();
    let bin = measured_path.as_str();
    let people = env_or("DAEMON_PEOPLE", 5000);
    let accounts = people * 2;
    let runs = env_or("DAEMON_RUNS", 3);
    let watch = Duration::from_secs(env_or("DAEMON_SECONDS", 600) as u64);
    let hr_interval = std::env::var("DAEMON_HR_INTERVAL").unwrap_or_else(|_| "10m".into());
    let limits = std::env::var("DAEMON_LIMITS").unwrap_or_else(|_| "default,lifted".into());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    for limit in limits.split(',') {
        let lifted = limit == "lifted";
        println!("\n{limit} limits: {people} people, {accounts} accounts, heart rate every {hr_interval}");
        println!(
            "run | idle RSS MiB (no account) | s until all synced once | accounts synced at 10 min | schedule lag at 10 min s | max RSS MiB | CPU s per account-sync | RSS MiB at 1/2/5/10 min"
        );
        for run in 0..runs {
            let (mut sim, urls) = simulator(sim_bin, people, &hr_interval, lifted);
            let dir = tempfile::tempdir().expect("dir");
            let d = dir.path();
            let port = free_port();
            let publish = if lifted {
                "messages_per_second = 1000000\nstream_messages_per_second = 1000000\nburst = 1000000\n"
            } else {
                ""
            };
            let config = d.join("wearbridge.toml");
            std::fs::write(
                &config,
                format!(
                    "{base}[sync]\nstart = \"2026-11-29\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n[streamr]\ntransport = \"file\"\nurl = \"file://{d}/archive\"\n{publish}[streamr.streams]\ndefault = \"bench.eth/health\"\n",
                    base = base_config(d, &urls, lifted),
                    d = d.display(),
                ),
            )
            .expect("config");
            let start_daemon = || {
                Command::new(bin)
                    .args(["--now", NOW, "--config"])
                    .arg(&config)
                    .arg("run")
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(d.join("daemon.log")).expect("log"))
                    .spawn()
                    .expect("start the daemon")
            };
            // Idle: the daemon with no account, after it settled.
            let mut idle = start_daemon();
            std::thread::sleep(Duration::from_secs(5));
            let (idle_rss, _) = process(idle.id());
            stop(&mut idle);

            enrol(&runtime, d, people);
            let mut daemon = start_daemon();
            let started = Instant::now();
            let mut samples: Vec<Sample> = Vec::new();
            let mut all_synced = None;
            loop {
                std::thread::sleep(Duration::from_secs(5));
                let text = metrics(port);
                let (rss_kib, cpu_s) = process(daemon.id());
                let sample = Sample {
                    at_s: started.elapsed().as_secs_f64(),
                    rss_kib,
                    cpu_s,
                    syncs: metric(&text, "wearbridge_account_syncs_total"),
                    lag_s: metric(&text, "wearbridge_schedule_lag_seconds"),
                    outbox: metric(&text, "wearbridge_outbox_depth"),
                };
                samples.push(sample);
                if all_synced.is_none() && sample.syncs >= accounts as f64 {
                    all_synced = Some(sample.at_s);
                }
                let watched = started.elapsed() >= watch;
                if (lifted && all_synced.is_some()) || (!lifted && watched) || started.elapsed() >= watch * 4 {
                    break;
                }
            }
            stop(&mut daemon);
            let _ = sim.kill();
            let _ = sim.wait();
            let at = |s: f64| samples.iter().find(|x| x.at_s >= s).or(samples.last()).copied().unwrap_or_default();
            let ten = at(600.0);
            let last = samples.last().copied().unwrap_or_default();
            let max_rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
            let mib = |k: u64| k as f64 / 1024.0;
            println!(
                "{} | {:.1} | {} | {:.0} | {:.0} | {:.0} | {:.4} | {:.0} / {:.0} / {:.0} / {:.0}",
                run + 1,
                mib(idle_rss),
                all_synced.map_or_else(|| format!("> {:.0}", last.at_s), |s| format!("{s:.0}")),
                ten.syncs,
                ten.lag_s,
                mib(max_rss),
                last.cpu_s / last.syncs.max(1.0),
                mib(at(60.0).rss_kib),
                mib(at(120.0).rss_kib),
                mib(at(300.0).rss_kib),
                mib(ten.rss_kib),
            );
            eprintln!(
                "{limit} run {}: last sample {last:?}; outbox at 10 min {:.0}; samples every 5 s: {}",
                run + 1,
                ten.outbox,
                samples.iter().map(|s| format!("{:.0}:{:.0}", s.at_s, s.syncs)).collect::<Vec<_>>().join(" ")
            );
        }
    }
}

/// SIGTERM, then wait (the daemon finishes in-flight work within its grace period).
fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
