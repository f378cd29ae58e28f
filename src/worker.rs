//! The daemon: claims due accounts, syncs their due datasets, drains the outbox, and
//! stops cleanly on a signal.
//!
//! Each (account, dataset) has its own next-due time (`sync.interval` plus up to
//! `sync.jitter`). The account is the unit of claiming, because one account's tokens must
//! be refreshed by one process at a time (Withings rotates the refresh token on every
//! refresh). Claims are leases in the store, so several workers on one PostgreSQL
//! database share the accounts and a killed worker's accounts are taken over when its
//! leases expire. Shutdown: stop claiming, let what is in flight finish within
//! `sync.shutdown_grace`; work cut off later was never committed and is claimed again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::config::{Dataset, SyncSettings};
use crate::pipeline::{Output, Pipeline};
use crate::publisher::{PublishError, Publisher};
use crate::retry::CancellationToken;
use crate::store::{Lease, Store, StoreError};

/// Accounts claimed, and synced at once, by one worker: no claimed account waits for a
/// slot while its lease runs.
const CONCURRENCY: u32 = 8;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// One worker process's loop.
pub struct Worker {
    pub id: String,
    pub pipeline: Arc<Pipeline>,
    pub publisher: Option<Arc<Publisher>>,
    pub output: Output,
    pub sync: SyncSettings,
}

/// A random duration in `[0, max]`.
fn jitter(max: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    let frac = if getrandom::fill(&mut bytes).is_ok() {
        f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX)
    } else {
        0.5
    };
    max.mul_f64(frac)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Worker {
    /// How often to look for due work when there is none.
    fn poll(&self) -> Duration {
        (self.sync.interval / 4).clamp(Duration::from_millis(200), Duration::from_secs(10))
    }

    /// Runs until `shutdown`; returns once in-flight work is done (or gave up: back-off
    /// pauses end on the same token). A store that does not answer is waited out (and
    /// `/readyz` says so); only a sink that refuses the configuration ends the loop with
    /// an error.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let mut failures = 0u32;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let pause = match self.round(&shutdown).await {
                Ok(0) => {
                    failures = 0;
                    self.poll()
                }
                Ok(_) => {
                    failures = 0;
                    continue;
                }
                Err(WorkerError::Store(e) | WorkerError::Publish(PublishError::Store(e))) => {
                    failures += 1;
                    let pause = (self.poll() * failures.min(10)).min(Duration::from_secs(30));
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "the store failed; retrying");
                    pause
                }
                Err(e) => return Err(e),
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// Claims, syncs and drains once; returns how many accounts it claimed.
    async fn round(&self, shutdown: &CancellationToken) -> Result<usize, WorkerError> {
        let datasets: Vec<&str> = self.sync.datasets.iter().map(|d| d.as_str()).collect();
        let lease = Lease::new(&self.id, self.sync.lease, self.pipeline.clock.now());
        let accounts = self.pipeline.store.claim_accounts(&lease, &datasets, CONCURRENCY).await?;
        let claimed = accounts.len();
        futures::stream::iter(accounts)
            .for_each_concurrent(CONCURRENCY as usize, |account| {
                let lease = &lease;
                async move {
                    if let Err(e) = self.sync_account(lease, &account, shutdown).await {
                        tracing::warn!(error = %e, "could not record the sync of an account; its lease will expire");
                    }
                }
            })
            .await;
        if let Some(publisher) = &self.publisher {
            let drained = publisher.drain().await?;
            if let Some(reason) = &drained.reason {
                tracing::warn!(
                    published = drained.published,
                    quarantined = drained.quarantined,
                    resent = drained.resent,
                    %reason,
                    "publishing stopped; the rest waits in the outbox for the next round"
                );
            } else if drained.published + drained.quarantined > 0 {
                tracing::info!(
                    published = drained.published,
                    quarantined = drained.quarantined,
                    resent = drained.resent,
                    "outbox drained"
                );
            }
        }
        Ok(claimed)
    }

    /// Syncs the account's due datasets and schedules each one's next sync; a sync cut
    /// short by shutdown schedules nothing, so the account is due again at once.
    async fn sync_account(
        &self,
        lease: &Lease,
        account: &crate::store::Account,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        let store = &self.pipeline.store;
        let schedule = store.schedule(account.id).await?;
        let due: Vec<Dataset> = self
            .sync
            .datasets
            .iter()
            .copied()
            .filter(|d| schedule.iter().find(|(name, _)| name == d.as_str()).is_none_or(|(_, at)| *at <= lease.now_ms))
            .collect();
        // Renew the lease while the sync runs (a long Retry-After must not let another
        // worker claim the account and refresh its tokens at the same time).
        let sync = self.pipeline.sync_one(account, &due, &self.output);
        tokio::pin!(sync);
        let mut renew = tokio::time::interval((self.sync.lease / 3).max(Duration::from_millis(100)));
        renew.tick().await;
        let summary = loop {
            tokio::select! {
                summary = &mut sync => break summary,
                _ = renew.tick() => {
                    let extended = Lease::new(&lease.worker, self.sync.lease, self.pipeline.clock.now());
                    if !store.renew_account_lease(&extended, account.id).await.unwrap_or(false) {
                        tracing::warn!("lost the lease on an account during its sync; stopping that sync");
                        return Ok(());
                    }
                }
            }
        };
        if shutdown.is_cancelled() && summary.synced == 0 {
            // Waits were cut short: whatever was not committed is done again by the next
            // claim, which need not wait a whole interval for it.
            return store.release_account(&lease.worker, account.id, &[]).await;
        }
        metrics::counter!("wearbridge_account_syncs_total", "result" => if summary.synced > 0 { "ok" } else { "failed" })
            .increment(1);
        let now = self.pipeline.clock.now().timestamp_millis();
        let next: Vec<(String, i64)> = due
            .iter()
            .map(|d| (d.as_str().to_owned(), now + ms(self.sync.interval) + ms(jitter(self.sync.jitter))))
            .collect();
        store.release_account(&lease.worker, account.id, &next).await
    }
}
