//! Publishing through the outbox to the simulated Streamr node's HTTP and websocket
//! plugins and to archive files: exactly the dry-run ids arrive, dropped sockets, lost
//! publishes and a dead node lose nothing, a wrong key stops with a clear message,
//! SIGKILL at random moments loses nothing, and the rate limit holds.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wearbridge::simulator::{self, Simulator};
use wearbridge::store::{OutboxEntry, Store};

fn write_config(sim: &Simulator, dir: &Path, extra: &str) -> String {
    write_config_for(sim, dir, "http", extra)
}

/// A configuration for `transport` ("http" or "websocket") against `sim`.
pub(crate) fn write_config_for(sim: &Simulator, dir: &Path, transport: &str, extra: &str) -> String {
    let node = match transport {
        "websocket" => sim.streamr_ws_url().to_owned(),
        _ => sim.streamr_http_url(),
    };
    let toml = format!(
        r#"[store]
url = "sqlite://{d}/wb.db"
key_file = "{d}/store.key"

{upstream}
[sync]
start = "1d"

[streamr]
transport = "{transport}"
url = "{node}"
api_key = "{key}"
{extra}

[streamr.streams]
default = "{stream}"
"#,
        d = dir.display(),
        upstream = common::upstream_toml(sim, dir),
        key = simulator::STREAMR_API_KEY,
        stream = common::STREAM,
    );
    let path = dir.join("wearbridge.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}

pub(crate) async fn run(dir: &Path, config: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = common::command(dir, config, args).stdin(std::process::Stdio::piped()).spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(t) = stdin {
        pipe.write_all(t.as_bytes()).await.unwrap();
    }
    drop(pipe);
    child.wait_with_output().await.unwrap()
}

pub(crate) async fn enrol(sim: &Simulator, dir: &Path, config: &str, people: usize) {
    for p in sim.people().iter().take(people) {
        for (provider, token) in [("fitbit", &p.refresh_token), ("withings", &p.withings_refresh_token)] {
            let name = format!("{}-{provider}", p.name);
            let out = run(dir, config, &["users", "add", provider, &name, "--refresh-token-stdin"], Some(token)).await;
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

pub(crate) fn ids_of_lines(stdout: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["message"]["header"]["uuid"].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn received_ids(sim: &Simulator) -> BTreeSet<String> {
    sim.streamr_received().iter().map(|r| r.message["header"]["uuid"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_publishes_exactly_what_dry_run_prints_over_http() {
    publishes_exactly_what_dry_run_prints("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_publishes_exactly_what_dry_run_prints_over_websocket() {
    publishes_exactly_what_dry_run_prints("websocket").await;
}

async fn publishes_exactly_what_dry_run_prints(transport: &str) {
    let sim = common::simulator(2, 71).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config_for(&sim, d, transport, "messages_per_second = 1000\nstream_messages_per_second = 1000");
    enrol(&sim, d, &config, 2).await;
    let dry = run(d, &config, &["run", "--once", "--dry-run"], None).await;
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let expected = ids_of_lines(&dry.stdout);
    assert_eq!(expected.len(), 605, "two people, one day, at the pinned instant");
    assert!(sim.streamr_received().is_empty(), "a dry run publishes nothing");

    let out = run(d, &config, &["run", "--once"], None).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "publishing prints nothing on stdout");
    let got = received_ids(&sim);
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "{} dry-run ids were not published", missing.len());
    // The clock is pinned: upstream cannot change between the two runs.
    assert_eq!(got, expected, "exactly the dry-run ids");
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "messages wait: exit 3: {stderr}");
    assert!(stderr.contains("319 messages wait in the outbox"), "{stderr}");
    assert!(sim.streamr_received().is_empty());
    let waiting = || async {
        let store = wearbridge::store::SqlStore::open(
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
    assert_eq!(queued, 319, "{queued} messages wait in the outbox");

    // Wrong key: stop, say which setting, keep everything.
    sim.set_streamr_down(false);
    let bad = write_config(&sim, d, "").replace("wearbridge.toml", "bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(d.join("wearbridge.toml")).unwrap().replace(simulator::STREAMR_API_KEY, "wrong-key"),
    )
    .unwrap();
    let upstream_before = sim.request_count("google.token");
    let out = run(d, &bad, &["run", "--once"], None).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("streamr.api_key") && err.contains("403"), "{err}");
    assert!(!err.contains("wrong-key"), "the key itself is never printed");
    assert_eq!(sim.request_count("google.token"), upstream_before, "refused at start-up, before any sync");
    assert!(sim.streamr_received().is_empty(), "the key check publishes nothing");
    assert!(waiting().await >= queued);

    // The node is back: everything goes out.
    let out = run(d, &config, &["run", "--once"], None).await;
    assert!(out.status.success());
    assert_eq!(waiting().await, 0);
    assert!(sim.streamr_received().len() as u64 >= queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_over_http() {
    sigkill_at_random_moments_loses_nothing("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_over_websocket() {
    sigkill_at_random_moments_loses_nothing("websocket").await;
}

async fn sigkill_at_random_moments_loses_nothing(transport: &str) {
    let sim = common::simulator(1, 73).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Slow enough that kills land mid-publish.
    let config =
        write_config_for(&sim, d, transport, "messages_per_second = 100\nstream_messages_per_second = 100\nburst = 1");
    enrol(&sim, d, &config, 1).await;
    let dry = run(d, &config, &["run", "--once", "--dry-run"], None).await;
    let expected = ids_of_lines(&dry.stdout);
    assert_eq!(expected.len(), 297, "one day of one person at the pinned instant");
    let mut killed_mid_publish = 0;
    for i in 0..20u64 {
        let mut child = common::command(d, &config, &["run", "--once"]).spawn().unwrap();
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
    assert_eq!(got, expected, "exactly the dry-run ids");
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
    assert_eq!(queued, 287, "at the pinned instant");
    let mut loaded = h.loaded.clone();
    loaded.settings.streamr.messages_per_second = 50;
    loaded.settings.streamr.burst = 1;
    let publisher =
        wearbridge::app::publisher(&loaded, Arc::clone(&h.store), common::fast_retry(), h.clock.clone()).unwrap();
    let summary = publisher.drain().await.unwrap();
    assert_eq!((summary.published, summary.quarantined, summary.stopped_early), (queued - 1, 1, false));
    assert_eq!((h.store.outbox_len().await.unwrap(), h.store.quarantined_len().await.unwrap()), (0, 1));
    let times: Vec<_> = sim.streamr_received().iter().map(|r| r.at).collect();
    let span = times.last().unwrap().duration_since(times[0]).as_secs_f64();
    let rate = (times.len() - 1) as f64 / span;
    // The limit is the upper bound; the lower one only says the drain did not stall (a
    // loaded two-core runner loses time to the shared runtime and the batch acks' fsync).
    assert!((25.0..=55.0).contains(&rate), "measured {rate:.1} msg/s for a limit of 50");
}

/// A harness with a full outbox, publishing over the simulated node's websocket plugin.
pub(crate) async fn websocket_harness(
    sim: &Simulator,
    dir: &tempfile::TempDir,
) -> (common::Harness, wearbridge::config::Loaded) {
    let h = common::harness(sim, dir, "2d").await;
    h.pipeline.run_pass(&wearbridge::pipeline::Output::Outbox).await.unwrap();
    let mut loaded = h.loaded.clone();
    let s = &mut loaded.settings.streamr;
    s.transport = wearbridge::config::Transport::Websocket;
    s.url = sim.streamr_ws_url().to_owned();
    // Short enough for the loss tests to resend quickly, long enough that a loaded
    // runner's stall is not mistaken for a lost echo.
    s.confirm_timeout = Duration::from_millis(1500);
    s.messages_per_second = 5000;
    s.stream_messages_per_second = 5000;
    s.burst = 100;
    (h, loaded)
}

pub(crate) async fn outbox_ids(store: &impl Store) -> BTreeSet<String> {
    store.outbox_pending(100_000).await.unwrap().into_iter().map(|p| p.entry.message_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_drops_and_silent_losses_are_resent_until_confirmed() {
    let sim = common::simulator(1, 75).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, loaded) = websocket_harness(&sim, &dir).await;
    let expected = outbox_ids(h.store.as_ref()).await;
    assert_eq!(expected.len(), 294, "at the pinned instant");
    // Every 37th frame kills its socket (and is lost); 5 more vanish without a word.
    sim.streamr_ws().drop_socket_every(37);
    sim.streamr_ws().lose_next(5);
    let publisher =
        wearbridge::app::publisher(&loaded, Arc::clone(&h.store), common::fast_retry(), h.clock.clone()).unwrap();
    let mut rounds = 0;
    while h.store.outbox_len().await.unwrap() > 0 {
        let summary = publisher.drain().await.unwrap();
        assert!(summary.resent > 0 || rounds > 0, "lost messages were sent again: {summary:?}");
        rounds += 1;
        assert!(rounds < 10, "the outbox never emptied");
    }
    let got = received_ids(&sim);
    let missing: Vec<_> = expected.difference(&got).collect();
    assert!(missing.is_empty(), "{} ids never arrived", missing.len());
    assert_eq!(got.len(), expected.len());
    assert!(sim.streamr_ws().publish_connections() > 3, "dropped sockets were reopened");
    for r in sim.streamr_received() {
        assert_eq!(r.partition_key.as_deref(), r.message["subject"].as_str(), "partitioned by subject");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_node_down_for_a_while_loses_nothing() {
    let sim = common::simulator(1, 76).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, mut loaded) = websocket_harness(&sim, &dir).await;
    // Slow enough (about 1 s for the backlog) that the outage below lands mid-drain.
    loaded.settings.streamr.messages_per_second = 300;
    let expected = outbox_ids(h.store.as_ref()).await;
    sim.set_streamr_down(true);
    let publisher =
        wearbridge::app::publisher(&loaded, Arc::clone(&h.store), common::fast_retry(), h.clock.clone()).unwrap();
    let summary = publisher.drain().await.unwrap();
    assert!(summary.stopped_early && summary.published == 0, "{summary:?}");
    assert_eq!(outbox_ids(h.store.as_ref()).await, expected, "everything waits in the outbox");

    // Back up, then down again in the middle of a drain, then back for good.
    sim.set_streamr_down(false);
    // The outage starts once part of the backlog is out, whatever the runner's speed.
    let node = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sim.streamr_received().len() < 20 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sim.set_streamr_down(true);
        tokio::time::sleep(Duration::from_millis(600)).await;
        sim.set_streamr_down(false);
    };
    let drains = async {
        let mut interrupted = false;
        for _ in 0..20 {
            let summary = publisher.drain().await.unwrap();
            interrupted |= summary.stopped_early;
            if h.store.outbox_len().await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        interrupted
    };
    let ((), interrupted) = tokio::join!(node, drains);
    assert!(interrupted, "the outage interrupted a drain");
    assert_eq!(h.store.outbox_len().await.unwrap(), 0);
    let got = received_ids(&sim);
    assert!(expected.is_subset(&got), "{} ids lost", expected.difference(&got).count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_answers_keepalive_and_confirm_none_trusts_the_socket() {
    let sim = common::simulator(1, 77).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, mut loaded) = websocket_harness(&sim, &dir).await;
    // The node pings every 200 ms and drops sockets silent for 1.5 s.
    sim.streamr_ws().keepalive(Duration::from_millis(200), Duration::from_millis(1500));
    let entry = |n: u32| OutboxEntry {
        message_id: format!("00000000-0000-8000-8000-{n:012}"),
        stream: common::STREAM.into(),
        partition_key: "s".into(),
        payload: format!(r#"{{"subject":"s","header":{{"uuid":"00000000-0000-8000-8000-{n:012}"}}}}"#),
    };
    let backlog = h.store.outbox_len().await.unwrap();
    let publisher =
        wearbridge::app::publisher(&loaded, Arc::clone(&h.store), common::fast_retry(), h.clock.clone()).unwrap();
    publisher.drain().await.unwrap();
    let connections = sim.streamr_ws().publish_connections();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    h.store.commit_batch(1, "test", "x", &[entry(1)], &[]).await.unwrap();
    let summary = publisher.drain().await.unwrap();
    assert_eq!(summary.published, 1);
    assert_eq!(sim.streamr_ws().publish_connections(), connections, "the idle socket survived on pongs");
    assert_eq!(sim.streamr_received().len() as u64, backlog + 1);

    // confirm = "none": a message the node loses silently still counts as sent.
    loaded.settings.streamr.confirm = wearbridge::config::Confirm::None;
    let fire_and_forget =
        wearbridge::app::publisher(&loaded, Arc::clone(&h.store), common::fast_retry(), h.clock.clone()).unwrap();
    sim.streamr_ws().lose_next(1);
    h.store.commit_batch(1, "test", "y", &[entry(2)], &[]).await.unwrap();
    let summary = fire_and_forget.drain().await.unwrap();
    assert_eq!((summary.published, summary.resent), (1, 0));
    assert_eq!(sim.streamr_received().len() as u64, backlog + 1, "lost, as documented for confirm = \"none\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_wrong_key_and_wrong_url_stop_with_the_setting_named() {
    let sim = common::simulator(1, 78).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config_for(&sim, d, "websocket", "");
    enrol(&sim, d, &config, 1).await;
    let bad = d.join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(&config).unwrap().replace(simulator::STREAMR_API_KEY, "wrong-key"))
        .unwrap();
    let upstream_before = sim.request_count("google.token");
    let out = run(d, bad.to_str().unwrap(), &["run", "--once"], None).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("streamr.api_key") && err.contains("403"), "{err}");
    assert!(!err.contains("wrong-key"), "the key itself is never printed");
    assert_eq!(sim.request_count("google.token"), upstream_before, "refused at start-up, before any sync");

    let http_url = std::fs::read_to_string(&config).unwrap().replace(sim.streamr_ws_url(), &sim.streamr_http_url());
    std::fs::write(&bad, http_url).unwrap();
    let out = run(d, bad.to_str().unwrap(), &["run", "--once"], None).await;
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("streamr.url") && err.contains("ws://"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_writes_rotated_ndjson_with_every_message_once() {
    let sim = common::simulator(1, 79).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "2d").await;
    h.pipeline.run_pass(&wearbridge::pipeline::Output::Outbox).await.unwrap();
    let expected = outbox_ids(h.store.as_ref()).await;
    let archive = dir.path().join("archive");
    let mut loaded = h.loaded.clone();
    let s = &mut loaded.settings.streamr;
    s.transport = wearbridge::config::Transport::File;
    s.url = url::Url::from_directory_path(&archive).unwrap().to_string();
    s.file_max_bytes = 32 * 1024;
    s.messages_per_second = 100_000;
    s.stream_messages_per_second = 100_000;
    s.burst = 1000;
    wearbridge::app::require_for_publishing(&loaded).unwrap();
    let publisher =
        wearbridge::app::publisher(&loaded, Arc::clone(&h.store), common::fast_retry(), h.clock.clone()).unwrap();
    let summary = publisher.drain().await.unwrap();
    assert_eq!(summary.published as usize, expected.len());
    assert_eq!(h.store.outbox_len().await.unwrap(), 0);
    let mut files: Vec<_> = std::fs::read_dir(&archive).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() > 2, "rotated into {} files", files.len());
    let mut got = Vec::new();
    for f in &files {
        assert!(f.extension().is_some_and(|e| e == "ndjson"));
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.len() as u64 <= 32 * 1024, "{} is {} bytes", f.display(), text.len());
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["stream"], common::STREAM);
            assert_eq!(v["partition_key"], v["message"]["subject"]);
            got.push(v["message"]["header"]["uuid"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(got.len(), expected.len(), "each message once");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
}

/// Drains until the outbox is empty, trying again while another worker holds a claim.
pub(crate) async fn drain_until_empty(publisher: &wearbridge::publisher::Publisher, store: &impl Store) {
    for _ in 0..600 {
        let summary = publisher.drain().await.unwrap();
        assert!(!summary.stopped_early, "{summary:?}");
        if store.outbox_len().await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the outbox never emptied");
}
