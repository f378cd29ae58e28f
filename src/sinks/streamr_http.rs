//! The Streamr node's HTTP plugin: `POST /streams/{id}` with `Authorization: Bearer`,
//! `partitionKey` and `timestamp`. HTTP 200 confirms the publish (unlike the websocket
//! plugin, which is fire-and-forget).

use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};

use super::SendError;
use crate::store::OutboxEntry;

/// Publishes through a node's HTTP plugin.
#[derive(Clone)]
pub struct StreamrHttpSink {
    http: reqwest::Client,
    base: String,
    api_key: Option<SecretString>,
}

impl std::fmt::Debug for StreamrHttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamrHttpSink").field("base", &self.base).finish_non_exhaustive()
    }
}

impl StreamrHttpSink {
    /// `base` is `streamr.url` (e.g. `http://127.0.0.1:7171`).
    pub fn new(http: reqwest::Client, base: &str, api_key: Option<SecretString>) -> Self {
        Self { http, base: base.trim_end_matches('/').to_owned(), api_key }
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
    pub async fn send(&self, entry: &OutboxEntry) -> Result<(), SendError> {
        let stream: String = url::form_urlencoded::byte_serialize(entry.stream.as_bytes()).collect();
        let timestamp = serde_json::from_str::<serde_json::Value>(&entry.payload)
            .ok()
            .and_then(|v| v.pointer("/header/source_creation_date_time").and_then(|t| t.as_str()).map(str::to_owned));
        let mut query = vec![("partitionKey", entry.partition_key.clone())];
        if let Some(t) = timestamp {
            query.push(("timestamp", t));
        }
        let mut request = self
            .http
            .post(format!("{}/streams/{stream}", self.base))
            .query(&query)
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
            400..=499 => {
                let text = response.text().await.unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                Err(SendError::Rejected(format!("HTTP {status}: {text}")))
            }
            _ => Err(SendError::Transient(format!("the node answered HTTP {status}"))),
        }
    }
}
