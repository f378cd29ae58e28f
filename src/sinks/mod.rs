//! Where messages go: stdout for dry runs, a Streamr node's HTTP plugin otherwise.
//!
//! A sink receives fully-formed [`Delivery`] lines; it never sees records or secrets.

pub mod stdout;
pub mod streamr_http;

use serde::Serialize;

/// One message addressed to a stream: exactly what a dry run prints and what a Streamr
/// sink publishes (`message` is the payload, `partition_key` the subject).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub stream: String,
    pub partition_key: String,
    pub message: serde_json::Value,
}

impl Delivery {
    /// The outbox row of this delivery: the payload exactly as it will be published.
    pub fn outbox_entry(&self) -> crate::store::OutboxEntry {
        crate::store::OutboxEntry {
            message_id: self.message.pointer("/header/uuid").and_then(|v| v.as_str()).unwrap_or_default().to_owned(),
            stream: self.stream.clone(),
            partition_key: self.partition_key.clone(),
            payload: self.message.to_string(),
        }
    }
}
