//! What the out-of-process benchmarks share: the simulator in a process of its own, its
//! people enrolled straight into a store, and a configuration pointing at both.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use secrecy::SecretString;
use wearbridge::simulator::generate_people;
use wearbridge::store::{SqlStore, Store, TokenCipher};

pub const NOW: &str = "2026-11-30T03:05:00Z";
pub const SEED: u64 = 42;

/// The wearbridge binary measured: `WEARBRIDGE_BIN` (say, the production profile's
/// `target/production/wearbridge`), else the one cargo built for the bench. The
/// simulator always runs from cargo's (it needs the `demo` feature).
pub fn measured_bin() -> String {
    std::env::var("WEARBRIDGE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_wearbridge").to_owned())
}

pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Starts `wearbridge simulate`; returns the child and its printed settings by label.
/// With `lifted`, the simulator does not enforce Withings' 120 requests a minute either
/// (to measure wearbridge's own cost, not the quota's).
pub fn simulator(
    bin: &str,
    people: usize,
    hr_interval: &str,
    lifted: bool,
) -> (std::process::Child, Vec<(String, String)>) {
    let quota = if lifted { "0".to_owned() } else { wearbridge::simulator::WITHINGS_REQUESTS_PER_MINUTE.to_string() };
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0);
    let mut child = Command::new(bin)
        .args(["--now", NOW, "simulate", "--listen", &format!("127.0.0.1:{port}"), "--people", &people.to_string()])
        .args(["--seed", &SEED.to_string(), "--hr-interval", hr_interval, "--stream", "bench.eth/health"])
        .args(["--withings-quota", &quota])
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

pub fn printed<'a>(all: &'a [(String, String)], label: &str) -> &'a str {
    all.iter().find(|(l, _)| l.starts_with(label)).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("{label}"))
}

/// Enrols every simulated person's Fitbit and Withings accounts into the SQLite store
/// in `dir` (as `users add` would, without a process per account).
pub fn enrol(runtime: &tokio::runtime::Runtime, dir: &Path, people: usize) {
    let key = wearbridge::keyfile::load_or_create(&dir.join("store.key"), "store.key_file").expect("key");
    runtime.block_on(async {
        let store = SqlStore::open(&format!("sqlite://{}", dir.join("wb.db").display()), TokenCipher::new(key))
            .await
            .expect("store")
            // Enrolled at the benchmarks' `--now`, as the daemon's clock reads it.
            .with_clock(wearbridge::clock::Clock::pinned(wearbridge::clock::parse_instant(NOW).expect("NOW")));
        for p in generate_people(SEED, people) {
            for (provider, token) in p.accounts() {
                let name = format!("{}-{provider}", p.name);
                store.add_account(&name, provider, &SecretString::from(token.to_owned())).await.expect("enrol");
            }
        }
        store.close().await;
    });
}

/// The upstream and store sections of a configuration for the simulator `urls`; with
/// `lifted`, the client-side upstream quotas are lifted.
pub fn base_config(dir: &Path, urls: &[(String, String)], lifted: bool) -> String {
    let quota = |line: &str| if lifted { format!("{line}\n") } else { String::new() };
    format!(
        r#"[store]
url = "sqlite://{d}/wb.db"
key_file = "{d}/store.key"
[fitbit]
client_id = "{id}"
client_secret = "{secret}"
api_base_url = "{google}"
token_url = "{token}"
{fitbit_quota}[withings]
client_id = "{id}"
client_secret = "{secret}"
api_base_url = "{withings}"
{withings_quota}[anonymizer]
key_file = "{d}/anonymizer.key"
"#,
        d = dir.display(),
        id = printed(urls, "client id"),
        secret = printed(urls, "client secret"),
        google = printed(urls, "google health api"),
        token = printed(urls, "google oauth token"),
        withings = printed(urls, "withings api"),
        fitbit_quota = quota("requests_per_minute = 1000000\nproject_requests_per_minute = 100000000"),
        withings_quota = quota("requests_per_minute = 1000000"),
    )
}
