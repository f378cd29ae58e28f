//! The PostgreSQL store and the daemon: leases that never hand one row to two workers, three worker processes sharing one database, a
//! killed worker's accounts taken over, SIGTERM during a sync, `/metrics` and `/readyz`.
//!
//! Needs `DATABASE_URL` (a server where the tests may create databases); `tests/run.sh`
//! starts a temporary one. These tests fail, never skip, without it.

use crate::common::{self, entry};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use wearbridge::simulator::{self, Fault, Simulator};
use wearbridge::sources::fitbit::PROVIDER as FITBIT;
use wearbridge::sources::withings::PROVIDER as WITHINGS;
use wearbridge::store::{Lease, SqlStore, Store, TokenCipher};

/// A new, empty database on the test server; its URL.
pub(crate) async fn fresh_database() -> String {
    let admin = std::env::var("DATABASE_URL")
        .expect("DATABASE_URL must name a PostgreSQL server for these tests (tests/run.sh starts one)");
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).unwrap();
    // Only hex digits after a fixed prefix: safe to splice into the SQL below.
    let name = format!("wb_{}", hex::encode(random));
    let pool = sqlx::PgPool::connect(&admin).await.expect("connect to DATABASE_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await.unwrap();
    pool.close().await;
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    url.to_string()
}

async fn open(url: &str) -> SqlStore {
    SqlStore::open(url, TokenCipher::new([7; 32])).await.expect("open the PostgreSQL store")
}

/// A provider is a name from the source registry, not a SQL CHECK (migration 5): the
/// database takes a new source's name, and an account this build cannot read is left
/// out of the list (and named in the log) instead of stopping everyone.
#[tokio::test]
async fn a_new_provider_needs_no_schema_change() {
    let url = fresh_database().await;
    let store = open(&url).await;
    store.add_account("alice", FITBIT, &SecretString::from("r1")).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO accounts (name, provider, status, created_at, updated_at) VALUES ('olivia', 'oura', 'active', now(), now())",
    )
    .execute(&pool)
    .await
    .expect("any provider name is stored");
    let empty = sqlx::query("UPDATE accounts SET provider = '' WHERE name = 'olivia'").execute(&pool).await;
    assert!(empty.is_err(), "an empty name is still refused");
    let listed: Vec<String> = store.accounts().await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(listed, ["alice"]);
    assert!(store.account("olivia").await.unwrap_err().to_string().contains("oura"));
}

/// What PostgreSQL does beyond the contract every store keeps (`store_contract.rs`): it
/// honours leases, so several workers share one database.
#[tokio::test]
async fn leases_never_hand_one_row_to_two_workers() {
    let url = fresh_database().await;
    let store = open(&url).await;
    let a = store.add_account("alice", FITBIT, &SecretString::from("r1")).await.unwrap();
    let entries: Vec<_> = (0..10).map(entry).collect();
    assert_eq!(store.commit_batch(a.id, "heart_rate", "c1", &entries, &[]).await.unwrap(), 10);
    let pending = store.outbox_pending(100).await.unwrap();
    store.outbox_ack(&pending[..4].iter().map(|p| p.seq).collect::<Vec<_>>()).await.unwrap();
    // Published ids are aged by the store's clock, which stamped them.
    assert_eq!(store.prune_published(Duration::from_secs(3600)).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.prune_published(Duration::from_millis(1)).await.unwrap(), 4);
    assert_eq!(store.commit_batch(a.id, "heart_rate", "c2", &entries[..4], &[]).await.unwrap(), 4, "forgotten ids");
    let again = store.outbox_pending(100).await.unwrap();
    let seqs: Vec<i64> = again.iter().filter(|p| entries[..4].contains(&p.entry)).map(|p| p.seq).collect();
    store.outbox_ack(&seqs).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 6);

    // Two workers never hold the same outbox row; an expired lease is taken over.
    let w1 = Lease::new("w1", Duration::from_secs(60), common::now());
    let w2 = Lease::new("w2", Duration::from_secs(60), common::now());
    let first = store.outbox_claim(&w1, 4).await.unwrap();
    let second = store.outbox_claim(&w2, 100).await.unwrap();
    assert_eq!((first.len(), second.len()), (4, 2));
    let seqs: BTreeSet<i64> = first.iter().chain(&second).map(|p| p.seq).collect();
    assert_eq!(seqs.len(), 6);
    // A renewed lease holds past its first end; once it ends, it is taken over, and the
    // old holder learns so at its next renewal.
    let renewed = Lease { worker: "w1".into(), now_ms: w1.now_ms + 30_000, until_ms: w1.until_ms + 30_000 };
    let first: Vec<i64> = first.iter().map(|p| p.seq).collect();
    assert_eq!(store.outbox_renew(&renewed, &first).await.unwrap().len(), 4);
    let w3 = |now_ms: i64| Lease { worker: "w3".into(), now_ms, until_ms: now_ms + 60_000 };
    assert_eq!(store.outbox_claim(&w3(w1.until_ms + 1), 100).await.unwrap().len(), 2, "w2's lease ran out");
    // A claim that lapses can be taken over in part: the old holder keeps the rest.
    let partly = store.outbox_claim(&w3(renewed.until_ms + 1), 3).await.unwrap();
    assert!(partly.iter().all(|p| first.contains(&p.seq)), "the oldest first: w1's");
    let kept = store.outbox_renew(&renewed, &first).await.unwrap();
    assert_eq!(kept.len(), 1, "w1 learns which of its messages it still holds: {kept:?}");
    assert!(partly.iter().all(|p| !kept.contains(&p.seq)));
    assert_eq!(store.outbox_claim(&w3(renewed.until_ms + 1), 100).await.unwrap().len(), 6, "then all of it");
    assert!(store.outbox_renew(&renewed, &first).await.unwrap().is_empty(), "w1 holds nothing now");

    // Accounts likewise, and a released account is not due again before its time.
    store.add_account("bob", WITHINGS, &SecretString::from("r2")).await.unwrap();
    let got1 = store.claim_accounts(&w1, &["heart_rate"], common::PROVIDERS, 1).await.unwrap();
    let got2 = store.claim_accounts(&w2, &["heart_rate"], common::PROVIDERS, 10).await.unwrap();
    assert_eq!((got1.len(), got2.len()), (1, 1));
    assert_ne!(got1[0].id, got2[0].id);
    store.release_account("w1", got1[0].id, &[("heart_rate".into(), w1.now_ms + 3_600_000)], Some(&[])).await.unwrap();
    let w4 = Lease::new("w4", Duration::from_secs(60), common::now());
    assert!(
        store.claim_accounts(&w4, &["heart_rate"], common::PROVIDERS, 10).await.unwrap().is_empty(),
        "not due, or leased"
    );
    assert_eq!(
        store.claim_accounts(&w4, &["sleep"], common::PROVIDERS, 10).await.unwrap().len(),
        1,
        "another dataset is due"
    );
    // A withdrawn account's lease goes with it.
    store.remove_account("bob").await.unwrap();
    let w5 = Lease { worker: "w5".into(), now_ms: w4.now_ms, until_ms: w4.until_ms };
    assert!(
        store.claim_accounts(&w5, &["sleep"], common::PROVIDERS, 10).await.unwrap().iter().all(|a| a.name != "bob")
    );
}

fn write_config(sim: &Simulator, dir: &Path, store_url: &str, extra_sync: &str) -> String {
    let toml = format!(
        r#"[store]
url = "{store_url}"
key_file = "{d}/store.key"

{upstream}
[sync]
start = "1d"
datasets = ["devices", "heart_rate", "sleep"]
{extra_sync}

{streamr}"#,
        d = dir.display(),
        upstream = common::upstream_toml(sim, dir),
        streamr = common::streamr_http_toml(sim),
    );
    let path = dir.join("wearbridge.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn enrol(sim: &Simulator, dir: &Path, config: &str) {
    for p in sim.people() {
        let token = dir.join(format!("{}.token", p.name));
        std::fs::write(&token, &p.refresh_token).unwrap();
        let out = common::command(
            dir,
            config,
            &["users", "add", "fitbit", &p.name, "--refresh-token-file", token.to_str().unwrap()],
        )
        .output()
        .await
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// When each person's syncs began (the first heart-rate page each sync reads), by name.
pub(crate) fn syncs(sim: &Simulator) -> BTreeMap<String, Vec<Instant>> {
    let mut by_person: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
    for (at, label) in sim.request_log() {
        if let Some(name) = label.strip_prefix("heart-rate-by/") {
            by_person.entry(name.to_owned()).or_default().push(at);
        }
    }
    by_person
}

pub(crate) async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running");
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_one_database_and_take_over_a_killed_one() {
    let sim = common::simulator_on_system_clock(6, 81).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = fresh_database().await;
    let interval = Duration::from_secs(3);
    let config =
        write_config(&sim, d, &url, "interval = \"3s\"\njitter = \"0s\"\nlease = \"4s\"\nshutdown_grace = \"10s\"");
    enrol(&sim, d, &config).await;
    let people: Vec<String> = sim.people().iter().map(|p| p.name.clone()).collect();

    let ports: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let mut workers: Vec<_> = ports
        .iter()
        .map(|port| {
            common::command_on_system_clock(d, &config, &["--set", &format!("server.listen=127.0.0.1:{port}"), "run"])
                .spawn()
                .unwrap()
        })
        .collect();
    // Two rounds for everyone.
    wait_until("every account synced twice", Duration::from_secs(90), || {
        let s = syncs(&sim);
        people.iter().all(|p| s.get(p).is_some_and(|v| v.len() >= 2))
    })
    .await;
    let before_kill = syncs(&sim);
    for (person, times) in &before_kill {
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            assert!(gap >= interval.mul_f64(0.8), "{person} synced twice in one round ({gap:?} apart)");
        }
    }
    let received = sim.streamr_received();
    let ids: BTreeSet<_> = received.iter().map(|r| r.message["header"]["uuid"].to_string()).collect();
    assert!(!received.is_empty());
    assert_eq!(ids.len(), received.len(), "no message was published by two workers");

    // /metrics and /readyz of a live worker.
    let http = crate::common::http();
    // Each worker reports what it did; together they report everything.
    let mut metrics = String::new();
    for port in &ports {
        metrics += &http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
    }
    for series in [
        "wearbridge_upstream_requests_total",
        "wearbridge_token_refreshes_total",
        "wearbridge_records_total",
        "wearbridge_messages_published_total",
        "wearbridge_messages_confirmed_total",
        "wearbridge_outbox_depth",
        "wearbridge_outbox_oldest_age_seconds",
        "wearbridge_schedule_lag_seconds",
        "wearbridge_dataset_freshness_seconds{dataset=\"heart_rate\"}",
        "wearbridge_sync_paused 0",
        "wearbridge_accounts{status=\"active\"} 6",
    ] {
        assert!(metrics.contains(series), "/metrics lacks {series}:\n{metrics}");
    }
    assert!(!metrics.contains(simulator::CLIENT_SECRET) && !metrics.contains(&sim.people()[0].refresh_token));
    let ready = http.get(format!("http://127.0.0.1:{}/readyz", ports[1])).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // Kill one worker outright: its leases expire and the others carry on with everyone.
    workers[0].start_kill().unwrap();
    let _ = workers[0].wait().await;
    let counts =
        |s: &BTreeMap<String, Vec<Instant>>| people.iter().map(|p| s.get(p).map_or(0, Vec::len)).collect::<Vec<_>>();
    let at_kill = counts(&syncs(&sim));
    wait_until("every account synced twice more after the kill", Duration::from_secs(90), || {
        counts(&syncs(&sim)).iter().zip(&at_kill).all(|(now, then)| *now >= then + 2)
    })
    .await;

    // SIGTERM: the survivors stop cleanly.
    for w in &mut workers[1..] {
        sigterm(w);
    }
    for w in &mut workers[1..] {
        let status =
            tokio::time::timeout(Duration::from_secs(20), w.wait()).await.expect("stops within grace").unwrap();
        assert!(status.success(), "exit 0 on SIGTERM: {status:?}");
    }
    let key = wearbridge::keyfile::load_or_create(&d.join("store.key"), "store.key_file").unwrap();
    let store = SqlStore::open(&url, TokenCipher::new(key)).await.unwrap();
    let accounts = store.accounts().await.unwrap();
    assert_eq!(accounts.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_sync_exits_cleanly_and_loses_nothing() {
    let sim = common::simulator(2, 82).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = format!("sqlite://{}/wb.db", d.display());
    let config = write_config(&sim, d, &url, "interval = \"1h\"\nshutdown_grace = \"8s\"");
    enrol(&sim, d, &config).await;
    let dry = common::command(d, &config, &["run", "--once", "--dry-run"]).output().await.unwrap();
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let expected: BTreeSet<String> = String::from_utf8_lossy(&dry.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"]["header"]["uuid"].to_string())
        .collect();
    assert_eq!(expected.len(), 286, "at the pinned instant");

    // Heart-rate reads hang for 2 s each: the signal lands in the middle of a sync.
    sim.faults().inject("google.dataPoints.heart-rate", Fault::Delay(Duration::from_secs(2)), 4);
    let port = common::free_port();
    let before = sim.request_count("google.dataPoints.heart-rate");
    let mut worker =
        common::command(d, &config, &["--set", &format!("server.listen=127.0.0.1:{port}"), "run"]).spawn().unwrap();
    wait_until("a heart-rate read is in flight", Duration::from_secs(30), || {
        sim.request_count("google.dataPoints.heart-rate") > before
    })
    .await;
    let signalled = Instant::now();
    sigterm(&worker);
    let status = tokio::time::timeout(Duration::from_secs(20), worker.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "exit 0: {status:?}");
    // The grace is 8 s; the rest is room for a loaded runner to stop the process.
    assert!(signalled.elapsed() < Duration::from_secs(16), "within the grace period: {:?}", signalled.elapsed());
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    worker.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(stderr.contains("stopping") && stderr.contains("stopped"), "{stderr}");

    // Whatever was in flight is simply done again: nothing is lost.
    let out = common::command(d, &config, &["run", "--once"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: BTreeSet<String> =
        sim.streamr_received().iter().map(|r| r.message["header"]["uuid"].to_string()).collect();
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "{} ids lost", missing.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_unready_when_the_store_is_gone() {
    let sim = common::simulator_on_system_clock(1, 83).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = fresh_database().await;
    let config = write_config(&sim, d, &url, "interval = \"1h\"");
    enrol(&sim, d, &config).await;
    let port = common::free_port();
    let mut worker =
        common::command_on_system_clock(d, &config, &["--set", &format!("server.listen=127.0.0.1:{port}"), "run"])
            .spawn()
            .unwrap();
    let http = crate::common::http();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    let mut status = 0;
    for _ in 0..300 {
        if let Ok(r) = http.get(&ready).send().await {
            status = r.status().as_u16();
            if status == 200 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "ready with a store and a node");
    assert_eq!(http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.unwrap().status(), 200);

    // Take the database away: no new connections, existing ones ended.
    let name = url::Url::parse(&url).unwrap().path().trim_start_matches('/').to_owned();
    let admin = sqlx::PgPool::connect(&std::env::var("DATABASE_URL").unwrap()).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false")))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )))
    .execute(&admin)
    .await
    .unwrap();
    let r = http.get(&ready).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("store"), "{body}");
    assert!(!body.contains("postgres://"), "no URL (and so no password) in the answer");
    assert_eq!(http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.unwrap().status(), 200, "still alive");

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true")))
        .execute(&admin)
        .await
        .unwrap();
    let mut back = 0;
    for _ in 0..300 {
        back = http.get(&ready).send().await.unwrap().status().as_u16();
        if back == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back, 200, "ready again once the store is back");
    sigterm(&worker);
    assert!(worker.wait().await.unwrap().success());
}

/// Two workers drain one PostgreSQL outbox through a node that takes 30 ms per message,
/// so every batch outlasts the 2 s lease it was claimed with: the holder renews its claim
/// while it sends, no batch is taken over mid-send, and no message is published twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_held_while_sending_so_two_workers_never_publish_a_message_twice() {
    let sim = common::simulator(1, 79).await;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database().await;
    let h = common::harness_with(&sim, &dir, "2d", |s| s.store.url = url).await;
    h.pipeline.run_pass(&wearbridge::pipeline::Output::Outbox).await.unwrap();
    let expected = crate::streamr::outbox_ids(h.store.as_ref()).await;
    assert!(expected.len() > 250, "more than one batch of 200: {}", expected.len());
    let mut loaded = h.loaded.clone();
    loaded.settings.streamr.messages_per_second = 100;
    loaded.settings.streamr.stream_messages_per_second = 100;
    loaded.settings.streamr.burst = 1;
    loaded.settings.streamr.transport = wearbridge::config::Transport::Http;
    loaded.settings.streamr.url = sim.streamr_http_url();
    sim.faults().inject("streamr.publish", wearbridge::simulator::Fault::Delay(Duration::from_millis(30)), 10_000);
    // Leases run on real time here.
    let clock = wearbridge::clock::Clock::system();
    let lease = Duration::from_secs(2);
    let worker = |name: &str| {
        wearbridge::app::publisher(&loaded, std::sync::Arc::clone(&h.store), common::fast_retry(), clock.clone())
            .unwrap()
            .with_lease(name, lease)
    };
    let (a, b) = (worker("a"), worker("b"));
    tokio::join!(
        crate::streamr::drain_until_empty(&a, h.store.as_ref()),
        crate::streamr::drain_until_empty(&b, h.store.as_ref())
    );
    let received: Vec<String> =
        sim.streamr_received().iter().map(|r| r.message["header"]["uuid"].as_str().unwrap().to_owned()).collect();
    assert_eq!(crate::streamr::received_ids(&sim), expected);
    assert_eq!(received.len(), expected.len(), "a message was published by both workers");
}
