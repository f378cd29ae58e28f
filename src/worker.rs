//! The daemon: claims due accounts and syncs their due datasets in one loop, drains the
//! outbox in another beside it, and stops cleanly on a signal.
//!
//! Each (account, dataset) has its own next-due time (its schedule, see
//! [`crate::schedule`], plus up to `sync.jitter`). The account is the unit of claiming, because one account's tokens must
//! be refreshed by one process at a time (Withings rotates the refresh token on every
//! refresh). Claims are leases in the store, so several workers on one PostgreSQL
//! database share the accounts and a killed worker's accounts are taken over when its
//! leases expire. Shutdown: stop claiming, let what is in flight finish within
//! `sync.shutdown_grace`; work cut off later was never committed and is claimed again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::Notify;

use crate::config::SyncSettings;
use crate::pipeline::{Output, Pipeline};
use crate::publisher::{PublishError, Publisher};
use crate::retry::CancellationToken;
use crate::store::{Lease, Store, StoreError};

/// Accounts one worker syncs at once; a claimed account never waits for a slot while
/// its lease runs (the worker claims only as many as it has free slots).
const CONCURRENCY: u32 = 8;

/// Minutes until a failed account sync is tried again.
const RETRY_FAILED_MINUTES: i64 = 15;

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

/// Awaits `work` while the syncs in flight keep being polled. Awaiting the store with
/// them unpolled could wait for ever: one of them may hold a connection (the writer, in a
/// commit) that it gives back only when it is polled again.
async fn beside<F: Future, S: futures::Stream + Unpin>(in_flight: &mut S, work: F) -> F::Output {
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            Some(_) = in_flight.next() => {}
        }
    }
}

/// Back pressure on syncing: above `sync.outbox_high_water` pending messages no account
/// is claimed until the drain (oldest first) has brought the outbox below nine tenths of
/// the mark. The outbox is counted (no further than the mark) before a claim when the
/// last count plus what this worker committed since could reach half the mark, while
/// paused, and at least every [`HighWater::RECOUNT`]; far below the mark a claim costs
/// no count.
struct HighWater {
    mark: u64,
    paused: bool,
    last_depth: u64,
    counted: Option<tokio::time::Instant>,
}

impl HighWater {
    const RECOUNT: Duration = Duration::from_secs(5);

    fn new(mark: u64) -> Self {
        Self { mark, paused: false, last_depth: 0, counted: None }
    }

    /// Whether syncing is paused now; `committed` is what syncs committed since the last
    /// count (taken and reset here).
    async fn holds(&mut self, store: &crate::store::SqlStore, committed: &AtomicU64) -> bool {
        let recent = self.counted.is_some_and(|at| at.elapsed() < Self::RECOUNT);
        let estimate = self.last_depth.saturating_add(committed.load(Ordering::Relaxed));
        if recent && !self.paused && estimate < self.mark / 2 {
            return false;
        }
        let since = committed.swap(0, Ordering::Relaxed);
        let depth = match store.outbox_len_up_to(self.mark).await {
            Ok(depth) => depth,
            Err(_) => {
                // The claim that follows meets the same store and says so.
                committed.fetch_add(since, Ordering::Relaxed);
                return self.paused;
            }
        };
        (self.last_depth, self.counted) = (depth, Some(tokio::time::Instant::now()));
        let resume_below = self.mark - self.mark / 10;
        if !self.paused && depth >= self.mark {
            self.paused = true;
            tracing::warn!(
                high_water = self.mark,
                "the outbox is at its high-water mark (sync.outbox_high_water); syncing paused while it drains"
            );
        } else if self.paused && depth < resume_below {
            self.paused = false;
            tracing::info!(outbox = depth, high_water = self.mark, "the outbox drained; syncing resumed");
        }
        metrics::gauge!("wearbridge_sync_paused").set(if self.paused { 1.0 } else { 0.0 });
        self.paused
    }
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
        (self.sync.shortest_interval() / 4).clamp(Duration::from_millis(200), Duration::from_secs(10))
    }

    /// Runs until `shutdown`; returns once in-flight work is done (or gave up: back-off
    /// pauses end on the same token). Syncing and publishing are two loops side by side:
    /// accounts are claimed as slots free up, whatever the outbox holds, and the outbox
    /// drains at its own rate. A store that does not answer is waited out (and `/readyz`
    /// says so); only a sink that refuses the configuration ends the loop with an error.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        // A sink that refuses the configuration stops the sync loop too.
        let stop = shutdown.child_token();
        let synced = Notify::new();
        let publish = async {
            let result = self.publish_loop(&stop, &synced).await;
            stop.cancel();
            result
        };
        let ((), published) = tokio::join!(self.sync_loop(&stop, &synced), publish);
        published
    }

    /// Keeps up to [`CONCURRENCY`] accounts syncing: a slot freed by one account is
    /// filled by the next due one at once, so no account waits on a slow one (a long
    /// `Retry-After`, a throttled token endpoint).
    async fn sync_loop(&self, stop: &CancellationToken, synced: &Notify) {
        let datasets: Vec<&str> = self.sync.datasets.iter().map(|d| d.as_str()).collect();
        // Declared before the syncs that add to it, so it outlives them.
        let committed = AtomicU64::new(0);
        let mut in_flight = FuturesUnordered::new();
        let mut failures = 0u32;
        let mut high_water = HighWater::new(self.sync.outbox_high_water);
        // Which provider claims first this round (they take turns).
        let mut turn = 0usize;
        loop {
            if stop.is_cancelled() {
                // In-flight syncs hear the same token; let them end.
                while in_flight.next().await.is_some() {}
                return;
            }
            let free = CONCURRENCY.saturating_sub(in_flight.len() as u32);
            let mut pause = self.poll();
            let mut more = false;
            let paused = free > 0 && beside(&mut in_flight, high_water.holds(&self.pipeline.store, &committed)).await;
            if free > 0 && !paused && !stop.is_cancelled() {
                let lease = Lease::new(&self.id, self.sync.lease, self.pipeline.clock.now());
                turn = turn.wrapping_add(1);
                let claim = self.claim(&lease, &datasets, free, turn);
                match beside(&mut in_flight, claim).await {
                    Ok(accounts) => {
                        failures = 0;
                        // A full claim: more may be due.
                        more = accounts.len() as u32 == free;
                        for account in accounts {
                            in_flight.push(self.sync_claimed(lease.clone(), account, stop, synced, &committed));
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        pause = (self.poll() * failures.min(10)).min(Duration::from_secs(30));
                        tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "the store failed; retrying");
                    }
                }
            }
            if more && in_flight.len() < CONCURRENCY as usize {
                continue;
            }
            tokio::select! {
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                _ = tokio::time::sleep(pause) => {}
                // A pinned clock moved by a test: due work may have come.
                () = self.pipeline.clock.moved() => {}
                // A notification was noted (its coalescing delay is over).
                () = self.pipeline.due_now.notified() => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Syncs every account that is due now, as far as the request budgets allow, and
    /// returns how many: claims (as the daemon does) until a claim finds none. One step of
    /// the daemon at one instant, for stepping a pinned clock through days (tests and
    /// benchmarks of the schedule and the budgets).
    pub async fn sync_due(&self) -> Result<u64, StoreError> {
        let datasets: Vec<&str> = self.sync.datasets.iter().map(|d| d.as_str()).collect();
        let (stop, synced, committed) = (CancellationToken::new(), Notify::new(), AtomicU64::new(0));
        let mut total = 0u64;
        for turn in 0usize.. {
            let lease = Lease::new(&self.id, self.sync.lease, self.pipeline.clock.now());
            let accounts = self.claim(&lease, &datasets, CONCURRENCY, turn).await?;
            if accounts.is_empty() {
                break;
            }
            total += accounts.len() as u64;
            let syncs = accounts.into_iter().map(|a| self.sync_claimed(lease.clone(), a, &stop, &synced, &committed));
            futures::future::join_all(syncs).await;
        }
        Ok(total)
    }

    /// Claims up to `free` due accounts, per provider no more than its request budget
    /// has room for now (each claimed account's expected requests are reserved), so an
    /// account whose provider's quota is spent waits for a later slot in the store, not
    /// in a sync slot that an account of another provider could use.
    async fn claim(
        &self,
        lease: &Lease,
        datasets: &[&str],
        free: u32,
        turn: usize,
    ) -> Result<Vec<crate::store::Account>, StoreError> {
        let mut sources: Vec<&dyn crate::sources::Source> = self.pipeline.sources.iter().collect();
        sources.sort_by_key(|s| s.provider());
        if !sources.is_empty() {
            let n = sources.len();
            sources.rotate_left(turn % n);
        }
        let mut claimed = Vec::new();
        for source in sources {
            let left = free.saturating_sub(claimed.len() as u32);
            let budget = source.budget();
            // A quota below one sync's requests still lets one sync through at a time.
            let cost = source.requests_per_sync().clamp(1, budget.limit());
            let room = budget.room();
            let provider = source.provider().as_str();
            metrics::gauge!("wearbridge_upstream_budget_room", "provider" => provider).set(f64::from(room));
            let n = left.min(room / cost);
            if n == 0 {
                continue;
            }
            match self.pipeline.store.claim_accounts(lease, datasets, &[provider], n).await {
                Ok(accounts) => {
                    for account in accounts {
                        budget.try_reserve(account.id, cost);
                        claimed.push(account);
                    }
                }
                Err(e) => {
                    // What was claimed and set aside is given back with the error.
                    for account in &claimed {
                        if let Some(source) = self.pipeline.sources.get(account.provider) {
                            source.budget().release(account.id);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(claimed)
    }

    async fn sync_claimed(
        &self,
        lease: Lease,
        account: crate::store::Account,
        stop: &CancellationToken,
        synced: &Notify,
        committed: &AtomicU64,
    ) {
        let outcome = self.sync_account(&lease, &account, stop).await;
        if let Some(source) = self.pipeline.sources.get(account.provider) {
            source.budget().release(account.id);
        }
        match outcome {
            Ok(messages) => {
                committed.fetch_add(messages, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "could not record the sync of an account; its lease will expire"),
        }
        synced.notify_one();
    }

    /// Drains the outbox whenever a sync committed something, or every poll interval.
    async fn publish_loop(&self, stop: &CancellationToken, synced: &Notify) -> Result<(), WorkerError> {
        let Some(publisher) = &self.publisher else {
            stop.cancelled().await;
            return Ok(());
        };
        let mut failures = 0u32;
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let mut pause = self.poll();
            match publisher.drain().await {
                Ok(drained) => {
                    failures = 0;
                    if let Some(reason) = &drained.reason {
                        tracing::warn!(
                            published = drained.published,
                            quarantined = drained.quarantined,
                            resent = drained.resent,
                            %reason,
                            "publishing stopped; the rest waits in the outbox"
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
                Err(PublishError::Store(e)) => {
                    failures += 1;
                    pause = (self.poll() * failures.min(10)).min(Duration::from_secs(30));
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "the store failed; retrying");
                }
                Err(e) => return Err(e.into()),
            }
            tokio::select! {
                _ = synced.notified() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Syncs the account's due datasets and schedules each one's next sync; a sync cut
    /// short by shutdown schedules nothing, so the account is due again at once. Returns
    /// the messages the sync put in the outbox.
    async fn sync_account(
        &self,
        lease: &Lease,
        account: &crate::store::Account,
        shutdown: &CancellationToken,
    ) -> Result<u64, StoreError> {
        let store = &self.pipeline.store;
        let schedule = store.schedule(account.id).await?;
        let due = crate::schedule::due(&self.sync, &schedule, lease.now_ms);
        let hints = crate::schedule::push_hints(&schedule, &due);
        // Notifications this sync serves: those noted before it read the schedule.
        let served: Vec<i64> = schedule
            .iter()
            .filter(|r| due.iter().any(|d| d.as_str() == r.dataset))
            .filter_map(|r| r.pushed_at)
            .collect();
        // Renew the lease while the sync runs (a long Retry-After must not let another
        // worker claim the account and refresh its tokens at the same time). The renewal
        // is a future of its own polled beside the sync, never an await inside a `select!`
        // arm: that would stop polling the sync while it may hold the store's writer
        // (a transaction in progress), and the renewal would wait for it for ever.
        let sync = self.pipeline.sync_one(account, &due, &hints, &self.output);
        let renewing = async {
            let mut renew = tokio::time::interval((self.sync.lease / 3).max(Duration::from_millis(100)));
            renew.tick().await;
            loop {
                renew.tick().await;
                let extended = Lease::new(&lease.worker, self.sync.lease, self.pipeline.clock.now());
                if !store.renew_account_lease(&extended, account.id).await.unwrap_or(false) {
                    return;
                }
            }
        };
        let summary = tokio::select! {
            summary = sync => summary,
            () = renewing => {
                tracing::warn!("lost the lease on an account during its sync; stopping that sync");
                return Ok(0);
            }
        };
        if shutdown.is_cancelled() && summary.synced == 0 {
            // Waits were cut short: whatever was not committed is done again by the next
            // claim, which need not wait a whole interval for it.
            store.release_account(&lease.worker, account.id, &[], None).await?;
            return Ok(summary.messages);
        }
        metrics::counter!("wearbridge_account_syncs_total", "result" => if summary.synced > 0 { "ok" } else { "failed" })
            .increment(1);
        let now = self.pipeline.clock.now();
        let zone = store.cursor(account.id, crate::schedule::ZONE_CURSOR).await?;
        let zone = zone.as_deref().and_then(crate::schedule::stored_zone).map(|(_, z)| z);
        // A failed sync (a transient error, a 601) is tried again soon, not at the next
        // morning; what did commit is not read twice (cursors and ids).
        let retry = (summary.synced == 0).then(|| now + chrono::TimeDelta::minutes(RETRY_FAILED_MINUTES));
        let next: Vec<(String, i64)> = due
            .iter()
            .map(|d| {
                let regular = crate::schedule::next_due(&self.sync, *d, now, zone);
                let at = retry.map_or(regular, |r| r.min(regular)).timestamp_millis();
                (d.as_str().to_owned(), at + ms(jitter(self.sync.jitter)))
            })
            .collect();
        // A failed sync keeps the notes (and their hints) for its retry.
        let served_rows = (summary.synced > 0).then_some(schedule.as_slice());
        store.release_account(&lease.worker, account.id, &next, served_rows).await?;
        if summary.synced > 0 {
            // From each notification to its data committed to the outbox (the drain,
            // woken by the commit, publishes it next).
            let now_ms = now.timestamp_millis();
            for at in served {
                metrics::histogram!("wearbridge_push_latency_seconds").record((now_ms - at).max(0) as f64 / 1000.0);
            }
        }
        Ok(summary.messages)
    }
}
