//! The Streamr node's websocket plugin: one persistent publish socket per stream,
//! partitioned by `partitionKeyField=subject`.
//!
//! Publishing over the websocket is fire-and-forget: a publish the node fails is only
//! logged on the node. With `confirm = "subscribe"` the sink therefore also subscribes
//! to each stream it publishes to and counts a message as delivered only when its
//! `header.uuid` comes back; the publisher resends what does not. The subscription
//! names every partition of the stream (`partitions=0,…,N-1`): without it the node sends
//! partition 0 only. Sockets are kept alive with text `ping`s (and answer the node's
//! pings); when the node closes one, the wait for confirmations ends at once and the
//! unconfirmed messages go out again on new sockets.
//!
//! A node publishes to an unknown stream, or one its address may not write, without a
//! word: the socket stays open and nothing comes back. A stream whose live sockets took
//! messages and have never given one back within `confirm_timeout` is therefore reported
//! as stuck, with those causes named, and the drain stops.
//!
//! With `payload_metadata` (a node whose plugin runs with `payloadMetadata: true`) frames
//! are `{"content": message, "metadata": {"timestamp": ms}}`; timestamps never go back
//! on a stream, so the node's message chain accepts them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{SendError, Settled};
use crate::clock::Clock;
use crate::config::{Confirm, StreamrSettings};
use crate::store::OutboxEntry;

/// The message field the node partitions by (top level of every message).
const PARTITION_KEY_FIELD: &str = "subject";
/// A text `ping` goes out on every socket this often.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Give up on a connection attempt after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Writer = Arc<tokio::sync::Mutex<SplitSink<Socket, Message>>>;

/// Ids written and not yet confirmed (with the stream and the generation of the socket
/// they went out on), and those seen coming back.
#[derive(Default)]
struct Confirmations {
    awaiting: HashMap<String, (String, u64)>,
    seen: HashSet<String>,
}

#[derive(Default)]
struct Shared {
    confirmations: Mutex<Confirmations>,
    arrived: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Confirmations> {
        match self.confirmations.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A message came back on a subscription.
    fn saw(&self, frame: &str) {
        let Some(id) = confirmed_id(frame) else { return };
        let mut c = self.lock();
        if c.awaiting.contains_key(&id) {
            c.seen.insert(id);
            drop(c);
            self.arrived.notify_waiters();
        }
    }
}

/// The message id a frame on the confirming subscription carries, if it is one of ours.
/// Pure, so it is fuzzed with any text.
pub(crate) fn confirmed_id(frame: &str) -> Option<String> {
    let value = serde_json::from_str::<serde_json::Value>(frame).ok()?;
    // With `payloadMetadata: true` the node wraps the message in `content`.
    let message = value.get("content").unwrap_or(&value);
    message.pointer("/header/uuid").and_then(|v| v.as_str()).map(str::to_owned)
}

/// The sockets of one stream.
struct Connection {
    writer: Writer,
    /// Which opening of the stream's sockets this is: a message written on an earlier
    /// one cannot come back once that one closed.
    generation: u64,
    /// Cleared by the background tasks when either socket closes or fails.
    alive: Arc<AtomicBool>,
    /// Set once anything written on these sockets came back: a stream that delivers
    /// is never reported as stuck, however slow one echo is.
    delivered: bool,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Publishes through a node's websocket plugin.
pub struct StreamrWsSink {
    base: String,
    api_key: Option<SecretString>,
    confirm: Confirm,
    confirm_timeout: Duration,
    partitions: u32,
    stream_partitions: HashMap<String, u32>,
    payload_metadata: bool,
    clock: Clock,
    /// The last `metadata.timestamp` sent per stream (never goes back).
    last_timestamp: HashMap<String, i64>,
    connections: HashMap<String, Connection>,
    generations: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StreamrWsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamrWsSink")
            .field("base", &self.base)
            .field("confirm", &self.confirm)
            .finish_non_exhaustive()
    }
}

impl StreamrWsSink {
    /// From `[streamr]`: `url` (e.g. `ws://127.0.0.1:7170`), the key, confirmation,
    /// partitions and payload metadata; `clock` stamps wrapped frames.
    pub fn new(settings: &StreamrSettings, clock: Clock) -> Self {
        Self {
            base: settings.url.trim_end_matches('/').to_owned(),
            api_key: settings.api_key.clone(),
            confirm: settings.confirm,
            confirm_timeout: settings.confirm_timeout,
            partitions: settings.partitions,
            stream_partitions: settings.stream_partitions.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            payload_metadata: settings.payload_metadata,
            clock,
            last_timestamp: HashMap::new(),
            connections: HashMap::new(),
            generations: 0,
            shared: Arc::new(Shared::default()),
        }
    }

    /// `partitions=0,1,…,N-1` for `stream`.
    fn partitions_param(&self, stream: &str) -> String {
        let n = self.stream_partitions.get(stream).copied().unwrap_or(self.partitions).max(1);
        let list: Vec<String> = (0..n).map(|p| p.to_string()).collect();
        format!("&partitions={}", list.join(","))
    }

    /// The frame for `entry`: the payload, or with payload metadata the payload wrapped
    /// with a timestamp that never goes back on its stream.
    fn frame(&mut self, entry: &OutboxEntry) -> String {
        if !self.payload_metadata {
            return entry.payload.clone();
        }
        let last = self.last_timestamp.entry(entry.stream.clone()).or_insert(i64::MIN);
        let timestamp = self.clock.now().timestamp_millis().max(*last);
        *last = timestamp;
        format!(r#"{{"content":{},"metadata":{{"timestamp":{timestamp}}}}}"#, entry.payload)
    }

    /// Writes one message to its stream's socket, (re)connecting first when needed.
    /// Delivery is known only after [`StreamrWsSink::settle`].
    pub async fn write(&mut self, entry: &OutboxEntry) -> Result<(), SendError> {
        let (writer, generation) = self.connection(&entry.stream).await?;
        if self.confirm == Confirm::Subscribe {
            self.shared.lock().awaiting.insert(entry.message_id.clone(), (entry.stream.clone(), generation));
        }
        let frame = self.frame(entry);
        let sent = writer.lock().await.send(Message::text(frame)).await;
        if let Err(e) = sent {
            self.shared.lock().awaiting.remove(&entry.message_id);
            self.connections.remove(&entry.stream);
            return Err(SendError::Transient(format!("the websocket to the node failed: {}", self.redact(&e))));
        }
        Ok(())
    }

    /// Checks the API key and stream without publishing: the node answers a subscribe
    /// handshake with 401/403/400 as it would a publish one.
    pub async fn check(&self, stream: &str) -> Result<(), SendError> {
        let mut socket = self.open(stream, "subscribe", &self.partitions_param(stream)).await?;
        let _ = socket.close(None).await;
        Ok(())
    }

    /// Whether the sockets of `stream` opened as `generation` are still open.
    fn alive(&self, stream: &str, generation: u64) -> bool {
        self.connections.get(stream).is_some_and(|c| c.generation == generation && c.alive.load(Ordering::SeqCst))
    }

    /// Which of `ids` (all written) are delivered: all of them with `confirm = "none"`;
    /// otherwise those that came back on the subscription within `confirm_timeout`. The
    /// wait ends early when every id is back or its stream's sockets closed (those are
    /// sent again on new ones at once). A stream whose messages all stayed away for the
    /// whole timeout on live sockets is reported as stuck.
    pub async fn settle(&mut self, ids: &[String]) -> Settled {
        if self.confirm == Confirm::None {
            return Settled { confirmed: ids.iter().cloned().collect(), stuck: None };
        }
        let deadline = tokio::time::Instant::now() + self.confirm_timeout;
        let mut timed_out = false;
        loop {
            let arrived = self.shared.arrived.notified();
            {
                let c = self.shared.lock();
                let settled = |id: &String| {
                    c.seen.contains(id) || c.awaiting.get(id).is_none_or(|(stream, g)| !self.alive(stream, *g))
                };
                if ids.iter().all(settled) {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                timed_out = true;
                break;
            }
        }
        let mut c = self.shared.lock();
        let mut confirmed = HashSet::new();
        // Per stream and socket generation: written, came back.
        let mut streams: HashMap<(String, u64), (usize, usize)> = HashMap::new();
        for id in ids {
            let sent_on = c.awaiting.remove(id);
            let back = c.seen.remove(id);
            if back {
                confirmed.insert(id.clone());
            }
            if let Some(sent_on) = sent_on {
                let counts = streams.entry(sent_on).or_default();
                counts.0 += 1;
                counts.1 += usize::from(back);
            }
        }
        drop(c);
        for ((stream, g), (_, back)) in &streams {
            if let Some(connection) = self.connections.get_mut(stream).filter(|c| c.generation == *g && *back > 0) {
                connection.delivered = true;
            }
        }
        let never_delivered =
            |stream: &str, g: u64| self.connections.get(stream).is_some_and(|c| c.generation == g && !c.delivered);
        let stuck = streams
            .iter()
            .filter(|((stream, g), (written, back))| {
                timed_out && *written > 0 && *back == 0 && self.alive(stream, *g) && never_delivered(stream, *g)
            })
            .map(|((stream, _), counts)| (stream, counts))
            .map(|(stream, (written, _))| {
                format!(
                    "the node accepted {written} messages on {stream:?} but none came back within {:?}: the stream \
                     may not exist, or the node's address lacks publish/subscribe permission on it (or the node's \
                     websocket plugin runs with payloadMetadata while streamr.payload_metadata is false)",
                    self.confirm_timeout
                )
            })
            .next();
        Settled { confirmed, stuck }
    }

    /// The publish socket of `stream` and its generation, opening both sockets when
    /// there is none alive.
    async fn connection(&mut self, stream: &str) -> Result<(Writer, u64), SendError> {
        if let Some(c) = self.connections.get(stream) {
            if c.alive.load(Ordering::SeqCst) {
                return Ok((c.writer.clone(), c.generation));
            }
            tracing::info!(stream, "websocket to the node closed; reconnecting");
            self.connections.remove(stream);
        }
        let alive = Arc::new(AtomicBool::new(true));
        let mut tasks = Vec::new();
        // Subscribe first, so nothing published below can pass unseen.
        if self.confirm == Confirm::Subscribe {
            let socket = self.open(stream, "subscribe", &self.partitions_param(stream)).await?;
            let (sub_writer, mut reader) = socket.split();
            let sub_writer: Writer = Arc::new(tokio::sync::Mutex::new(sub_writer));
            let shared = self.shared.clone();
            let flag = alive.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(frame)) = reader.next().await {
                    if let Message::Text(text) = frame {
                        shared.saw(text.as_str());
                    }
                }
                flag.store(false, Ordering::SeqCst);
                shared.arrived.notify_waiters();
            }));
            tasks.push(keepalive(sub_writer, alive.clone()));
        }
        let socket = match self.open(stream, "publish", &format!("&partitionKeyField={PARTITION_KEY_FIELD}")).await {
            Ok(socket) => socket,
            Err(e) => {
                // The subscription opened above must not live on without its connection.
                for task in &tasks {
                    task.abort();
                }
                return Err(e);
            }
        };
        let (writer, mut reader) = socket.split();
        let writer: Writer = Arc::new(tokio::sync::Mutex::new(writer));
        let flag = alive.clone();
        let shared = self.shared.clone();
        // Reading keeps answering the node's pings; the loop ends when the socket does,
        // and a wait for confirmations learns it at once.
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(_)) = reader.next().await {}
            flag.store(false, Ordering::SeqCst);
            shared.arrived.notify_waiters();
        }));
        tasks.push(keepalive(writer.clone(), alive.clone()));
        self.generations += 1;
        let generation = self.generations;
        self.connections.insert(
            stream.to_owned(),
            Connection { writer: writer.clone(), generation, alive, delivered: false, tasks },
        );
        Ok((writer, generation))
    }

    async fn open(&self, stream: &str, action: &str, extra: &str) -> Result<Socket, SendError> {
        let id: String = url::form_urlencoded::byte_serialize(stream.as_bytes()).collect();
        let key: String = self
            .api_key
            .as_ref()
            .map(|k| url::form_urlencoded::byte_serialize(k.expose_secret().as_bytes()).collect())
            .unwrap_or_default();
        let url = format!("{}/streams/{id}/{action}?apiKey={key}{extra}", self.base);
        crate::http::tls();
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url)).await;
        match attempt {
            Err(_) => Err(SendError::Transient(format!("connecting to the node's websocket ({action}) timed out"))),
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                let body: String = self.redact_text(&body.chars().take(300).collect::<String>());
                match status {
                    401 | 403 => Err(SendError::Unauthorized(status)),
                    400..=499 => Err(SendError::Refused(format!(
                        "the node refused the websocket for stream {stream:?} (HTTP {status}: {body}); check streamr.streams and streamr.url"
                    ))),
                    _ => Err(SendError::Transient(format!("the node answered HTTP {status} to the websocket upgrade"))),
                }
            }
            Ok(Err(e)) => Err(SendError::Transient(format!("cannot reach the node's websocket: {}", self.redact(&e)))),
        }
    }

    /// An error's text without the API key (some carry the URL).
    fn redact(&self, e: &tungstenite::Error) -> String {
        self.redact_text(&e.to_string())
    }

    /// `text` without the API key, raw or URL-encoded.
    fn redact_text(&self, text: &str) -> String {
        match &self.api_key {
            Some(k) if !k.expose_secret().is_empty() => {
                let encoded: String = url::form_urlencoded::byte_serialize(k.expose_secret().as_bytes()).collect();
                text.replace(k.expose_secret(), "[redacted]").replace(&encoded, "[redacted]")
            }
            _ => text.to_owned(),
        }
    }
}

/// Sends a text `ping` every [`KEEPALIVE`]; a failed send marks the connection dead.
fn keepalive(writer: Writer, alive: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(KEEPALIVE);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if writer.lock().await.send(Message::text("ping")).await.is_err() {
                alive.store(false, Ordering::SeqCst);
                return;
            }
        }
    })
}
