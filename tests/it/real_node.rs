//! What a real Streamr node does (`streamr-node.md`, "Observed on a real node"), and that
//! wearbridge publishes through it anyway: streams with several partitions, the HTTP
//! plugin's message chain, nodes with `payloadMetadata`, unknown streams that swallow
//! publishes, a node that closes sockets, and `run --once` exit codes.
//!
//! The first half checks the simulated node against the fact sheet with a bare client;
//! the second half runs wearbridge against it.

use crate::common;
use crate::streamr::{enrol, ids_of_lines, outbox_ids, received_ids, run, websocket_harness, write_config_for};

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use wearbridge::simulator::{self, Simulator};
use wearbridge::store::Store;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(sim: &Simulator, path: &str) -> Socket {
    let url = format!("{}{path}", sim.streamr_ws_url());
    tokio_tungstenite::connect_async(url).await.expect("the node opens the socket").0
}

fn ws_path(stream: &str, action: &str, extra: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(stream.as_bytes()).collect();
    format!("/streams/{id}/{action}?apiKey={}{extra}", simulator::STREAMR_API_KEY)
}

/// The next text frame (not a ping), within 2 s.
async fn next_text(socket: &mut Socket) -> Option<String> {
    let read = async {
        while let Some(Ok(frame)) = socket.next().await {
            if let Message::Text(t) = frame {
                return Some(t.to_string());
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(2), read).await.ok().flatten()
}

async fn publish(socket: &mut Socket, subject: &str, n: u32) {
    let frame = format!(r#"{{"subject":"{subject}","n":{n},"value":77.0}}"#);
    socket.send(Message::text(frame)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_node_behaves_like_a_real_one_over_websocket() {
    let sim = common::simulator(1, 111).await;
    sim.register_stream("parts.eth/x", 3);
    // Subjects that land on three different partitions.
    let subjects: Vec<String> = {
        let mut by_partition = std::collections::BTreeMap::new();
        for i in 0..100 {
            let s = format!("subject-{i}");
            by_partition.entry(simulator_partition(&s, 3)).or_insert(s);
        }
        by_partition.into_values().collect()
    };
    assert_eq!(subjects.len(), 3);
    let mut partition_zero = socket(&sim, &ws_path("parts.eth/x", "subscribe", "")).await;
    let mut all = socket(&sim, &ws_path("parts.eth/x", "subscribe", "&partitions=0,1,2")).await;
    let mut publisher = socket(&sim, &ws_path("parts.eth/x", "publish", "&partitionKeyField=subject")).await;
    for (n, s) in subjects.iter().enumerate() {
        publish(&mut publisher, s, n as u32).await;
    }
    let mut heard_by_all = BTreeSet::new();
    for _ in 0..3 {
        let text = next_text(&mut all).await.expect("a subscription to every partition hears every message");
        // Re-serialised by the node: 77.0 comes back as 77, keys in another order.
        assert!(text.contains(r#""value":77"#) && !text.contains("77.0"), "{text}");
        assert!(!text.starts_with(r#"{"subject""#), "key order is not kept: {text}");
        heard_by_all.insert(serde_json::from_str::<Value>(&text).unwrap()["n"].as_u64().unwrap());
    }
    assert_eq!(heard_by_all, BTreeSet::from([0, 1, 2]));
    let only = next_text(&mut partition_zero).await.expect("partition 0 is heard");
    assert!(next_text(&mut partition_zero).await.is_none(), "an unqualified subscription hears partition 0 only");
    let zero = serde_json::from_str::<Value>(&only).unwrap();
    assert_eq!(simulator_partition(zero["subject"].as_str().unwrap(), 3), 0);

    // An unknown stream opens a socket and swallows every publish.
    let mut nowhere_sub = socket(&sim, &ws_path("nowhere.eth/x", "subscribe", "")).await;
    let mut nowhere = socket(&sim, &ws_path("nowhere.eth/x", "publish", "")).await;
    publish(&mut nowhere, "s", 1).await;
    assert!(next_text(&mut nowhere_sub).await.is_none());
    assert_eq!(sim.streamr_received().len(), 3, "only the three published to a known stream");

    // The path is checked before the key: a bad path without a key is 400, not 401.
    let bad = tokio_tungstenite::connect_async(format!("{}/nonsense", sim.streamr_ws_url())).await;
    assert!(bad.unwrap_err().to_string().contains("400"));

    // payloadMetadata: unwrapped frames are refused, wrapped ones published and delivered wrapped.
    sim.set_payload_metadata(true);
    let mut sub = socket(&sim, &ws_path(common::STREAM, "subscribe", "")).await;
    let mut publisher = socket(&sim, &ws_path(common::STREAM, "publish", "")).await;
    publish(&mut publisher, "s", 9).await;
    publisher
        .send(Message::text(r#"{"content":{"subject":"s","n":10},"metadata":{"timestamp":1700000000000}}"#))
        .await
        .unwrap();
    let text = next_text(&mut sub).await.expect("the wrapped frame is published");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["content"]["n"].as_u64(), v["metadata"]["timestamp"].as_i64()), (Some(10), Some(1_700_000_000_000)));
    assert!(next_text(&mut sub).await.is_none(), "the unwrapped frame was refused (\"Content missing\")");
}

/// The partition the simulated node puts a key on (as the node does: a stable hash).
fn simulator_partition(key: &str, partitions: u32) -> u32 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % partitions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_node_pings_at_once_and_cuts_silent_sockets() {
    let sim = common::simulator(1, 112).await;
    sim.streamr_ws().keepalive(Duration::from_millis(150), Duration::from_millis(400));
    let mut silent = socket(&sim, &ws_path(common::STREAM, "publish", "")).await;
    // Read nothing (so no pong goes back) for a second.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let first = tokio::time::timeout(Duration::from_secs(1), silent.next()).await.unwrap();
    assert!(matches!(first, Some(Ok(Message::Ping(_)))), "the node pings right after the socket opens: {first:?}");
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(frame)) = silent.next().await {
            if matches!(frame, Message::Close(_)) {
                return true;
            }
        }
        true
    })
    .await
    .unwrap();
    assert!(closed, "a socket silent for longer than the limit is cut");
}

#[tokio::test]
async fn the_simulated_http_plugin_keeps_a_message_chain_and_refuses_unknown_streams() {
    let sim = common::simulator(1, 113).await;
    let http = crate::common::http();
    let post = |stream: &str, query: &[(&str, &str)]| {
        let id: String = url::form_urlencoded::byte_serialize(stream.as_bytes()).collect();
        http.post(format!("{}/streams/{id}", sim.streamr_http_url()))
            .bearer_auth(simulator::STREAMR_API_KEY)
            .query(query)
            .body(r#"{"subject":"s"}"#)
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(post(common::STREAM, &[("partitionKey", "s"), ("timestamp", "2000")]).await.unwrap()), 200);
    assert_eq!(
        status(post(common::STREAM, &[("partitionKey", "s"), ("timestamp", "1999")]).await.unwrap()),
        500,
        "an older timestamp breaks the chain"
    );
    assert_eq!(status(post(common::STREAM, &[("partitionKey", "s")]).await.unwrap()), 200, "the node stamps it");
    assert_eq!(status(post("nowhere.eth/x", &[("partitionKey", "s")]).await.unwrap()), 500, "unknown stream");
    assert_eq!(status(post(common::STREAM, &[("partition", "1"), ("partitionKey", "s")]).await.unwrap()), 422);
    assert_eq!(sim.streamr_received().len(), 2);
}

/// A fixed pseudonym key, so subjects (and so partitions) are the same every run.
fn fixed_anonymizer_key(dir: &Path) {
    std::fs::write(dir.join("anonymizer.key"), "5a".repeat(32)).unwrap();
}

fn exit_code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

async fn delivers_exactly_the_dry_run_ids_to_three_partitions(transport: &str, partitions: &str) {
    let sim = common::simulator(3, 114).await;
    sim.register_stream(common::STREAM, 3);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixed_anonymizer_key(d);
    let config = write_config_for(&sim, d, transport, partitions);
    enrol(&sim, d, &config, 3).await;
    let dry = run(d, &config, &["run", "--once", "--dry-run"], None).await;
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let expected = ids_of_lines(&dry.stdout);
    assert_eq!(expected.len(), 907, "three people, one day, at the pinned instant");

    // The node down: exit 3 with the count, everything kept.
    sim.set_streamr_down(true);
    let out = run(d, &config, &["run", "--once"], None).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(&out), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("{} messages wait in the outbox", expected.len())), "{stderr}");

    sim.set_streamr_down(false);
    let out = run(d, &config, &["run", "--once"], None).await;
    assert_eq!(exit_code(&out), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let received = sim.streamr_received();
    assert_eq!(received_ids(&sim), expected, "exactly the dry-run ids");
    assert_eq!(received.len(), expected.len(), "no duplicates at the node");
    // Subjects are random per person (a new basis each enrolment), so which partitions
    // they fall in varies; each message lands in its own subject's partition.
    let subjects: BTreeSet<&str> = received.iter().filter_map(|r| r.message["subject"].as_str()).collect();
    assert!(subjects.len() >= 3, "{subjects:?}");
    let used: BTreeSet<u32> = received.iter().map(|r| r.partition).collect();
    let expected: BTreeSet<u32> = subjects.iter().map(|s| wearbridge::simulator::partition_of(Some(s), 3)).collect();
    assert_eq!(used, expected, "the subjects' partitions, all of them");
    for r in &received {
        assert_eq!(r.partition_key.as_deref(), r.message["subject"].as_str(), "partitioned by subject");
        let subject = r.message["subject"].as_str();
        assert_eq!(r.partition, wearbridge::simulator::partition_of(subject, 3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_over_websocket_delivers_exactly_the_dry_run_ids_to_three_partitions() {
    // The stream's own partition count, keyed by stream id.
    let partitions = format!("[streamr.stream_partitions]\n\"{}\" = 3\n", common::STREAM);
    delivers_exactly_the_dry_run_ids_to_three_partitions("websocket", &partitions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_over_http_delivers_exactly_the_dry_run_ids_to_three_partitions() {
    delivers_exactly_the_dry_run_ids_to_three_partitions("http", "partitions = 3").await;
}

async fn an_unknown_stream_stops_with_the_causes_named(transport: &str) {
    let sim = common::simulator(1, 115).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config_for(&sim, d, transport, "confirm_timeout = \"1s\"");
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace(common::STREAM, "unregistered.eth/x"))
        .unwrap();
    enrol(&sim, d, &config, 1).await;
    let out = run(d, &config, &["run", "--once"], None).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(&out), Some(3), "{stderr}");
    assert!(stderr.contains("may not exist") && stderr.contains("permission"), "{stderr}");
    assert!(stderr.contains("unregistered.eth/x"), "{stderr}");
    assert!(stderr.contains("304 messages wait in the outbox"), "all of them: nothing was removed: {stderr}");
    assert!(sim.streamr_received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stream_stops_the_websocket_drain_with_the_causes_named() {
    an_unknown_stream_stops_with_the_causes_named("websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_stream_stops_the_http_drain_with_the_causes_named() {
    an_unknown_stream_stops_with_the_causes_named("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_metadata_nodes_get_wrapped_frames() {
    let sim = common::simulator(1, 116).await;
    sim.set_payload_metadata(true);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Unwrapped frames are refused by such a node: nothing comes back, the run says why.
    let config = write_config_for(&sim, d, "websocket", "confirm_timeout = \"1s\"");
    enrol(&sim, d, &config, 1).await;
    let dry = run(d, &config, &["run", "--once", "--dry-run"], None).await;
    let expected = ids_of_lines(&dry.stdout);
    let out = run(d, &config, &["run", "--once"], None).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(&out), Some(3), "{stderr}");
    assert!(stderr.contains("payload_metadata"), "{stderr}");
    assert!(sim.streamr_received().is_empty());

    // Configured to match, everything goes out, and the node keeps the message itself.
    let config = write_config_for(&sim, d, "websocket", "payload_metadata = true");
    let out = run(d, &config, &["run", "--once"], None).await;
    assert_eq!(exit_code(&out), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(received_ids(&sim), expected);
    assert!(
        sim.streamr_received().iter().all(|r| r.message.get("content").is_none() && r.message["header"].is_object())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_socket_is_replaced_without_waiting_out_the_confirmation_timeout() {
    let sim = common::simulator(1, 117).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, mut loaded) = websocket_harness(&sim, &dir).await;
    let expected = outbox_ids(h.store.as_ref()).await;
    // A minute per round if the drain waited for confirmations that cannot come.
    loaded.settings.streamr.confirm_timeout = Duration::from_secs(60);
    sim.streamr_ws().drop_socket_every(50);
    let publisher =
        wearbridge::app::publisher(&loaded, Arc::clone(&h.store), common::fast_retry(), h.clock.clone()).unwrap();
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while h.store.outbox_len().await.unwrap() > 0 {
            publisher.drain().await.unwrap();
        }
    })
    .await;
    assert!(drained.is_ok(), "closed sockets were waited out instead of replaced");
    assert!(expected.is_subset(&received_ids(&sim)));
    assert!(sim.streamr_ws().publish_connections() >= expected.len() as u64 / 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_delivers_is_not_stuck_when_one_echo_is_lost() {
    let sim = common::simulator(1, 118).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, loaded) = websocket_harness(&sim, &dir).await;
    let publisher =
        wearbridge::app::publisher(&loaded, Arc::clone(&h.store), common::fast_retry(), h.clock.clone()).unwrap();
    let first = publisher.drain().await.unwrap();
    assert!(first.published > 0 && first.reason.is_none(), "{first:?}");
    // One more message, and the node loses it once: its only copy in that round does not
    // come back, on sockets that have delivered before. It is sent again, not reported.
    let entry = wearbridge::store::OutboxEntry {
        message_id: "00000000-0000-8000-8000-000000000001".into(),
        stream: common::STREAM.into(),
        partition_key: "s".into(),
        payload: r#"{"subject":"s","header":{"uuid":"00000000-0000-8000-8000-000000000001"}}"#.into(),
    };
    h.store.commit_batch(1, "test", "x", &[entry], &[]).await.unwrap();
    sim.streamr_ws().lose_next(1);
    let second = publisher.drain().await.unwrap();
    assert_eq!((second.published, second.resent, second.reason.as_deref()), (1, 1, None), "{second:?}");
    assert_eq!(h.store.outbox_len().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_429_and_408_from_the_node_are_retried_not_quarantined() {
    let sim = common::simulator(1, 119).await;
    let dir = tempfile::tempdir().unwrap();
    let (h, mut loaded) = websocket_harness(&sim, &dir).await;
    loaded.settings.streamr.transport = wearbridge::config::Transport::Http;
    loaded.settings.streamr.url = sim.streamr_http_url();
    let expected = outbox_ids(h.store.as_ref()).await;
    sim.faults().inject("streamr.publish", wearbridge::simulator::Fault::Status(429), 1);
    sim.faults().inject("streamr.publish", wearbridge::simulator::Fault::Status(408), 1);
    let publisher =
        wearbridge::app::publisher(&loaded, Arc::clone(&h.store), common::fast_retry(), h.clock.clone()).unwrap();
    let summary = publisher.drain().await.unwrap();
    assert_eq!((summary.quarantined, summary.reason.as_deref()), (0, None), "{summary:?}");
    assert_eq!(h.store.quarantined_len().await.unwrap(), 0);
    assert_eq!(received_ids(&sim), expected);
}
