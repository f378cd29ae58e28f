//! Fake Streamr node, HTTP plugin (after `streamr-node.md`): `POST /streams/{id}` with
//! `Authorization: Bearer KEY`; 200 published, 400 bad JSON, 422 partition and
//! partitionKey both given, 401 no key, 403 wrong key, 500 any publish failure (here:
//! the node is "down"). What it accepts is kept for tests to read.

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

use super::SimState;

/// The API key the simulated node accepts.
pub const API_KEY: &str = "simulator-streamr-api-key";
/// The node's maximum message size.
const MAX_BYTES: usize = 1024 * 1024;

/// One published message as the node received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub stream: String,
    pub partition_key: Option<String>,
    pub message: Value,
    pub at: Instant,
}

/// The node's state.
#[derive(Default)]
pub(crate) struct NodeState {
    pub received: Mutex<Vec<Received>>,
    pub down: AtomicBool,
    pub ws: super::streamr_ws::WsState,
}

pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new().route("/streams/{stream}", post(publish))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
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
    if state.streamr.down.load(Ordering::SeqCst) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "Publish failed");
    }
    if let Ok(mut r) = state.streamr.received.lock() {
        r.push(Received { stream, partition_key: query.get("partitionKey").cloned(), message, at: Instant::now() });
    }
    StatusCode::OK.into_response()
}
