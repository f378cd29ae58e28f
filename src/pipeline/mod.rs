//! One sync pass: for every active account, source → normalize → anonymizer → schema
//! check → (dry run: stdout | otherwise: outbox with the cursor, in one transaction).
//!
//! One person's failure never stops the others: each account runs on its own and its
//! error is logged and counted.

mod route;

pub use route::{BadStreamId, Routes, Unrouted, is_stream_id};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anonymizer::{Anonymizer, Provider, Record};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::StreamExt;
use tracing::Instrument;

use crate::config::{Dataset, SyncSettings};
use crate::schemas::Schemas;
use crate::sinks::Delivery;
use crate::sources::fitbit::{FitbitSource, SourceError};
use crate::store::{Account, AccountStatus, OutboxEntry, Store, StoreError};
use crate::{auth::AuthError, normalize};

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
}

/// Why one account's sync failed.
#[derive(Debug, thiserror::Error)]
enum AccountError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unrouted(#[from] Unrouted),
    #[error("cannot write the dry-run output: {0}")]
    Output(#[from] std::io::Error),
    #[error("the {0} source is not available in this build yet")]
    Unsupported(Provider),
}

/// Everything a pass needs, built once per process.
pub struct Pipeline<S> {
    pub store: Arc<S>,
    pub fitbit: FitbitSource<S>,
    pub anonymizer: Anonymizer,
    pub schemas: Schemas,
    pub routes: Routes,
    pub sync: SyncSettings,
}

impl<S: Store> Pipeline<S> {
    /// Syncs every active account once.
    pub async fn run_pass(&self, output: &Output) -> Result<PassSummary, StoreError> {
        let accounts: Vec<Account> =
            self.store.accounts().await?.into_iter().filter(|a| a.status == AccountStatus::Active).collect();
        let counters = Counters::default();
        let now = Utc::now();
        futures::stream::iter(accounts.iter())
            .for_each_concurrent(ACCOUNT_CONCURRENCY, |account| {
                let span = tracing::info_span!("sync", provider = %account.provider, subject = tracing::field::Empty);
                let counters = &counters;
                async move {
                    match self.sync_account(account, now, output, counters).await {
                        Ok(()) => {
                            counters.synced.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(AccountError::Source(SourceError::Auth(AuthError::NeedsReconsent))) => {
                            counters.needs_reconsent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, "account sync failed; other accounts continue");
                        }
                    }
                }
                .instrument(span)
            })
            .await;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Ok(PassSummary {
            accounts: accounts.len() as u64,
            synced: get(&counters.synced),
            failed: get(&counters.failed),
            needs_reconsent: get(&counters.needs_reconsent),
            messages: get(&counters.messages),
            skipped_points: get(&counters.skipped_points),
            dropped: get(&counters.dropped),
            invalid: get(&counters.invalid),
        })
    }

    async fn sync_account(
        &self,
        account: &Account,
        now: DateTime<Utc>,
        output: &Output,
        counters: &Counters,
    ) -> Result<(), AccountError> {
        if account.provider != Provider::Fitbit {
            return Err(AccountError::Unsupported(account.provider));
        }
        let dry_run = matches!(output, Output::DryRun(_));
        let user_id = match &account.provider_user_id {
            Some(id) => id.clone(),
            None => {
                let id = self.fitbit.health_user_id(account).await?;
                if !dry_run {
                    self.store.set_provider_user_id(account.id, &id).await?;
                }
                id
            }
        };
        let subject = self.anonymizer.subject(account.provider, &user_id);
        tracing::Span::current().record("subject", subject.as_str());

        if self.sync.datasets.contains(&Dataset::HeartRate) {
            self.sync_heart_rate(account, &user_id, &subject, now, output, counters).await?;
        }
        Ok(())
    }

    /// Where a dataset's next read starts: the cursor minus the look-back, or
    /// `sync.start` for a first backfill.
    async fn window_start(
        &self,
        account: &Account,
        dataset: Dataset,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let start = self.sync.start.resolve(now);
        let cursor = self.store.cursor(account.id, dataset.as_str()).await?;
        let lookback = TimeDelta::from_std(self.sync.lookback).unwrap_or(TimeDelta::zero());
        Ok(match cursor.and_then(|c| DateTime::parse_from_rfc3339(&c).ok()) {
            Some(c) => (c.with_timezone(&Utc) - lookback).max(start),
            None => start,
        })
    }

    async fn sync_heart_rate(
        &self,
        account: &Account,
        user_id: &str,
        subject: &str,
        now: DateTime<Utc>,
        output: &Output,
        counters: &Counters,
    ) -> Result<(), AccountError> {
        let from = self.window_start(account, Dataset::HeartRate, now).await?;
        let points = self.fitbit.heart_rate(account, from, now).await?;
        let mut records = Vec::with_capacity(points.len());
        for point in &points {
            match normalize::fitbit::heart_rate(user_id, point) {
                Ok(r) => records.push(r),
                Err(skipped) => {
                    counters.skipped_points.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(dataset = "heart_rate", reason = skipped.reason, "skipped a data point");
                }
            }
        }
        let deliveries = self.to_deliveries(&records, subject, counters)?;
        tracing::info!(dataset = "heart_rate", points = points.len(), messages = deliveries.len(), "read");
        counters.messages.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
        match output {
            Output::DryRun(writer) => writer.write_batch(&deliveries)?,
            Output::Outbox => {
                let entries: Vec<OutboxEntry> = deliveries
                    .iter()
                    .map(|d| OutboxEntry {
                        message_id: d
                            .message
                            .pointer("/header/uuid")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        stream: d.stream.clone(),
                        partition_key: d.partition_key.clone(),
                        payload: d.message.to_string(),
                    })
                    .collect();
                let cursor = now.to_rfc3339_opts(SecondsFormat::Secs, true);
                self.store.commit_batch(account.id, Dataset::HeartRate.as_str(), &cursor, &entries).await?;
            }
        }
        Ok(())
    }

    /// Anonymise, check against the schemas, and address each record.
    fn to_deliveries(&self, records: &[Record], subject: &str, counters: &Counters) -> Result<Vec<Delivery>, Unrouted> {
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let message = match self.anonymizer.anonymize(record) {
                Ok(m) => m,
                Err(reason) => {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%reason, "record dropped by the anonymizer");
                    continue;
                }
            };
            let stream = self.routes.stream_for(message.message_type())?.to_owned();
            let value = match serde_json::to_value(&message) {
                Ok(v) => v,
                Err(e) => {
                    counters.invalid.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(message_id = %message.header.uuid, error = %e, "message could not be serialised");
                    continue;
                }
            };
            if let Err(violation) = self.schemas.validate(&value) {
                counters.invalid.fetch_add(1, Ordering::Relaxed);
                tracing::error!(message_id = %violation.message_id, error = %violation, "message failed its schema; not published");
                continue;
            }
            out.push(Delivery { stream, partition_key: subject.to_owned(), message: value });
        }
        Ok(out)
    }
}
