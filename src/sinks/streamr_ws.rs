//! The Streamr node's websocket plugin: one persistent publish socket per stream,
//! partitioned by `partitionKeyField=subject`.
//!
//! Publishing over the websocket is fire-and-forget: a publish the node fails is only
//! logged on the node. With `confirm = "subscribe"` the sink therefore also subscribes
//! to each stream it publishes to and counts a message as delivered only when its
//! `header.uuid` comes back; the publisher resends what does not. Sockets are kept alive
//! with text `ping`s (and answer the node's pings), and are reopened after a drop.

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

use super::SendError;
use crate::config::Confirm;
use crate::store::OutboxEntry;

/// The message field the node partitions by (top level of every message).
const PARTITION_KEY_FIELD: &str = "subject";
/// A text `ping` goes out on every socket this often.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Give up on a connection attempt after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Writer = Arc<tokio::sync::Mutex<SplitSink<Socket, Message>>>;

/// Ids written and not yet confirmed, and those seen coming back.
#[derive(Default)]
struct Confirmations {
    awaiting: HashSet<String>,
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
        let Ok(value) = serde_json::from_str::<serde_json::Value>(frame) else { return };
        // With `payloadMetadata: true` the node wraps the message in `content`.
        let message = value.get("content").unwrap_or(&value);
        let Some(id) = message.pointer("/header/uuid").and_then(|v| v.as_str()) else { return };
        let mut c = self.lock();
        if c.awaiting.contains(id) {
            c.seen.insert(id.to_owned());
            drop(c);
            self.arrived.notify_waiters();
        }
    }
}

/// The sockets of one stream.
struct Connection {
    writer: Writer,
    /// Cleared by the background tasks when either socket closes or fails.
    alive: Arc<AtomicBool>,
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
    connections: HashMap<String, Connection>,
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
    /// `base` is `streamr.url` (e.g. `ws://127.0.0.1:7170`).
    pub fn new(base: &str, api_key: Option<SecretString>, confirm: Confirm, confirm_timeout: Duration) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            api_key,
            confirm,
            confirm_timeout,
            connections: HashMap::new(),
            shared: Arc::new(Shared::default()),
        }
    }

    /// Writes one message to its stream's socket, (re)connecting first when needed.
    /// Delivery is known only after [`StreamrWsSink::settle`].
    pub async fn write(&mut self, entry: &OutboxEntry) -> Result<(), SendError> {
        let writer = self.connection(&entry.stream).await?;
        if self.confirm == Confirm::Subscribe {
            self.shared.lock().awaiting.insert(entry.message_id.clone());
        }
        let sent = writer.lock().await.send(Message::text(entry.payload.clone())).await;
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
        let mut socket = self.open(stream, "subscribe", "").await?;
        let _ = socket.close(None).await;
        Ok(())
    }

    /// Which of `ids` (all written) are delivered: all of them with `confirm = "none"`;
    /// otherwise those that came back on the subscription within `confirm_timeout`.
    pub async fn settle(&mut self, ids: &[String]) -> HashSet<String> {
        if self.confirm == Confirm::None {
            return ids.iter().cloned().collect();
        }
        let deadline = tokio::time::Instant::now() + self.confirm_timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            {
                let c = self.shared.lock();
                if ids.iter().all(|id| c.seen.contains(id)) {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        let mut c = self.shared.lock();
        let mut confirmed = HashSet::new();
        for id in ids {
            c.awaiting.remove(id);
            if c.seen.remove(id) {
                confirmed.insert(id.clone());
            }
        }
        confirmed
    }

    /// The publish socket of `stream`, opening both sockets when there is none alive.
    async fn connection(&mut self, stream: &str) -> Result<Writer, SendError> {
        if let Some(c) = self.connections.get(stream) {
            if c.alive.load(Ordering::SeqCst) {
                return Ok(c.writer.clone());
            }
            tracing::info!(stream, "websocket to the node closed; reconnecting");
            self.connections.remove(stream);
        }
        let alive = Arc::new(AtomicBool::new(true));
        let mut tasks = Vec::new();
        // Subscribe first, so nothing published below can pass unseen.
        if self.confirm == Confirm::Subscribe {
            let socket = self.open(stream, "subscribe", "").await?;
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
            }));
            tasks.push(keepalive(sub_writer, alive.clone()));
        }
        let socket = self.open(stream, "publish", &format!("&partitionKeyField={PARTITION_KEY_FIELD}")).await?;
        let (writer, mut reader) = socket.split();
        let writer: Writer = Arc::new(tokio::sync::Mutex::new(writer));
        let flag = alive.clone();
        // Reading keeps answering the node's pings; the loop ends when the socket does.
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(_)) = reader.next().await {}
            flag.store(false, Ordering::SeqCst);
        }));
        tasks.push(keepalive(writer.clone(), alive.clone()));
        self.connections.insert(stream.to_owned(), Connection { writer: writer.clone(), alive, tasks });
        Ok(writer)
    }

    async fn open(&self, stream: &str, action: &str, extra: &str) -> Result<Socket, SendError> {
        let id: String = url::form_urlencoded::byte_serialize(stream.as_bytes()).collect();
        let key: String = self
            .api_key
            .as_ref()
            .map(|k| url::form_urlencoded::byte_serialize(k.expose_secret().as_bytes()).collect())
            .unwrap_or_default();
        let url = format!("{}/streams/{id}/{action}?apiKey={key}{extra}", self.base);
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
