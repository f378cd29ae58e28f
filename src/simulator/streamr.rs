//! Fake Streamr node (after `streamr-node.md`, including "Observed on a real node"): the
//! publishing core both plugins share, and the HTTP plugin.
//!
//! The core knows which streams exist and how many partitions each has (on-chain
//! metadata in reality), puts a keyed message on its partition, and keeps one message
//! chain per stream partition: a message stamped earlier than the last one published
//! there is refused ("prevMessageRef must come before current"). A publish to a stream
//! the node does not know fails the same way as on a real node: only in the node's log.
//!
//! HTTP plugin: `POST /streams/{id}` with `Authorization: Bearer KEY`; 200 published,
//! 400 bad JSON or timestamp, 422 partition and partitionKey both given, 401 no key, 403
//! wrong key, 413 too large, 500 any publish failure (unknown stream, chain order, node
//! "down") with no detail. `partition=N` is ignored, as by the real node (v103.3.1).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use super::SimState;

/// The API key the simulated node accepts.
pub const API_KEY: &str = "simulator-streamr-api-key";
/// The node's maximum message size.
const MAX_BYTES: usize = 1024 * 1024;

/// One published message as the node received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub stream: String,
    /// The partition the message went to.
    pub partition: u32,
    pub partition_key: Option<String>,
    pub message: Value,
    pub at: Instant,
}

/// A published message on its way to subscribers: partition, timestamp (ms), content.
pub(crate) type Published = (u32, i64, Value);

/// Why the node failed a publish. The HTTP plugin answers 500 without detail; the
/// websocket plugin says nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublishFailure {
    UnknownStream,
    ChainOrder,
    Down,
}

impl PublishFailure {
    /// What the node's log would say.
    pub(crate) fn log_line(self) -> &'static str {
        match self {
            PublishFailure::UnknownStream => "Stream not found",
            PublishFailure::ChainOrder => "prevMessageRef must come before current",
            PublishFailure::Down => "node is down",
        }
    }
}

/// The node's state.
#[derive(Default)]
pub(crate) struct NodeState {
    pub received: Mutex<Vec<Received>>,
    pub down: AtomicBool,
    pub ws: super::streamr_ws::WsState,
    /// The websocket plugin runs with `payloadMetadata: true`.
    pub payload_metadata: AtomicBool,
    /// Known streams and their partition counts.
    streams: Mutex<HashMap<String, u32>>,
    /// Last timestamp (ms) published per stream partition.
    chains: Mutex<HashMap<(String, u32), i64>>,
    /// Subscribers per stream.
    channels: Mutex<HashMap<String, broadcast::Sender<Published>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The partition a key maps to (a stable hash, like the node's).
pub fn partition_of(key: Option<&str>, partitions: u32) -> u32 {
    match key {
        Some(k) if partitions > 1 => {
            let digest = Sha256::digest(k.as_bytes());
            u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % partitions
        }
        _ => 0,
    }
}

impl NodeState {
    /// Creates (or resizes) a stream.
    pub(crate) fn register(&self, stream: &str, partitions: u32) {
        lock(&self.streams).insert(stream.to_owned(), partitions.clamp(1, 100));
    }

    /// The subscribers' channel of `stream`.
    pub(crate) fn channel(&self, stream: &str) -> broadcast::Sender<Published> {
        lock(&self.channels).entry(stream.to_owned()).or_insert_with(|| broadcast::channel(65_536).0).clone()
    }

    /// Publishes `message` to `stream`, keyed by `key`, stamped `timestamp` (ms): the
    /// stream must exist and the timestamp must not go back on its partition's chain.
    pub(crate) fn publish(
        &self,
        stream: &str,
        key: Option<String>,
        message: Value,
        timestamp: i64,
    ) -> Result<u32, PublishFailure> {
        if self.down.load(Ordering::SeqCst) {
            return Err(PublishFailure::Down);
        }
        let partitions = lock(&self.streams).get(stream).copied().ok_or(PublishFailure::UnknownStream)?;
        let partition = partition_of(key.as_deref(), partitions);
        {
            let mut chains = lock(&self.chains);
            let last = chains.entry((stream.to_owned(), partition)).or_insert(i64::MIN);
            if timestamp < *last {
                return Err(PublishFailure::ChainOrder);
            }
            *last = timestamp;
        }
        lock(&self.received).push(Received {
            stream: stream.to_owned(),
            partition,
            partition_key: key,
            message: message.clone(),
            at: Instant::now(),
        });
        let _ = self.channel(stream).send((partition, timestamp, message));
        Ok(partition)
    }
}

/// The JSON a subscriber gets: the node parses and re-serialises every message, so a
/// number written `77.0` comes back as `77` and key order is not kept (here: reversed).
pub(crate) fn reserialise(value: &Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(reserialise).collect()),
        Value::Object(map) => Value::Object(map.iter().rev().map(|(k, v)| (k.clone(), reserialise(v))).collect()),
        other => other.clone(),
    }
}

pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new().route("/streams/{stream}", post(publish))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// `timestamp`: milliseconds, or an ISO-8601 instant.
fn parse_timestamp(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().or_else(|| chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis()))
}

async fn publish(
    State(state): State<Arc<SimState>>,
    Path(stream): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match key {
        None => return error(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Some(k) if k != API_KEY => return error(StatusCode::FORBIDDEN, "Forbidden"),
        Some(_) => {}
    }
    if query.contains_key("partition") && query.contains_key("partitionKey") {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid combination of \"partition\" and \"partitionKey\"");
    }
    if body.len() > MAX_BYTES {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large");
    }
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return error(StatusCode::BAD_REQUEST, "Invalid JSON: expected an object"),
    };
    let timestamp = match query.get("timestamp") {
        Some(t) => match parse_timestamp(t) {
            Some(ms) => ms,
            None => return error(StatusCode::BAD_REQUEST, "Invalid timestamp"),
        },
        None => state.clock.now().timestamp_millis(),
    };
    // `partition=N` is ignored (a bug of the real node): only the key places a message.
    match state.streamr.publish(&stream, query.get("partitionKey").cloned(), message, timestamp) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(failure) => {
            state.note(format!("fault:streamr.http.failed {stream}: {}", failure.log_line()));
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_refuse_older_timestamps_per_partition_and_unknown_streams() {
        let node = NodeState::default();
        node.register("s.eth/x", 4);
        let key = Some("k".to_owned());
        let p = node.publish("s.eth/x", key.clone(), json!({"a": 1}), 1_000).unwrap();
        assert!(p < 4);
        assert_eq!(node.publish("s.eth/x", key.clone(), json!({}), 999), Err(PublishFailure::ChainOrder));
        assert_eq!(node.publish("s.eth/x", key, json!({}), 1_000).map(|_| ()), Ok(()));
        assert_eq!(node.publish("other.eth/x", None, json!({}), 0), Err(PublishFailure::UnknownStream));
        assert_eq!(lock(&node.received).len(), 2);
    }

    #[test]
    fn subscribers_see_numbers_and_key_order_re_serialised() {
        let v: Value = serde_json::from_str(r#"{"a": 77.0, "b": [1.5, 2.0], "c": {"x": 1, "y": 2}}"#).unwrap();
        let text = reserialise(&v).to_string();
        assert_eq!(text, r#"{"c":{"y":2,"x":1},"b":[1.5,2],"a":77}"#);
    }

    #[test]
    fn keys_spread_over_partitions() {
        let used: std::collections::BTreeSet<u32> =
            (0..50).map(|i| partition_of(Some(&format!("subject-{i}")), 3)).collect();
        assert_eq!(used.len(), 3);
        assert_eq!(partition_of(None, 3), 0);
        assert_eq!(partition_of(Some("x"), 1), 0);
    }
}
