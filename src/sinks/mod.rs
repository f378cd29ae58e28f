//! Where messages go: stdout for dry runs; otherwise, through the outbox, a Streamr
//! node's websocket or HTTP plugin, or NDJSON archive files.
//!
//! A sink receives fully-formed messages; it never sees records or secrets. Every
//! outbox sink works in two steps so the publisher can pipeline fire-and-forget
//! transports: [`Sink::write`] hands a message over, [`Sink::settle`] says which of the
//! written ones are known to have arrived.

pub mod file;
pub mod stdout;
pub mod streamr_http;
pub mod streamr_ws;

use std::collections::HashSet;

use serde::Serialize;

/// One message addressed to a stream: exactly what a dry run prints and what a Streamr
/// sink publishes (`message` is the payload, `partition_key` the subject).
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub stream: String,
    pub partition_key: String,
    /// The message's JSON text exactly as it was checked and will be published.
    pub message: Box<serde_json::value::RawValue>,
    /// `header.uuid` of the message.
    #[serde(skip)]
    pub message_id: String,
}

impl Delivery {
    /// The outbox row of this delivery: the payload exactly as it will be published
    /// (moved, not copied: the text is most of a delivery).
    pub fn into_outbox_entry(self) -> crate::store::OutboxEntry {
        crate::store::OutboxEntry {
            message_id: self.message_id,
            stream: self.stream,
            partition_key: self.partition_key,
            payload: String::from(Box::<str>::from(self.message)),
        }
    }
}

/// Why a publish did not succeed, by what the publisher must do about it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The node refused this message for good (4xx): quarantine it with the reason.
    #[error("the node refused the message: {0}")]
    Rejected(String),
    /// The node refused the API key (401/403): stop and tell the operator.
    #[error("the Streamr node refused the API key (HTTP {0}); check streamr.api_key")]
    Unauthorized(u16),
    /// The node refused the stream or the parameters: stop and tell the operator.
    #[error("{0}")]
    Refused(String),
    /// Try again later (timeouts, dropped sockets, node down).
    #[error("{0}")]
    Transient(String),
    /// The node takes publishes but delivers none (a run of HTTP 500s, or nothing coming
    /// back on a live subscription): the stream is probably missing or not writable.
    /// Stop the drain and say so; the messages stay in the outbox.
    #[error("{0}")]
    Stuck(String),
}

impl crate::retry::Retryable for SendError {
    fn verdict(&self) -> crate::retry::Verdict {
        match self {
            SendError::Transient(_) => crate::retry::Verdict::Retry,
            _ => crate::retry::Verdict::GiveUp,
        }
    }
}

/// What [`Sink::settle`] found out.
#[derive(Debug, Default)]
pub struct Settled {
    /// The written messages known to have arrived.
    pub confirmed: HashSet<String>,
    /// Set when a stream took messages and delivered none of them (see [`SendError::Stuck`]).
    pub stuck: Option<String>,
}

/// An outbox sink.
#[derive(Debug)]
pub enum Sink {
    Http(streamr_http::StreamrHttpSink),
    Websocket(streamr_ws::StreamrWsSink),
    File(file::FileSink),
}

/// What [`Sink::write`] knows about a message it handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The destination confirmed it.
    Confirmed,
    /// Handed over; [`Sink::settle`] will say whether it arrived.
    Pending,
}

impl Sink {
    /// Hands one message over.
    pub async fn write(&mut self, entry: &crate::store::OutboxEntry) -> Result<Written, SendError> {
        match self {
            Sink::Http(s) => s.send(entry).await.map(|()| Written::Confirmed),
            Sink::Websocket(s) => s.write(entry).await.map(|()| Written::Pending),
            Sink::File(s) => s.write(entry).await.map(|()| Written::Pending),
        }
    }

    /// Checks at start-up, without publishing, that the destination accepts the
    /// configuration: the node's API key for `stream`, or a writable archive directory.
    /// Only a refusal is an error; a node that cannot be reached is not (the outbox
    /// holds the messages until it is back).
    pub async fn check(&mut self, stream: &str) -> Result<(), SendError> {
        let result = match self {
            Sink::Http(s) => s.check(stream).await,
            Sink::Websocket(s) => s.check(stream).await,
            Sink::File(s) => s.check().await,
        };
        match result {
            Err(SendError::Transient(reason)) => {
                tracing::warn!(%reason, "the sink is not reachable at start-up; messages will wait in the outbox");
                Ok(())
            }
            other => other,
        }
    }

    /// Which of the `Pending` messages `ids` arrived; the rest should be written again.
    pub async fn settle(&mut self, ids: &[String]) -> Result<Settled, SendError> {
        let all = || Settled { confirmed: ids.iter().cloned().collect(), stuck: None };
        match self {
            Sink::Http(_) => Ok(all()),
            Sink::Websocket(s) => Ok(s.settle(ids).await),
            Sink::File(s) => s.sync().await.map(|()| all()),
        }
    }
}
