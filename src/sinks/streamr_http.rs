//! The Streamr node's HTTP plugin: `POST /streams/{id}` with `Authorization: Bearer` and
//! `partitionKey`. HTTP 200 confirms the publish (unlike the websocket plugin, which is
//! fire-and-forget).
//!
//! No `timestamp` is sent: the node keeps one message chain per stream partition and
//! refuses (HTTP 500) a timestamp older than the last one it published, and the outbox is
//! not in time order. The node stamps each message itself; the reading's own time stays
//! in the message (`header.source_creation_date_time`). HTTP 500 is the node's answer to
//! every failed publish (an unknown stream, no publish permission, chain order), so a run
//! of them with nothing delivered stops the drain with those causes named.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};

use super::SendError;
use crate::store::OutboxEntry;

/// After this many HTTP 500s in a row on one stream, with nothing delivered in between,
/// the drain stops.
const SERVER_ERRORS_IN_A_ROW: u32 = 3;
/// The transient error of an HTTP 500 answer.
const SERVER_ERROR: &str = "the node answered HTTP 500";

/// Publishes through a node's HTTP plugin.
#[derive(Clone)]
pub struct StreamrHttpSink {
    http: reqwest::Client,
    base: String,
    api_key: Option<SecretString>,
    /// HTTP 500s in a row per stream since its last delivered message.
    server_errors: HashMap<String, u32>,
}

impl std::fmt::Debug for StreamrHttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamrHttpSink").field("base", &self.base).finish_non_exhaustive()
    }
}

impl StreamrHttpSink {
    /// `base` is `streamr.url` (e.g. `http://127.0.0.1:7171`).
    pub fn new(http: reqwest::Client, base: &str, api_key: Option<SecretString>) -> Self {
        Self { http, base: base.trim_end_matches('/').to_owned(), api_key, server_errors: HashMap::new() }
    }

    /// Checks the API key without publishing: an empty body passes the node's
    /// authentication and is then refused as invalid JSON, so it can never be published.
    pub async fn check(&self, stream: &str) -> Result<(), SendError> {
        let id: String = url::form_urlencoded::byte_serialize(stream.as_bytes()).collect();
        let mut request = self
            .http
            .post(format!("{}/streams/{id}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs(10))
            .body("");
        if let Some(key) = &self.api_key {
            request = request.header(AUTHORIZATION, format!("Bearer {}", key.expose_secret()));
        }
        let response = request.send().await.map_err(|e| SendError::Transient(e.without_url().to_string()))?;
        match response.status().as_u16() {
            status @ (401 | 403) => Err(SendError::Unauthorized(status)),
            _ => Ok(()),
        }
    }

    /// Publishes one message; `Ok` only when the node confirmed it.
    pub async fn send(&mut self, entry: &OutboxEntry) -> Result<(), SendError> {
        let result = self.post(entry).await;
        match &result {
            Ok(()) => {
                self.server_errors.remove(&entry.stream);
            }
            Err(SendError::Transient(reason)) if reason == SERVER_ERROR => {
                let in_a_row = self.server_errors.entry(entry.stream.clone()).or_default();
                *in_a_row += 1;
                if *in_a_row >= SERVER_ERRORS_IN_A_ROW {
                    return Err(SendError::Stuck(format!(
                        "the node answered HTTP 500 to {in_a_row} publishes in a row on stream {:?} and delivered none: \
                         the stream may not exist, or the node's address lacks publish permission on it \
                         (500 is also the node's answer to a timestamp out of chain order, which wearbridge \
                         avoids by letting the node stamp messages)",
                        entry.stream
                    )));
                }
            }
            Err(_) => {}
        }
        result
    }

    async fn post(&self, entry: &OutboxEntry) -> Result<(), SendError> {
        let stream: String = url::form_urlencoded::byte_serialize(entry.stream.as_bytes()).collect();
        let mut request = self
            .http
            .post(format!("{}/streams/{stream}", self.base))
            .query(&[("partitionKey", entry.partition_key.as_str())])
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs(30))
            .body(entry.payload.clone());
        if let Some(key) = &self.api_key {
            request = request.header(AUTHORIZATION, format!("Bearer {}", key.expose_secret()));
        }
        let response = request.send().await.map_err(|e| SendError::Transient(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(()),
            401 | 403 => Err(SendError::Unauthorized(status)),
            // Only an answer that says the message itself is bad quarantines it.
            400 | 413 | 415 | 422 => {
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                Err(SendError::Rejected(format!("HTTP {status}: {text}")))
            }
            404 => Err(SendError::Refused(format!(
                "the node answered 404 for stream {}: check streamr.url (the HTTP plugin's base) and the stream id",
                entry.stream
            ))),
            // Too many requests, a timeout, anything else: not the message's fault.
            _ if status < 500 => Err(SendError::Transient(format!("the node answered HTTP {status}"))),
            500 => Err(SendError::Transient(SERVER_ERROR.to_owned())),
            _ => Err(SendError::Transient(format!("the node answered HTTP {status}"))),
        }
    }
}
