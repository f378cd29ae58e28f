//! One sync pass: for every active account, source → normalize → anonymizer → schema
//! check → (dry run: stdout | otherwise: outbox with the cursor, in one transaction).
//!
//! One person's failure never stops the others: each account runs on its own and its
//! error is logged and counted.

mod route;
mod series;

pub use route::{BadStreamId, Routes, Unrouted, is_stream_id};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anonymizer::{Anonymizer, Provider, Record};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tracing::Instrument;

use crate::auth::TokenManager;
use crate::clock::Clock;
use crate::config::{Dataset, SeriesSettings, SyncSettings};
use crate::schemas::{Refused, Schemas};
use crate::sinks::Delivery;
use crate::sources::{AccountPass, Batch, SourceError, Sources};
use crate::store::{Account, AccountStatus, OutboxEntry, SqlStore, Store, StoreError};

/// How many accounts sync at the same time.
const ACCOUNT_CONCURRENCY: usize = 8;

/// Where a pass puts its messages.
pub enum Output {
    /// Print (or otherwise hand over) the deliveries; persist nothing but rotated tokens.
    DryRun(Arc<dyn DeliveryWriter>),
    /// Add to the outbox together with the cursor.
    Outbox,
}

/// Receives one account's batch of deliveries in a dry run.
pub trait DeliveryWriter: Send + Sync {
    fn write_batch(&self, batch: &[Delivery]) -> std::io::Result<()>;
}

impl<W: std::io::Write + Send> DeliveryWriter for crate::sinks::stdout::StdoutSink<W> {
    fn write_batch(&self, batch: &[Delivery]) -> std::io::Result<()> {
        self.emit(batch)
    }
}

/// What one pass did, for the summary line and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassSummary {
    pub accounts: u64,
    pub synced: u64,
    pub failed: u64,
    pub needs_reconsent: u64,
    pub messages: u64,
    pub skipped_points: u64,
    pub dropped: u64,
    pub invalid: u64,
    /// Datasets skipped because the person did not grant their scope.
    pub skipped_datasets: u64,
}

#[derive(Default)]
struct Counters {
    synced: AtomicU64,
    failed: AtomicU64,
    needs_reconsent: AtomicU64,
    messages: AtomicU64,
    skipped_points: AtomicU64,
    dropped: AtomicU64,
    invalid: AtomicU64,
    skipped_datasets: AtomicU64,
}

/// A message that failed its schema, with the reasons.
type Quarantined = (Delivery, String);

/// No wearable reading predates this (the first consumer heart-rate trackers came later).
const EARLIEST_PLAUSIBLE: DateTime<Utc> = DateTime::from_timestamp(946_684_800, 0).expect("2000-01-01T00:00:00Z");

/// The time of the newest reading a record carries (a series window: its last sample).
fn newest_reading(record: &Record) -> DateTime<Utc> {
    match &record.observation {
        anonymizer::Observation::HeartRateSeries { samples, start, .. } => {
            samples.iter().map(|(at, _)| *at).max().unwrap_or(*start)
        }
        other => other.source_time(),
    }
}

/// A record whose time no device could have produced (before 2000, or more than a day
/// after now: a clock at 9999-12-31, a garbled date) is a skipped point, not a message.
fn plausible(record: Record, now: DateTime<Utc>) -> Result<Record, crate::normalize::Skipped> {
    let at = record.observation.source_time();
    let latest = now + chrono::TimeDelta::days(1);
    if at < EARLIEST_PLAUSIBLE || at > latest {
        return Err(crate::normalize::Skipped::bad("an implausible time (before 2000 or after tomorrow)"));
    }
    Ok(record)
}

/// Why one account's sync (or a captured upload) failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unrouted(#[from] Unrouted),
    #[error("no source in this build reads provider {0}")]
    UnknownProvider(Provider),
    #[error("cannot write the dry-run output: {0}")]
    Output(#[from] std::io::Error),
}

/// Everything a pass needs, built once per process.
pub struct Pipeline {
    pub store: Arc<SqlStore>,
    /// Every registered source, by provider.
    pub sources: Sources,
    pub anonymizer: Anonymizer,
    pub schemas: Schemas,
    pub routes: Routes,
    pub sync: SyncSettings,
    /// How high-frequency types are published (`[anonymizer.series]`).
    pub series: std::collections::BTreeMap<String, SeriesSettings>,
    /// One subject per person across providers (`anonymizer.link_providers`).
    pub link_providers: bool,
    /// "Now" for sync windows and civil days.
    pub clock: Clock,
    /// With `[push]` on in the daemon (`server.public_url`): each account is kept
    /// subscribed to its provider's notifications (see [`crate::app::push_callback`]).
    pub push_public_url: Option<String>,
    /// Subscriptions checked before this instant (Unix ms) are checked again at the
    /// account's next sync: the daemon sets its start, so every start lists and repairs
    /// them.
    pub push_checked_since: Option<i64>,
    /// Woken when work may have become due outside the schedule (a notification was
    /// noted): the daemon looks for it at once instead of at its next poll.
    pub due_now: Arc<tokio::sync::Notify>,
}

/// How often an account's provider-side subscriptions are checked (and repaired).
const PUSH_CHECK_EVERY: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// When a failed subscription is tried again.
const PUSH_RETRY_AFTER: chrono::TimeDelta = chrono::TimeDelta::days(1);

impl Pipeline {
    /// The token manager the sources share.
    pub fn tokens(&self) -> &TokenManager {
        self.sources.tokens()
    }

    /// Syncs every active account once.
    pub async fn run_pass(&self, output: &Output) -> Result<PassSummary, StoreError> {
        self.run_pass_reporting(output, false).await
    }

    /// [`Pipeline::run_pass`], showing progress by account (a bar on a terminal, log
    /// lines otherwise) when `progress` is set: for passes people wait on at the command
    /// line.
    pub async fn run_pass_reporting(&self, output: &Output, progress: bool) -> Result<PassSummary, StoreError> {
        let accounts: Vec<Account> =
            self.store.accounts().await?.into_iter().filter(|a| a.status == AccountStatus::Active).collect();
        let counters = Counters::default();
        let now = self.clock.now();
        let datasets = self.sync.datasets.clone();
        let shown = progress.then(|| crate::progress::Progress::new("accounts synced", accounts.len() as u64));
        futures::stream::iter(accounts.iter())
            .for_each_concurrent(ACCOUNT_CONCURRENCY, |account| async {
                self.sync_counted(account, &datasets, &BTreeMap::new(), now, output, &counters).await;
                if let Some(p) = &shown {
                    p.inc();
                }
            })
            .await;
        if let Some(p) = &shown {
            p.finish();
        }
        Ok(counters.summary(accounts.len() as u64))
    }

    /// Syncs one account's `datasets` (the daemon's unit of scheduled work); `hints` are
    /// the earliest changed instants push notifications told of, per dataset.
    pub async fn sync_one(
        &self,
        account: &Account,
        datasets: &[Dataset],
        hints: &BTreeMap<Dataset, DateTime<Utc>>,
        output: &Output,
    ) -> PassSummary {
        let counters = Counters::default();
        self.sync_counted(account, datasets, hints, self.clock.now(), output, &counters).await;
        counters.summary(1)
    }

    async fn sync_counted(
        &self,
        account: &Account,
        datasets: &[Dataset],
        hints: &BTreeMap<Dataset, DateTime<Utc>>,
        now: DateTime<Utc>,
        output: &Output,
        counters: &Counters,
    ) {
        let span = tracing::info_span!("sync", provider = %account.provider, subject = tracing::field::Empty);
        async move {
            match self.sync_account(account, datasets, hints, now, output, counters).await {
                Ok(()) => {
                    counters.synced.fetch_add(1, Ordering::Relaxed);
                }
                Err(AccountError::Source(SourceError::NeedsReconsent)) => {
                    counters.needs_reconsent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "account sync failed; other accounts continue");
                }
            }
        }
        .instrument(span)
        .await
    }
}

impl Counters {
    fn summary(&self, accounts: u64) -> PassSummary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PassSummary {
            accounts,
            synced: get(&self.synced),
            failed: get(&self.failed),
            needs_reconsent: get(&self.needs_reconsent),
            messages: get(&self.messages),
            skipped_points: get(&self.skipped_points),
            dropped: get(&self.dropped),
            invalid: get(&self.invalid),
            skipped_datasets: get(&self.skipped_datasets),
        }
    }
}

impl Pipeline {
    /// Publishes records a scale posted for `account` (a `local` account): anonymised under
    /// the person's subject, checked against the schemas and committed to the outbox with
    /// the `scale` cursor, before the scale is answered. Returns the messages committed.
    pub async fn deliver_captured(
        &self,
        account: &Account,
        records: Vec<Result<Record, crate::normalize::Skipped>>,
        cursor: String,
    ) -> Result<u64, AccountError> {
        let user_id = account.provider_user_id.clone().unwrap_or_else(|| account.person.clone());
        let scope = self.scope(account, &user_id).await?;
        let mut pass = AccountPass::new(account, &user_id, self.clock.now(), &self.sync, &self.series, &self.store);
        pass.dataset = Dataset::Body;
        let counters = Counters::default();
        let batch = Batch { cursor_key: "scale", cursor, records, series: None };
        self.deliver(&pass, &scope, batch, &Output::Outbox, &counters).await?;
        Ok(counters.messages.load(Ordering::Relaxed))
    }

    /// The anonymizer's view of an account: the person's subject (one across their
    /// providers, `anonymizer.link_providers`) or the account's own.
    async fn scope(&self, account: &Account, user_id: &str) -> Result<anonymizer::ForAccount<'_>, StoreError> {
        let basis = if self.link_providers { self.store.subject_id(&account.person).await? } else { None };
        Ok(match &basis {
            Some(basis) => self.anonymizer.for_person(basis, account.provider, user_id),
            None => self.anonymizer.for_account(account.provider, user_id),
        })
    }

    /// Subscribes the account to its provider's notifications when that was never done,
    /// or not checked for [`PUSH_CHECK_EVERY`]. A failure is logged and tried again at the
    /// next sync: polling goes on meanwhile.
    async fn keep_subscribed(
        &self,
        source: &dyn crate::sources::Source,
        account: &Account,
        now: DateTime<Utc>,
    ) -> Result<(), AccountError> {
        let checked = self.store.push_checked_at(account.id).await?;
        let fresh = |at: i64| {
            now.timestamp_millis() - at < PUSH_CHECK_EVERY.num_milliseconds()
                && self.push_checked_since.is_none_or(|since| at >= since)
        };
        if checked.is_some_and(fresh) {
            return Ok(());
        }
        let Some(public_url) = &self.push_public_url else { return Ok(()) };
        let callback = crate::app::push_callback(public_url, &self.store, account.provider)?;
        match source.subscribe(account, &callback).await {
            Ok(()) => self.store.set_push_checked(account.id, Some(now.timestamp_millis())).await?,
            Err(SourceError::NeedsReconsent) => return Err(AccountError::Source(SourceError::NeedsReconsent)),
            Err(e) => {
                // Tried again in a day, not at every sync (a wrong public URL would
                // otherwise cost two requests a sync for ever).
                let retry_at = now - PUSH_CHECK_EVERY + PUSH_RETRY_AFTER;
                self.store.set_push_checked(account.id, Some(retry_at.timestamp_millis())).await?;
                tracing::warn!(error = %e, "could not subscribe the account to notifications; tried again in a day, polling goes on");
            }
        }
        Ok(())
    }

    async fn sync_account(
        &self,
        account: &Account,
        datasets: &[Dataset],
        hints: &BTreeMap<Dataset, DateTime<Utc>>,
        now: DateTime<Utc>,
        output: &Output,
        counters: &Counters,
    ) -> Result<(), AccountError> {
        let source = self.sources.get(account.provider).ok_or(AccountError::UnknownProvider(account.provider))?;
        let user_id = match &account.provider_user_id {
            Some(id) => id.clone(),
            None => {
                let id = source.user_id(account).await?;
                if matches!(output, Output::Outbox) {
                    self.store.set_provider_user_id(account.id, &id).await?;
                }
                id
            }
        };
        let scope = self.scope(account, &user_id).await?;
        tracing::Span::current().record("subject", scope.subject());
        if self.push_public_url.is_some() && matches!(output, Output::Outbox) {
            self.keep_subscribed(source, account, now).await?;
        }

        // Each dataset on its own: a missing scope skips that dataset, any other failure
        // is reported once the other datasets had their turn.
        let mut pass = AccountPass::new(account, &user_id, now, &self.sync, &self.series, &self.store);
        pass.hints = hints.clone();
        let mut first_error = None;
        for &dataset in datasets {
            pass.dataset = dataset;
            let batches = match source.read(&mut pass, dataset).await {
                Ok(b) => b,
                Err(SourceError::ScopeMissing { scope }) => {
                    counters.skipped_datasets.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        dataset = dataset.as_str(),
                        missing_scope = scope,
                        "the person did not grant this scope; dataset skipped"
                    );
                    continue;
                }
                Err(e @ SourceError::NeedsReconsent) => return Err(e.into()),
                Err(e) if e.is_token_failure() => return Err(e.into()),
                Err(e) => {
                    match &e {
                        SourceError::Transient { retry_after, .. } => {
                            tracing::warn!(dataset = dataset.as_str(), error = %e, retry_after = ?retry_after, "dataset failed; tried again next pass")
                        }
                        _ => tracing::warn!(dataset = dataset.as_str(), error = %e, "dataset failed"),
                    }
                    first_error.get_or_insert(AccountError::Source(e));
                    continue;
                }
            };
            for batch in batches {
                self.deliver(&pass, &scope, batch, output, counters).await?;
            }
            if let Some(zone) = pass.zone_read.take() {
                let cursor = crate::schedule::zone_cursor(zone, now);
                let batch =
                    Batch { cursor_key: crate::schedule::ZONE_CURSOR, cursor, records: Vec::new(), series: None };
                self.deliver(&pass, &scope, batch, output, counters).await?;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Anonymise a batch and hand it to the output: print it (dry run), or put it in the
    /// outbox together with its cursor.
    async fn deliver(
        &self,
        pass: &AccountPass<'_>,
        scope: &anonymizer::ForAccount<'_>,
        batch: Batch,
        output: &Output,
        counters: &Counters,
    ) -> Result<(), AccountError> {
        let (account, dataset, now) = (pass.account, pass.dataset, pass.now);
        let mut records = Vec::with_capacity(batch.records.len());
        for r in batch.records {
            match r.and_then(|r| plausible(r, now)) {
                Ok(r) => records.push(r),
                Err(skipped) if skipped.by_policy => {
                    tracing::debug!(cursor = batch.cursor_key, reason = skipped.reason, "not published by policy");
                }
                Err(skipped) => {
                    counters.skipped_points.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(cursor = batch.cursor_key, reason = skipped.reason, "skipped a data point");
                }
            }
        }
        let read = records.len();
        let mut cursor = batch.cursor;
        let mut windows = Vec::new();
        let series_window = batch.series.and_then(|t| crate::config::series_window(&self.series, t));
        if let Some(window) = series_window {
            let lookback = chrono::TimeDelta::from_std(self.sync.plan(dataset).lookback).unwrap_or_default();
            let closed_end = series::closed_end(now, window, lookback);
            let keys = series::keys(&records, window, closed_end);
            let published = self.store.series_windows(account.id, &keys).await?;
            let folded = series::fold(records, window, closed_end, &published);
            (records, windows, cursor) = (folded.records, folded.windows, folded.cursor);
        }
        let newest = records.iter().map(newest_reading).max();
        let (deliveries, quarantined) = self.to_deliveries(&records, scope, counters)?;
        tracing::info!(cursor = batch.cursor_key, records = read, messages = deliveries.len(), "read");
        metrics::counter!("wearbridge_records_total", "dataset" => batch.cursor_key).increment(records.len() as u64);
        counters.messages.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
        match output {
            Output::DryRun(writer) => writer.write_batch(&deliveries)?,
            Output::Outbox => {
                let entries: Vec<OutboxEntry> = deliveries.into_iter().map(Delivery::into_outbox_entry).collect();
                let quarantined: Vec<(OutboxEntry, String)> =
                    quarantined.into_iter().map(|(d, why)| (d.into_outbox_entry(), why)).collect();
                let inserted = self
                    .store
                    .commit_series_batch(account.id, batch.cursor_key, &cursor, &entries, &quarantined, &windows)
                    .await?;
                // Freshness counts what will be published: not a batch whose messages were
                // all published before, quarantined, or refused for a withdrawn account.
                if let Some(newest) = newest.filter(|_| inserted > 0) {
                    crate::telemetry::newest_data(batch.cursor_key, newest);
                }
            }
        }
        Ok(())
    }

    /// Anonymise, check against the schemas, and address each record.
    /// Messages that failed their schema come back separately, with the reason, to be
    /// quarantined.
    fn to_deliveries(
        &self,
        records: &[Record],
        scope: &anonymizer::ForAccount<'_>,
        counters: &Counters,
    ) -> Result<(Vec<Delivery>, Vec<Quarantined>), Unrouted> {
        let mut out = Vec::with_capacity(records.len());
        let mut quarantined = Vec::new();
        let mut check = self.schemas.batch();
        for record in records {
            let message = match scope.anonymize(record) {
                Ok(m) => m,
                Err(reason) => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%reason, "record dropped by the anonymizer");
                    continue;
                }
            };
            let stream = self.routes.stream_for(message.message_type())?.to_owned();
            let message_id = message.header.uuid.clone();
            match check.check(&message) {
                Ok(payload) => {
                    out.push(Delivery {
                        stream,
                        partition_key: scope.subject().to_owned(),
                        message: payload,
                        message_id,
                    });
                }
                Err(Refused { violation, payload }) => {
                    counters.invalid.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(message_id = %violation.message_id, error = %violation, "message failed its schema; quarantined, not published");
                    if let Some(message) = payload {
                        let delivery =
                            Delivery { stream, partition_key: scope.subject().to_owned(), message, message_id };
                        quarantined.push((delivery, violation.errors.join("; ")));
                    }
                }
            }
        }
        Ok((out, quarantined))
    }
}
