//! Fake Streamr node, websocket plugin (after `streamr-node.md`), on its own port as on a
//! real node (7170 next to the HTTP plugin's 7171).
//!
//! `/streams/{id}/publish?apiKey=` and `/streams/{id}/subscribe?apiKey=`; bad path 400
//! (checked before the key), no key 401, wrong key 403, more than one of `partition`,
//! `partitionKey`, `partitionKeyField` 400 — all before the upgrade. An unknown stream
//! id is not refused: the socket opens and every publish fails in the node's log. Each
//! text frame is one message; text `ping` answers `pong`. Publishing is fire-and-forget:
//! a frame the node cannot publish is only logged. A subscription hears the partitions
//! in `partitions=0,1,…` (`partition=N` for one), partition 0 when neither is given,
//! and gets every message re-serialised. With `payloadMetadata` frames are
//! `{"content", "metadata"}` both ways and unwrapped publishes are refused ("Content
//! missing"). The node pings a socket when it opens and when it is idle, and closes a
//! socket that sent nothing for 15 s.
//!
//! Faults for tests: frames silently lost, sockets dropped after every n frames, stalls,
//! and the shared "node down" switch (handshakes answer 503, open sockets are closed).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::SimState;
use super::streamr::{API_KEY, Published, reserialise};

/// Websocket-plugin state and faults.
pub(crate) struct WsState {
    /// Publish sockets accepted so far.
    pub publish_connections: AtomicU64,
    /// Subscribe sockets accepted so far.
    pub subscribe_connections: AtomicU64,
    /// The next n published frames are lost without a word (as when publishing fails).
    pub silent_drops: AtomicU64,
    /// Close each publish socket when its n-th frame arrives, losing that frame (0: never).
    pub drop_socket_every: AtomicU64,
    /// Hold each published frame this long before handling it (ms).
    pub stall_ms: AtomicU64,
    /// Keep-alive: ping when a socket opens and every this many ms; drop a socket silent
    /// for `drop_after_ms`.
    pub ping_every_ms: AtomicU64,
    pub drop_after_ms: AtomicU64,
}

impl Default for WsState {
    fn default() -> Self {
        Self {
            publish_connections: AtomicU64::new(0),
            subscribe_connections: AtomicU64::new(0),
            silent_drops: AtomicU64::new(0),
            drop_socket_every: AtomicU64::new(0),
            stall_ms: AtomicU64::new(0),
            ping_every_ms: AtomicU64::new(15_000),
            drop_after_ms: AtomicU64::new(15_000),
        }
    }
}

enum Route {
    Publish { stream: String, partition_key_field: Option<String>, partition_key: Option<String> },
    Subscribe { stream: String, partitions: BTreeSet<u32>, messages: broadcast::Receiver<Published> },
}

/// `partitions=0,1,2` or `partition=1`; partition 0 when neither is given.
fn subscribed_partitions(query: &HashMap<String, String>) -> Option<BTreeSet<u32>> {
    match (query.get("partitions"), query.get("partition")) {
        (Some(list), _) => list.split(',').map(|p| p.trim().parse::<u32>().ok()).collect(),
        (None, Some(one)) => one.trim().parse::<u32>().ok().map(|p| BTreeSet::from([p])),
        (None, None) => Some(BTreeSet::from([0])),
    }
}

/// What the node publishes for a frame: the message and its timestamp, or why not.
fn unwrap_frame(text: &str, payload_metadata: bool, now_ms: i64) -> Result<(Value, i64), &'static str> {
    let frame: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err("not a JSON object"),
    };
    if !payload_metadata {
        return Ok((frame, now_ms));
    }
    let Some(content @ Value::Object(_)) = frame.get("content") else { return Err("Content missing") };
    let timestamp = frame.pointer("/metadata/timestamp").and_then(Value::as_i64).unwrap_or(now_ms);
    Ok((content.clone(), timestamp))
}

/// Accepts websocket connections until the listener is dropped.
pub(crate) async fn serve(listener: TcpListener, state: Arc<SimState>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else { continue };
        let state = state.clone();
        tokio::spawn(async move { connection(socket, state).await });
    }
}

fn reject(status: StatusCode, message: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(serde_json::json!({ "error": message }).to_string()));
    *response.status_mut() = status;
    response
}

/// Checks path, parameters and API key before the upgrade, as the node does.
fn route(state: &SimState, request: &Request) -> Result<Route, (StatusCode, &'static str)> {
    if state.streamr.down.load(Ordering::SeqCst) {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "node is down"));
    }
    let uri = request.uri();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    // The path is checked before the key, as on a real node.
    let parts: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let (stream, action) = match parts.as_slice() {
        ["streams", stream, action @ ("publish" | "subscribe")] if !stream.is_empty() => (*stream, *action),
        _ => return Err((StatusCode::BAD_REQUEST, "Invalid path")),
    };
    match query.get("apiKey") {
        None => return Err((StatusCode::UNAUTHORIZED, "Unauthorized")),
        Some(k) if k != API_KEY => return Err((StatusCode::FORBIDDEN, "Forbidden")),
        Some(_) => {}
    }
    let stream: String = url::form_urlencoded::parse(format!("s={stream}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let partitioning = ["partition", "partitionKey", "partitionKeyField"].iter().filter(|k| query.contains_key(**k));
    if partitioning.count() > 1 {
        return Err((StatusCode::BAD_REQUEST, "Invalid combination of partition parameters"));
    }
    match action {
        "publish" => Ok(Route::Publish {
            stream,
            partition_key_field: query.get("partitionKeyField").cloned(),
            partition_key: query.get("partitionKey").cloned(),
        }),
        _ => {
            let partitions =
                subscribed_partitions(&query).ok_or((StatusCode::BAD_REQUEST, "Invalid partitions parameter"))?;
            let messages = state.streamr.channel(&stream).subscribe();
            Ok(Route::Subscribe { stream, partitions, messages })
        }
    }
}

/// Whether the node pings now: right after the socket opened, then when the client has
/// been silent for a whole keep-alive period.
fn idle(pinged: &mut bool, last_heard: Instant, every: Duration) -> bool {
    let due = !*pinged || last_heard.elapsed() >= every;
    *pinged = true;
    due
}

async fn connection(socket: TcpStream, state: Arc<SimState>) {
    let mut chosen = None;
    // The callback's error type is tungstenite's; it is built only on refusal.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match route(&state, request) {
            Ok(r) => {
                chosen = Some(r);
                Ok(response)
            }
            Err((status, message)) => Err(reject(status, message)),
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(socket, callback).await else { return };
    let ws_state = &state.streamr.ws;
    let keepalive = Duration::from_millis(ws_state.ping_every_ms.load(Ordering::SeqCst).max(10));
    let drop_after = Duration::from_millis(ws_state.drop_after_ms.load(Ordering::SeqCst));
    let (mut tx, mut rx) = ws.split();
    // The first tick is immediate: the node pings right after the socket opens.
    let mut ticker = tokio::time::interval(keepalive);
    let mut last_heard = Instant::now();
    let mut pinged = false;
    match chosen {
        Some(Route::Publish { stream, partition_key_field, partition_key }) => {
            ws_state.publish_connections.fetch_add(1, Ordering::SeqCst);
            state.note(format!("streamr.ws.publish {stream}"));
            let mut frames = 0u64;
            loop {
                tokio::select! {
                    frame = rx.next() => {
                        last_heard = Instant::now();
                        let text = match frame {
                            Some(Ok(Message::Text(text))) => text,
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                            Some(Ok(_)) => continue,
                        };
                        if text.as_str() == "ping" {
                            if tx.send(Message::text("pong")).await.is_err() { return; }
                            continue;
                        }
                        let stall = ws_state.stall_ms.load(Ordering::SeqCst);
                        if stall > 0 {
                            tokio::time::sleep(Duration::from_millis(stall)).await;
                        }
                        if state.streamr.down.load(Ordering::SeqCst) {
                            return; // the node went away: socket gone, frame lost
                        }
                        frames += 1;
                        let every = ws_state.drop_socket_every.load(Ordering::SeqCst);
                        if every > 0 && frames % every == 0 {
                            state.note(format!("fault:streamr.ws.dropped {stream}"));
                            return;
                        }
                        if ws_state.silent_drops.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                            state.note(format!("fault:streamr.ws.lost {stream}"));
                            continue;
                        }
                        let wrapped = state.streamr.payload_metadata.load(Ordering::SeqCst);
                        let (message, timestamp) = match unwrap_frame(text.as_str(), wrapped, state.clock.now().timestamp_millis()) {
                            Ok(m) => m,
                            Err(why) => {
                                state.note(format!("fault:streamr.ws.refused {stream}: {why}"));
                                continue;
                            }
                        };
                        let key = match (&partition_key_field, &partition_key) {
                            (Some(field), _) => message.get(field).and_then(Value::as_str).map(str::to_owned),
                            (None, key) => key.clone(),
                        };
                        // Fire-and-forget: a failed publish is only in the node's log.
                        if let Err(failure) = state.streamr.publish(&stream, key, message, timestamp) {
                            state.note(format!("fault:streamr.ws.failed {stream}: {}", failure.log_line()));
                        }
                    }
                    _ = ticker.tick() => {
                        if last_heard.elapsed() > drop_after { return; }
                        if idle(&mut pinged, last_heard, keepalive) && tx.send(Message::Ping(Vec::new().into())).await.is_err() { return; }
                    }
                }
            }
        }
        Some(Route::Subscribe { stream, partitions, mut messages }) => {
            ws_state.subscribe_connections.fetch_add(1, Ordering::SeqCst);
            state.note(format!("streamr.ws.subscribe {stream}"));
            loop {
                tokio::select! {
                    frame = rx.next() => {
                        last_heard = Instant::now();
                        match frame {
                            Some(Ok(Message::Text(t))) if t.as_str() == "ping" => {
                                if tx.send(Message::text("pong")).await.is_err() { return; }
                            }
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                            Some(Ok(_)) => {}
                        }
                    }
                    message = messages.recv() => match message {
                        Ok((partition, timestamp, content)) => {
                            if state.streamr.down.load(Ordering::SeqCst) { return; }
                            if !partitions.contains(&partition) { continue; }
                            let content = reserialise(&content);
                            let frame = if state.streamr.payload_metadata.load(Ordering::SeqCst) {
                                serde_json::json!({"content": content, "metadata": {"timestamp": timestamp}})
                            } else {
                                content
                            };
                            if tx.send(Message::text(frame.to_string())).await.is_err() { return; }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = ticker.tick() => {
                        if last_heard.elapsed() > drop_after { return; }
                        if idle(&mut pinged, last_heard, keepalive) && tx.send(Message::Ping(Vec::new().into())).await.is_err() { return; }
                    }
                }
            }
        }
        None => {}
    }
}
