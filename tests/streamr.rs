//! Publishing through the outbox to the simulated Streamr node's HTTP plugin: exactly the
//! dry-run ids arrive, a dead node fills the outbox, a wrong key stops with a clear
//! message, SIGKILL at random moments loses nothing, and the rate limit holds.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wearbridge::simulator::{self, Simulator};
use wearbridge::store::{OutboxEntry, Store};

fn write_config(sim: &Simulator, dir: &Path, extra: &str) -> String {
    let toml = format!(
        r#"[store]
url = "sqlite://{d}/wb.db"
key_file = "{d}/store.key"

[fitbit]
client_id = "{id}"
client_secret = "{secret}"
api_base_url = "{google}"
token_url = "{token}"

[withings]
client_id = "{id}"
client_secret = "{secret}"
api_base_url = "{withings}"

[sync]
start = "1d"

[anonymizer]
key_file = "{d}/anonymizer.key"

[streamr]
transport = "http"
url = "{node}"
api_key = "{key}"
{extra}

[streamr.streams]
default = "{stream}"
"#,
        d = dir.display(),
        id = simulator::CLIENT_ID,
        secret = simulator::CLIENT_SECRET,
        google = sim.google_api_base(),
        token = sim.google_token_url(),
        withings = sim.withings_api_base(),
        node = sim.streamr_http_url(),
        key = simulator::STREAMR_API_KEY,
        stream = common::STREAM,
    );
    let path = dir.join("wearbridge.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}

fn command(dir: &Path, config: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wearbridge"));
    cmd.arg("--config").arg(config).args(args).current_dir(dir).env_remove("RUST_LOG");
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd
}

async fn run(dir: &Path, config: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = command(dir, config, args).spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(t) = stdin {
        pipe.write_all(t.as_bytes()).await.unwrap();
    }
    drop(pipe);
    child.wait_with_output().await.unwrap()
}

async fn enrol(sim: &Simulator, dir: &Path, config: &str, people: usize) {
    for p in sim.people().iter().take(people) {
        for (provider, token) in [("fitbit", &p.refresh_token), ("withings", &p.withings_refresh_token)] {
            let name = format!("{}-{provider}", p.name);
            let out = run(dir, config, &["users", "add", provider, &name, "--refresh-token-stdin"], Some(token)).await;
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn ids_of_lines(stdout: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["message"]["header"]["uuid"].as_str().unwrap().to_owned())
        .collect()
}

fn received_ids(sim: &Simulator) -> BTreeSet<String> {
    sim.streamr_received().iter().map(|r| r.message["header"]["uuid"].as_str().unwrap().to_owned()).collect()
}

/// Ids a later run may add: upstream state that changed after the dry run — a new
/// sample, or a device that synced again (device times are coarsened to the hour, so
/// "recent" reaches back two hours).
fn newer_than(sim: &Simulator, id: &str, since: chrono::DateTime<chrono::Utc>) -> bool {
    let found = sim.streamr_received().into_iter().find(|r| r.message["header"]["uuid"] == id);
    let Some(r) = found else { return false };
    let at = r.message["header"]["source_creation_date_time"]
        .as_str()
        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok());
    let ok = at.is_some_and(|t| t >= since - chrono::TimeDelta::hours(2));
    if !ok {
        eprintln!("unexpected message: {}", r.message);
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_publishes_exactly_what_dry_run_prints() {
    let sim = common::simulator(2, 71).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config(&sim, d, "");
    enrol(&sim, d, &config, 2).await;
    let before = chrono::Utc::now();
    let dry = run(d, &config, &["run", "--once", "--dry-run"], None).await;
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let expected = ids_of_lines(&dry.stdout);
    assert!(expected.len() > 500);
    assert!(sim.streamr_received().is_empty(), "a dry run publishes nothing");

    let out = run(d, &config, &["run", "--once"], None).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "publishing prints nothing on stdout");
    let got = received_ids(&sim);
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "{} dry-run ids were not published", missing.len());
    for extra in got.difference(&expected) {
        assert!(newer_than(&sim, extra, before), "published {extra}, which the dry run did not print");
    }
    assert_eq!(sim.streamr_received().len(), got.len(), "each message once");
    for r in sim.streamr_received() {
        assert_eq!(r.stream, common::STREAM);
        assert_eq!(r.partition_key.as_deref(), r.message["subject"].as_str(), "partitioned by subject");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_fills_the_outbox_and_a_wrong_key_stops_clearly() {
    let sim = common::simulator(1, 72).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config(&sim, d, "");
    enrol(&sim, d, &config, 1).await;
    sim.set_streamr_down(true);
    let out = run(d, &config, &["run", "--once"], None).await;
    assert!(out.status.success(), "a dead node is not an error of the run: {}", String::from_utf8_lossy(&out.stderr));
    assert!(sim.streamr_received().is_empty());
    let waiting = || async {
        let store = wearbridge::store::SqliteStore::open(
            &format!("sqlite://{}/wb.db", d.display()),
            wearbridge::store::TokenCipher::new(
                wearbridge::keyfile::load_or_create(&d.join("store.key"), "store.key_file").unwrap(),
            ),
        )
        .await
        .unwrap();
        store.outbox_len().await.unwrap()
    };
    let queued = waiting().await;
    assert!(queued > 100, "{queued} messages wait in the outbox");

    // Wrong key: stop, say which setting, keep everything.
    sim.set_streamr_down(false);
    let bad = write_config(&sim, d, "").replace("wearbridge.toml", "bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(d.join("wearbridge.toml")).unwrap().replace(simulator::STREAMR_API_KEY, "wrong-key"),
    )
    .unwrap();
    let out = run(d, &bad, &["run", "--once"], None).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("streamr.api_key") && err.contains("403"), "{err}");
    assert!(!err.contains("wrong-key"), "the key itself is never printed");
    assert!(waiting().await >= queued);

    // The node is back: everything goes out.
    let out = run(d, &config, &["run", "--once"], None).await;
    assert!(out.status.success());
    assert_eq!(waiting().await, 0);
    assert!(sim.streamr_received().len() as u64 >= queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing() {
    let sim = common::simulator(1, 73).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Slow enough that kills land mid-publish.
    let config = write_config(&sim, d, "messages_per_second = 100\nburst = 1");
    enrol(&sim, d, &config, 1).await;
    let before = chrono::Utc::now();
    let dry = run(d, &config, &["run", "--once", "--dry-run"], None).await;
    let expected = ids_of_lines(&dry.stdout);
    assert!(expected.len() > 300);
    let mut killed_mid_publish = 0;
    for i in 0..20u64 {
        let mut child = command(d, &config, &["run", "--once"]).spawn().unwrap();
        drop(child.stdin.take());
        let delay = 150 + (i * 7919) % 900;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(delay)) => {
                child.start_kill().unwrap(); // SIGKILL
                let _ = child.wait().await;
                killed_mid_publish += 1;
            }
            status = child.wait() => {
                assert!(status.unwrap().success());
            }
        }
    }
    assert!(killed_mid_publish >= 10, "most runs were killed: {killed_mid_publish}");
    let out = run(d, &config, &["run", "--once"], None).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = received_ids(&sim);
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "{} ids lost across {killed_mid_publish} kills", missing.len());
    for extra in got.difference(&expected) {
        assert!(newer_than(&sim, extra, before));
    }
}

#[tokio::test]
async fn the_rate_limit_holds_and_refused_messages_are_quarantined() {
    let sim = common::simulator(1, 74).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "2d").await;
    h.pipeline.run_pass(&wearbridge::pipeline::Output::Outbox).await.unwrap();
    let bad = OutboxEntry {
        message_id: "bad".into(),
        stream: common::STREAM.into(),
        partition_key: "p".into(),
        payload: "[1, 2]".into(),
    };
    h.store.commit_batch(1, "test", "x", &[bad], &[]).await.unwrap();
    let queued = h.store.outbox_len().await.unwrap();
    assert!(queued > 150);
    let mut loaded = h.loaded.clone();
    loaded.settings.streamr.messages_per_second = 50;
    loaded.settings.streamr.burst = 1;
    let publisher = wearbridge::app::publisher(&loaded, Arc::clone(&h.store), common::fast_backoff()).unwrap();
    let summary = publisher.drain().await.unwrap();
    assert_eq!((summary.published, summary.quarantined, summary.stopped_early), (queued - 1, 1, false));
    assert_eq!((h.store.outbox_len().await.unwrap(), h.store.quarantined_len().await.unwrap()), (0, 1));
    let times: Vec<_> = sim.streamr_received().iter().map(|r| r.at).collect();
    let span = times.last().unwrap().duration_since(times[0]).as_secs_f64();
    let rate = (times.len() - 1) as f64 / span;
    assert!((45.0..=55.0).contains(&rate), "measured {rate:.1} msg/s for a limit of 50");
}
