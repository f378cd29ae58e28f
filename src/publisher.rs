//! Drains the outbox into the Streamr sink: oldest first, rate-limited, removing a
//! message only once the node confirmed it. (Resends and several workers can deliver a
//! subject's messages out of order; consumers order by header time.)
//!
//! A refused message is quarantined with the node's reason; a node that is down or slow
//! stops the drain and leaves everything in the outbox for the next one. Nothing is
//! dropped: delivery is at least once, and message ids are deterministic, so a resend
//! after a crash is harmless.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::clock::Clock;
use crate::retry::Retry;
use crate::sinks::{SendError, Sink, Written};
use crate::store::{Lease, Pending, SqlStore, Store, StoreError};

/// How many messages are read from the outbox at a time (and written before the sink
/// is asked which of them arrived).
const BATCH: u32 = 200;
/// Confirmed messages are removed from the outbox in groups of this size (and before
/// every claim): a worker killed, or a claim taken over, sends at most this many again.
const ACK_EVERY: usize = 50;
/// How long published ids are remembered to keep look-back re-reads from re-publishing;
/// far longer than any sensible `sync.lookback`.
const PUBLISHED_MEMORY: std::time::Duration = std::time::Duration::from_secs(60 * 86_400);

/// Why a drain stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The node refused the key, the stream or the parameters: the operator must act.
    #[error("{0}")]
    Refused(SendError),
}

/// What one drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainSummary {
    pub published: u64,
    pub quarantined: u64,
    /// Messages written again because the node did not confirm them in time.
    pub resent: u64,
    /// The node stayed unreachable, or took messages and delivered none; the rest waits
    /// in the outbox.
    pub stopped_early: bool,
    /// Why the drain stopped early, for the operator.
    pub reason: Option<String>,
}

impl DrainSummary {
    fn stop(&mut self, reason: String) {
        self.stopped_early = true;
        self.reason = Some(reason);
    }
}

/// Publishing rate limits (messages per second).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_second: u32,
    pub per_stream: u32,
    pub burst: u32,
}

/// Publishes outbox messages through one sink.
pub struct Publisher {
    store: Arc<SqlStore>,
    sink: tokio::sync::Mutex<Sink>,
    limiter: DefaultDirectRateLimiter,
    stream_limiter: DefaultKeyedRateLimiter<String>,
    /// Retries transient failures; its shutdown token stops drains after the batch in
    /// hand.
    retry: Retry,
    /// Who this worker is, and how long its claim on a batch lasts: several workers may
    /// drain one outbox, and a killed worker's batch is taken over when its lease ends.
    worker: String,
    lease: std::time::Duration,
    /// The slower of the two rate limits, which sizes a claim (see [`claim_size`]).
    slowest_rate: u32,
    /// False while the last drain found the sink unreachable (for `/readyz`).
    sink_ok: std::sync::atomic::AtomicBool,
    /// Lease times.
    clock: Clock,
}

/// What became of one message handed to the sink.
enum Outcome {
    Written(Written),
    Quarantined,
    /// The sink stayed unavailable through every retry.
    Unavailable(String),
    /// The node takes messages and delivers none (see [`SendError::Stuck`]).
    Stuck(String),
}

/// How many messages one claim may take: at most [`BATCH`], and no more than the rate
/// limits let out in half the lease. The claim is renewed while it is sent; sizing it so
/// keeps what a failed renewal exposes to a takeover (and a second publication) small.
fn claim_size(per_second: u32, lease: std::time::Duration) -> u32 {
    let in_half_a_lease = u64::from(per_second.max(1)) * lease.as_millis() as u64 / 2_000;
    in_half_a_lease.clamp(1, u64::from(BATCH)) as u32
}

/// After a claimed batch: claim the next one, or stop the drain (the node is down or
/// stuck; the rest waits in the outbox).
enum Flow {
    Next,
    Stop,
}

/// The messages of one outbox claim: which are done with here (confirmed, quarantined,
/// given up), and which another worker took over since (a claim that lapsed: the
/// renewal could not reach the store in time).
struct Claim {
    seqs: Vec<i64>,
    state: std::sync::Mutex<ClaimState>,
}

#[derive(Default)]
struct ClaimState {
    done: std::collections::HashSet<i64>,
    lost: std::collections::HashSet<i64>,
}

impl Claim {
    fn new(batch: &[Pending]) -> Self {
        Self { seqs: batch.iter().map(|p| p.seq).collect(), state: Default::default() }
    }

    /// The messages still to renew: neither done nor lost.
    fn outstanding(&self) -> Vec<i64> {
        let Ok(state) = self.state.lock() else { return Vec::new() };
        self.seqs.iter().copied().filter(|s| !state.done.contains(s) && !state.lost.contains(s)).collect()
    }

    /// This worker is done with `seq` (it may leave the outbox before the next renewal).
    fn done(&self, seq: i64) {
        if let Ok(mut state) = self.state.lock() {
            state.done.insert(seq);
        }
    }

    /// Records a renewal of `asked`: what it did not renew, and is not done meanwhile, is
    /// no longer this worker's to send.
    fn held(&self, asked: &[i64], renewed: &[i64]) {
        let renewed: std::collections::HashSet<i64> = renewed.iter().copied().collect();
        if let Ok(mut state) = self.state.lock() {
            let gone: Vec<i64> =
                asked.iter().copied().filter(|s| !renewed.contains(s) && !state.done.contains(s)).collect();
            state.lost.extend(gone);
        }
    }

    fn holds(&self, seq: i64) -> bool {
        self.state.lock().map_or(true, |state| !state.lost.contains(&seq))
    }

    /// Messages of the claim taken over by another worker.
    fn lost(&self) -> usize {
        self.state.lock().map_or(0, |state| state.lost.len())
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

impl Publisher {
    pub fn new(store: Arc<SqlStore>, sink: Sink, limits: Limits, retry: Retry, clock: Clock) -> Self {
        Self {
            store,
            sink: tokio::sync::Mutex::new(sink),
            limiter: RateLimiter::direct(quota(limits.per_second, limits.burst)),
            stream_limiter: RateLimiter::keyed(quota(limits.per_stream, limits.burst)),
            retry,
            worker: crate::app::worker_id(),
            lease: std::time::Duration::from_secs(600),
            slowest_rate: limits.per_second.min(limits.per_stream),
            sink_ok: std::sync::atomic::AtomicBool::new(true),
            clock,
        }
    }

    /// Claims outbox batches as `worker` for `lease` at a time.
    pub fn with_lease(mut self, worker: &str, lease: std::time::Duration) -> Self {
        self.worker = worker.to_owned();
        self.lease = lease;
        self
    }

    /// Start-up check of the sink for each stream: a refused key, stream or directory
    /// stops start-up here rather than after a whole sync pass.
    pub async fn check<'a>(&self, streams: impl IntoIterator<Item = &'a str>) -> Result<(), PublishError> {
        let mut sink = self.sink.lock().await;
        for stream in streams {
            sink.check(stream).await.map_err(PublishError::Refused)?;
        }
        Ok(())
    }

    /// Publishes until the outbox is empty or the sink stops answering.
    pub async fn drain(&self) -> Result<DrainSummary, PublishError> {
        self.drain_reporting(false).await
    }

    /// [`Publisher::drain`], showing its progress (`run --once`): a drain of a backfill at
    /// `streamr.rate` messages a second takes minutes.
    pub async fn drain_reporting(&self, progress: bool) -> Result<DrainSummary, PublishError> {
        let mut summary = DrainSummary::default();
        let mut acked: Vec<i64> = Vec::new();
        let mut sink = self.sink.lock().await;
        let waiting = if progress { self.store.outbox_len().await? } else { 0 };
        let shown = (waiting > 0).then(|| crate::progress::Progress::new("messages published", waiting));
        let result = self.drain_into(&mut sink, &mut summary, &mut acked, shown.as_ref()).await;
        if let Some(shown) = &shown {
            shown.finish();
        }
        // Whatever happened, confirmed messages leave the outbox and the rest is free.
        self.store.outbox_ack(&acked).await?;
        self.store.outbox_release(&self.worker).await?;
        self.store.prune_published(PUBLISHED_MEMORY).await?;
        // A store that failed says nothing about the sink: readiness reports the store
        // on its own, and the sink keeps what the last drain that reached it found.
        if !matches!(result, Err(PublishError::Store(_))) {
            let reachable = result.is_ok() && !summary.stopped_early;
            self.sink_ok.store(reachable, std::sync::atomic::Ordering::Relaxed);
        }
        result.map(|()| summary)
    }

    /// Whether the last drain reached the sink.
    pub fn sink_reachable(&self) -> bool {
        self.sink_ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts one message the sink confirmed.
    fn confirmed(&self, summary: &mut DrainSummary, progress: Option<&crate::progress::Progress>) {
        summary.published += 1;
        metrics::counter!("wearbridge_messages_confirmed_total").increment(1);
        if let Some(progress) = progress {
            progress.inc();
        }
    }

    async fn ack(&self, acked: &mut Vec<i64>, seq: i64) -> Result<(), StoreError> {
        acked.push(seq);
        if acked.len() >= ACK_EVERY {
            self.store.outbox_ack(acked).await?;
            acked.clear();
        }
        Ok(())
    }

    async fn drain_into(
        &self,
        sink: &mut Sink,
        summary: &mut DrainSummary,
        acked: &mut Vec<i64>,
        progress: Option<&crate::progress::Progress>,
    ) -> Result<(), PublishError> {
        loop {
            // Confirmed messages must be out before the next read, or they come back.
            self.store.outbox_ack(acked).await?;
            acked.clear();
            // Shutting down: a drain finishes the batch in hand and claims no more.
            if self.retry.is_shutting_down() {
                return Ok(());
            }
            let lease = Lease::new(&self.worker, self.lease, self.clock.now());
            let todo = self.store.outbox_claim(&lease, claim_size(self.slowest_rate, self.lease)).await?;
            if todo.is_empty() {
                return Ok(());
            }
            // The claim is renewed on a timer of its own while the batch is sent (a slow
            // node, a confirmation wait or a retry must not let it lapse). The renewal is
            // a future polled beside the sending, never an await inside a `select!` arm:
            // the sending may hold the store's writer, which the renewal then waits for.
            let claim = Claim::new(&todo);
            let send = self.send_claimed(sink, todo, &claim, summary, acked, progress);
            let flow = tokio::select! {
                flow = send => flow?,
                never = self.renew_claim(&claim) => match never {},
            };
            if claim.lost() > 0 {
                tracing::warn!(
                    messages = claim.lost(),
                    "this worker's outbox claim lapsed and was taken over; the other worker sends those"
                );
            }
            if let Flow::Stop = flow {
                return Ok(());
            }
        }
    }

    /// Renews `claim` every third of the lease, for as long as it is polled; what another
    /// worker took over meanwhile is marked lost.
    async fn renew_claim(&self, claim: &Claim) -> std::convert::Infallible {
        let mut renew = tokio::time::interval((self.lease / 3).max(std::time::Duration::from_millis(100)));
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await;
        loop {
            renew.tick().await;
            let lease = Lease::new(&self.worker, self.lease, self.clock.now());
            let asked = claim.outstanding();
            match self.store.outbox_renew(&lease, &asked).await {
                Ok(renewed) => claim.held(&asked, &renewed),
                // Tried again at the next tick; the lease has two more thirds to run.
                Err(error) => tracing::warn!(%error, "could not renew the outbox claim"),
            }
        }
    }

    /// Sends one claimed batch, in resend rounds until the node confirmed it; whether the
    /// drain goes on to the next claim.
    async fn send_claimed(
        &self,
        sink: &mut Sink,
        mut todo: Vec<Pending>,
        claim: &Claim,
        summary: &mut DrainSummary,
        acked: &mut Vec<i64>,
        progress: Option<&crate::progress::Progress>,
    ) -> Result<Flow, PublishError> {
        let mut round = 0;
        while !todo.is_empty() {
            let mut written: Vec<Pending> = Vec::new();
            let mut unavailable = None;
            let mut stuck = None;
            for pending in todo {
                if !claim.holds(pending.seq) {
                    // Another worker took it over when the claim lapsed: it sends it.
                    continue;
                }
                let outcome = self.write(sink, &pending).await?;
                if !matches!(outcome, Outcome::Written(Written::Pending)) {
                    claim.done(pending.seq);
                }
                match outcome {
                    Outcome::Written(Written::Confirmed) => {
                        self.confirmed(summary, progress);
                        self.ack(acked, pending.seq).await?;
                    }
                    Outcome::Written(Written::Pending) => written.push(pending),
                    Outcome::Quarantined => summary.quarantined += 1,
                    Outcome::Unavailable(reason) => {
                        // A retry cut short by shutdown is no failed attempt.
                        if !self.retry.is_shutting_down() {
                            self.store.outbox_attempt_failed(pending.seq, &reason).await?;
                        }
                        unavailable = Some(reason);
                        break;
                    }
                    Outcome::Stuck(reason) => {
                        self.store.outbox_attempt_failed(pending.seq, &reason).await?;
                        stuck = Some(reason);
                        break;
                    }
                }
            }
            let ids: Vec<String> = written.iter().map(|p| p.entry.message_id.clone()).collect();
            let confirmed = match sink.settle(&ids).await {
                Ok(settled) => {
                    stuck = stuck.or(settled.stuck);
                    settled.confirmed
                }
                Err(e) => {
                    unavailable = Some(e.to_string());
                    Default::default()
                }
            };
            todo = Vec::new();
            for pending in written {
                if confirmed.contains(&pending.entry.message_id) {
                    claim.done(pending.seq);
                    self.confirmed(summary, progress);
                    self.ack(acked, pending.seq).await?;
                } else {
                    todo.push(pending);
                }
            }
            if let Some(reason) = stuck {
                tracing::error!(%reason, "publishing stopped; messages stay in the outbox");
                summary.stop(reason);
                return Ok(Flow::Stop);
            }
            if let Some(reason) = unavailable {
                tracing::warn!(%reason, "the sink is unavailable; messages stay in the outbox");
                summary.stop(format!("the node is unavailable: {reason}"));
                return Ok(Flow::Stop);
            }
            if todo.is_empty() {
                break;
            }
            round += 1;
            if round >= self.retry.backoff().attempts {
                let reason = format!("{} messages were not confirmed by the node after {round} sends", todo.len());
                tracing::warn!(%reason, "messages stay in the outbox");
                claim.done(todo[0].seq);
                self.store.outbox_attempt_failed(todo[0].seq, &reason).await?;
                summary.stop(reason);
                return Ok(Flow::Stop);
            }
            tracing::warn!(
                unconfirmed = todo.len(),
                round,
                "the node did not confirm messages in time; sending them again"
            );
            summary.resent += todo.len() as u64;
        }
        Ok(Flow::Next)
    }

    /// Hands one message to the sink under the rate limits, retrying transient failures.
    async fn write(&self, sink: &mut Sink, pending: &Pending) -> Result<Outcome, PublishError> {
        let written = self
            .retry
            .run("publish", async || {
                self.limiter.until_ready().await;
                self.stream_limiter.until_key_ready(&pending.entry.stream).await;
                sink.write(&pending.entry).await
            })
            .await;
        match written {
            Ok(written) => {
                metrics::counter!("wearbridge_messages_published_total").increment(1);
                Ok(Outcome::Written(written))
            }
            Err(SendError::Rejected(reason)) => {
                tracing::error!(message_id = %pending.entry.message_id, %reason, "the node refused a message; quarantined");
                self.store.outbox_quarantine(pending.seq, &reason).await?;
                metrics::counter!("wearbridge_messages_quarantined_total").increment(1);
                Ok(Outcome::Quarantined)
            }
            Err(e @ (SendError::Unauthorized(_) | SendError::Refused(_))) => Err(PublishError::Refused(e)),
            Err(SendError::Stuck(reason)) => Ok(Outcome::Stuck(reason)),
            Err(SendError::Transient(reason)) => Ok(Outcome::Unavailable(reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pending(seq: i64) -> Pending {
        let entry = crate::store::OutboxEntry {
            message_id: format!("m{seq}"),
            stream: "s".into(),
            partition_key: "k".into(),
            payload: "{}".into(),
        };
        Pending { seq, entry, attempts: 0 }
    }

    #[test]
    fn a_claim_forgets_what_a_renewal_no_longer_holds() {
        let claim = Claim::new(&[pending(1), pending(2), pending(3), pending(4)]);
        assert!((1..=4).all(|s| claim.holds(s)) && claim.outstanding() == [1, 2, 3, 4]);
        // 1 was confirmed and left the outbox while the renewal was on its way.
        let asked = claim.outstanding();
        claim.done(1);
        claim.held(&asked, &[3, 4]);
        assert!(claim.holds(1) && !claim.holds(2) && claim.holds(3));
        assert_eq!(claim.lost(), 1, "only 2 was taken over");
        assert_eq!(claim.outstanding(), [3, 4]);
        claim.held(&[2, 3, 4], &[2, 3, 4]);
        assert!(!claim.holds(2), "once taken over, never sent here again");
    }

    #[test]
    fn a_claim_is_sent_within_half_its_lease() {
        assert_eq!(claim_size(50, Duration::from_secs(600)), BATCH, "the default lease is far longer");
        assert_eq!(claim_size(50, Duration::from_secs(2)), 50);
        assert_eq!(claim_size(10, Duration::from_secs(3)), 15);
        assert_eq!(claim_size(1, Duration::from_secs(1)), 1, "never nothing");
        assert_eq!(claim_size(0, Duration::from_secs(1)), 1);
        assert_eq!(claim_size(u32::MAX, Duration::from_secs(86_400)), BATCH);
    }
}
