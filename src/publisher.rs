//! Drains the outbox into the Streamr sink: oldest first (so each subject's messages keep
//! their order), rate-limited, removing a message only once the node confirmed it.
//!
//! A refused message is quarantined with the node's reason; a node that is down or slow
//! stops the drain and leaves everything in the outbox for the next one. Nothing is
//! dropped: delivery is at least once, and message ids are deterministic, so a resend
//! after a crash is harmless.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::http::Backoff;
use crate::sinks::streamr_http::{SendError, StreamrHttpSink};
use crate::store::{Store, StoreError};

/// How many messages are read from the outbox at a time.
const BATCH: u32 = 200;
/// Confirmed messages are removed from the outbox in groups of this size.
const ACK_EVERY: usize = 50;
/// How long published ids are remembered to keep look-back re-reads from re-publishing;
/// far longer than any sensible `sync.lookback`.
const PUBLISHED_MEMORY_DAYS: i64 = 60;

/// Why a drain stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Unauthorized(SendError),
}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrainSummary {
    pub published: u64,
    pub quarantined: u64,
    /// The node stayed unreachable; the rest waits in the outbox.
    pub stopped_early: bool,
}

/// Publishes outbox messages through one sink.
pub struct Publisher<S> {
    store: Arc<S>,
    sink: StreamrHttpSink,
    limiter: DefaultDirectRateLimiter,
    backoff: Backoff,
}

impl<S: Store> Publisher<S> {
    /// `per_second` messages a second with bursts of `burst`.
    pub fn new(store: Arc<S>, sink: StreamrHttpSink, per_second: u32, burst: u32, backoff: Backoff) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self { store, sink, limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)), backoff }
    }

    /// Publishes until the outbox is empty or the node stops answering.
    pub async fn drain(&self) -> Result<DrainSummary, PublishError> {
        let mut summary = DrainSummary::default();
        let mut acked: Vec<i64> = Vec::new();
        let result = self.drain_into(&mut summary, &mut acked).await;
        // Whatever happened, confirmed messages leave the outbox.
        self.store.outbox_ack(&acked).await?;
        self.store.prune_published(chrono::Utc::now() - chrono::TimeDelta::days(PUBLISHED_MEMORY_DAYS)).await?;
        result.map(|()| summary)
    }

    async fn drain_into(&self, summary: &mut DrainSummary, acked: &mut Vec<i64>) -> Result<(), PublishError> {
        loop {
            // Confirmed messages must be out before the next read, or they come back.
            self.store.outbox_ack(acked).await?;
            acked.clear();
            let batch = self.store.outbox_pending(BATCH).await?;
            if batch.is_empty() {
                return Ok(());
            }
            for pending in batch {
                let mut retry = 0;
                loop {
                    self.limiter.until_ready().await;
                    match self.sink.send(&pending.entry).await {
                        Ok(()) => {
                            summary.published += 1;
                            acked.push(pending.seq);
                            if acked.len() >= ACK_EVERY {
                                self.store.outbox_ack(acked).await?;
                                acked.clear();
                            }
                            break;
                        }
                        Err(SendError::Rejected(reason)) => {
                            tracing::error!(message_id = %pending.entry.message_id, %reason, "the node refused a message; quarantined");
                            self.store.outbox_quarantine(pending.seq, &reason).await?;
                            summary.quarantined += 1;
                            break;
                        }
                        Err(e @ SendError::Unauthorized(_)) => return Err(PublishError::Unauthorized(e)),
                        Err(SendError::Transient(reason)) if retry + 1 < self.backoff.attempts => {
                            let pause = self.backoff.delay(retry);
                            tracing::warn!(%reason, retry, pause_ms = pause.as_millis() as u64, "publish failed; retrying");
                            tokio::time::sleep(pause).await;
                            retry += 1;
                        }
                        Err(SendError::Transient(reason)) => {
                            tracing::warn!(%reason, "the Streamr node is unavailable; messages stay in the outbox");
                            self.store.outbox_attempt_failed(pending.seq, &reason).await?;
                            summary.stopped_early = true;
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}
