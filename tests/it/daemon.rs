//! The daemon at cohort scale on SQLite (issue 17): syncing never waits on publishing,
//! and the CLI works beside a busy daemon.
//!
//! Both failed before issue 17: the worker awaited the store (a lease renewal, the next
//! claim) while not polling syncs that held a connection in a transaction, so the pool
//! ran dry ("pool timed out while waiting for an open connection"); and `users add` in
//! another process failed at once with "database is locked" when its deferred
//! transaction found its snapshot made stale by the daemon's writes.

use crate::common;
use crate::postgres::{sigterm, syncs, wait_until};

use std::path::Path;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use wearbridge::simulator::Simulator;
use wearbridge::store::{SqlStore, Store, TokenCipher};

/// A configuration for a daemon on SQLite publishing over HTTP at `rate` messages/s.
fn config(sim: &Simulator, dir: &Path, rate: u32) -> String {
    let extra = format!("messages_per_second = {rate}\nstream_messages_per_second = {rate}\nburst = {rate}");
    crate::streamr::write_config_for(sim, dir, "http", &extra)
}

/// Enrols `people` of the simulator's people (Fitbit) straight into the store.
async fn enrol(sim: &Simulator, dir: &Path, people: std::ops::Range<usize>) {
    let key = wearbridge::keyfile::load_or_create(&dir.join("store.key"), "store.key_file").unwrap();
    let store = SqlStore::open(&format!("sqlite://{}/wb.db", dir.display()), TokenCipher::new(key)).await.unwrap();
    for p in &sim.people()[people] {
        store
            .add_account(&p.name, wearbridge::sources::fitbit::PROVIDER, &SecretString::from(p.refresh_token.clone()))
            .await
            .unwrap();
    }
    store.close().await;
}

/// Messages waiting in the outbox of the SQLite store in `dir` (read beside the daemon).
async fn queued(dir: &Path) -> u64 {
    let key = wearbridge::keyfile::load_or_create(&dir.join("store.key"), "store.key_file").unwrap();
    let store = SqlStore::open(&format!("sqlite://{}/wb.db", dir.display()), TokenCipher::new(key)).await.unwrap();
    let queued = store.outbox_len().await.unwrap();
    store.close().await;
    queued
}

/// `people` simulated people, the first `enrolled` of them enrolled, and a configuration
/// publishing at `rate` messages/s.
async fn cohort(people: usize, seed: u64, rate: u32, enrolled: usize) -> (Simulator, tempfile::TempDir, String) {
    let sim = common::simulator_on_system_clock(people, seed).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(&sim, dir.path(), rate);
    enrol(&sim, dir.path(), 0..enrolled).await;
    (sim, dir, config)
}

/// Prints the end of the daemon's log when the test fails, so a red run says why.
pub(crate) struct LogOnFailure(pub(crate) std::path::PathBuf);

impl Drop for LogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- last lines of {} ---", self.0.display());
            for line in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{line}");
            }
        }
    }
}

fn daemon(dir: &Path, config: &str, interval: &str) -> tokio::process::Child {
    daemon_with(dir, config, interval, &[])
}

fn daemon_with(dir: &Path, config: &str, interval: &str, settings: &[&str]) -> tokio::process::Child {
    let port = common::free_port();
    let listen = format!("server.listen=127.0.0.1:{port}");
    let interval = format!("sync.interval={interval}");
    let mut args = vec!["--set", &listen, "--set", &interval, "--set", "sync.jitter=0s"];
    for s in settings {
        args.extend(["--set", s]);
    }
    args.push("run");
    common::command_on_system_clock(dir, config, &args)
        // Nobody reads its log here: a full pipe would stop the daemon mid-write.
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap()
}

/// With a publish limit of 10 msg/s and a backlog far beyond it (50 accounts, a day each),
/// every account is synced within two intervals while the outbox drains behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncing_never_waits_on_publishing() {
    let (sim, dir, config) = cohort(50, 1701, 10, 50).await;
    let d = dir.path();
    let started = Instant::now();
    let _log = LogOnFailure(d.join("daemon.log"));
    let mut worker = daemon(d, &config, "5s");
    let people: Vec<String> = sim.people().iter().map(|p| p.name.clone()).collect();
    wait_until("every account synced once", Duration::from_secs(60), || {
        let s = syncs(&sim);
        people.iter().all(|p| s.contains_key(p))
    })
    .await;
    // Judged by what was published meanwhile, not by the wall clock (a loaded runner may
    // start the process slowly): had syncing waited on the 10 msg/s drain, the backlog
    // (thousands of messages) would have been published before the last account was read.
    let published = sim.streamr_received().len();
    eprintln!("all 50 accounts synced after {:?}, {published} messages published by then", started.elapsed());
    assert!(published < 1_000, "syncing did not wait on publishing: {published} published");
    let queued = queued(d).await;
    assert!(queued > 2_000, "the backlog is still queued behind: {queued}");
    // Meanwhile the outbox drains at its own pace.
    wait_until("publishing started", Duration::from_secs(20), || !sim.streamr_received().is_empty()).await;
    // And a second sync of everyone within the next interval or two, backlog or not.
    wait_until("every account synced twice", Duration::from_secs(20), || {
        let s = syncs(&sim);
        people.iter().all(|p| s.get(p).is_some_and(|v| v.len() >= 2))
    })
    .await;
    sigterm(&worker);
    let status = tokio::time::timeout(Duration::from_secs(40), worker.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}

/// `users add` 20 times out of 20 while the daemon syncs and publishes on the same SQLite
/// file (and `users remove`, `users list`, `check-config`); the daemon picks every new
/// account up within an interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_add_works_beside_a_busy_daemon() {
    let (sim, dir, config) = cohort(30, 1702, 50, 10).await;
    let d = dir.path();
    let _log = LogOnFailure(d.join("daemon.log"));
    let mut worker = daemon(d, &config, "3s");
    wait_until("the daemon is busy", Duration::from_secs(30), || !syncs(&sim).is_empty()).await;
    let mut failures = Vec::new();
    for p in &sim.people()[10..30] {
        let token = d.join(format!("{}.token", p.name));
        std::fs::write(&token, &p.refresh_token).unwrap();
        let out = common::command_on_system_clock(
            d,
            &config,
            &["users", "add", "fitbit", &p.name, "--refresh-token-file", token.to_str().unwrap()],
        )
        .output()
        .await
        .unwrap();
        if !out.status.success() {
            failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    assert!(failures.is_empty(), "{} of 20 failed: {failures:?}", failures.len());
    // The rest of the CLI that touches the store works beside it too.
    for args in [
        vec!["users", "remove", sim.people()[0].name.as_str()],
        vec!["users", "remove", sim.people()[1].name.as_str()],
        vec!["users", "list"],
        vec!["check-config"],
    ] {
        let out = common::command_on_system_clock(d, &config, &args).output().await.unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let added: Vec<String> = sim.people()[10..30].iter().map(|p| p.name.clone()).collect();
    wait_until("the daemon synced every new account", Duration::from_secs(30), || {
        let s = syncs(&sim);
        added.iter().all(|p| s.contains_key(p))
    })
    .await;
    sigterm(&worker);
    let _ = tokio::time::timeout(Duration::from_secs(40), worker.wait()).await;
}

/// Above `sync.outbox_high_water` the daemon claims no more accounts, says so, and
/// resumes once the drain has brought the outbox below nine tenths of the mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_high_water_mark_pauses_syncing_until_it_drains() {
    let (sim, dir, config) = cohort(24, 1703, 500, 24).await;
    let d = dir.path();
    let log = d.join("daemon.log");
    let _log = LogOnFailure(log.clone());
    // The node is down: the outbox only fills.
    sim.set_streamr_down(true);
    let mut worker = daemon_with(d, &config, "1h", &["sync.outbox_high_water=100"]);
    let logged = |what: &str| std::fs::read_to_string(&log).unwrap_or_default().contains(what);
    wait_until("syncing paused", Duration::from_secs(30), || logged("syncing paused")).await;
    // Syncs claimed before the pause finish on their own; count once they have.
    let mut paused_at = syncs(&sim).len();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = syncs(&sim).len();
        if now == paused_at {
            break;
        }
        paused_at = now;
    }
    assert!(paused_at < 24, "the mark held accounts back: {paused_at} of 24 synced");
    // Nothing new is claimed while the outbox stays above the mark.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(syncs(&sim).len(), paused_at, "no account was claimed while paused");
    assert!(!logged("syncing resumed"));
    // The node comes back: the outbox drains, syncing resumes, everyone is synced.
    sim.set_streamr_down(false);
    let people: Vec<String> = sim.people().iter().map(|p| p.name.clone()).collect();
    wait_until("every account synced once", Duration::from_secs(90), || {
        let s = syncs(&sim);
        people.iter().all(|p| s.contains_key(p))
    })
    .await;
    assert!(logged("syncing resumed"));
    sigterm(&worker);
    let status = tokio::time::timeout(Duration::from_secs(40), worker.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
}
