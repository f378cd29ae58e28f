//! One sync pass: for every active account, source → normalize → anonymizer → schema
//! check → (dry run: stdout | otherwise: outbox with the cursor, in one transaction).
//!
//! One person's failure never stops the others: each account runs on its own and its
//! error is logged and counted.

mod fitbit;
mod route;
mod withings;

pub use fitbit::scope_for;
pub use route::{BadStreamId, Routes, Unrouted, is_stream_id};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anonymizer::{Anonymizer, Provider, Record};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tracing::Instrument;

use crate::auth::AuthError;
use crate::clock::Clock;
use crate::config::Dataset;
use crate::config::SyncSettings;
use crate::normalize::Skipped;
use crate::schemas::Schemas;
use crate::sinks::Delivery;
use crate::sources::fitbit::{FitbitSource, SourceError};
use crate::sources::withings::{WithingsSource, WithingsSourceError};
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

/// Records read for one cursor: they enter the outbox together with the cursor.
pub(crate) struct Batch {
    /// The cursor's name in the store (`heart_rate`, `heart_rate.resting`, ...).
    pub cursor_key: &'static str,
    pub cursor: String,
    pub records: Vec<Result<Record, Skipped>>,
}

/// Why one account's sync failed.
#[derive(Debug, thiserror::Error)]
enum AccountError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Withings(#[from] WithingsSourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unrouted(#[from] Unrouted),
    #[error("the token answer did not name the Withings user")]
    NoUserId,
    #[error("cannot write the dry-run output: {0}")]
    Output(#[from] std::io::Error),
}

/// Everything a pass needs, built once per process.
pub struct Pipeline {
    pub store: Arc<SqlStore>,
    pub fitbit: FitbitSource,
    pub withings: WithingsSource,
    pub anonymizer: Anonymizer,
    pub schemas: Schemas,
    pub routes: Routes,
    pub sync: SyncSettings,
    /// "Now" for sync windows and civil days.
    pub clock: Clock,
}

impl Pipeline {
    /// Syncs every active account once.
    pub async fn run_pass(&self, output: &Output) -> Result<PassSummary, StoreError> {
        let accounts: Vec<Account> =
            self.store.accounts().await?.into_iter().filter(|a| a.status == AccountStatus::Active).collect();
        let counters = Counters::default();
        let now = self.clock.now();
        let datasets = self.sync.datasets.clone();
        futures::stream::iter(accounts.iter())
            .for_each_concurrent(ACCOUNT_CONCURRENCY, |account| {
                self.sync_counted(account, &datasets, now, output, &counters)
            })
            .await;
        Ok(counters.summary(accounts.len() as u64))
    }

    /// Syncs one account's `datasets` (the daemon's unit of scheduled work).
    pub async fn sync_one(&self, account: &Account, datasets: &[Dataset], output: &Output) -> PassSummary {
        let counters = Counters::default();
        self.sync_counted(account, datasets, self.clock.now(), output, &counters).await;
        counters.summary(1)
    }

    async fn sync_counted(
        &self,
        account: &Account,
        datasets: &[Dataset],
        now: DateTime<Utc>,
        output: &Output,
        counters: &Counters,
    ) {
        let span = tracing::info_span!("sync", provider = %account.provider, subject = tracing::field::Empty);
        async move {
            match self.sync_account(account, datasets, now, output, counters).await {
                Ok(()) => {
                    counters.synced.fetch_add(1, Ordering::Relaxed);
                }
                Err(
                    AccountError::Source(SourceError::Auth(AuthError::NeedsReconsent))
                    | AccountError::Withings(WithingsSourceError::Auth(AuthError::NeedsReconsent)),
                ) => {
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
    async fn sync_account(
        &self,
        account: &Account,
        datasets: &[Dataset],
        now: DateTime<Utc>,
        output: &Output,
        counters: &Counters,
    ) -> Result<(), AccountError> {
        let dry_run = matches!(output, Output::DryRun(_));
        let user_id = match (&account.provider_user_id, account.provider) {
            (Some(id), _) => id.clone(),
            (None, Provider::Fitbit) => {
                let id = self.fitbit.health_user_id(account).await?;
                if !dry_run {
                    self.store.set_provider_user_id(account.id, &id).await?;
                }
                id
            }
            (None, Provider::Withings) => {
                // Withings names the user only in the token answer, which the token
                // manager stores with the tokens.
                self.withings.tokens().access_token(account).await.map_err(WithingsSourceError::from)?;
                let reloaded = self.store.account(&account.name).await?;
                reloaded.and_then(|a| a.provider_user_id).ok_or(AccountError::NoUserId)?
            }
        };
        let subject = self.anonymizer.subject(account.provider, &user_id);
        tracing::Span::current().record("subject", subject.as_str());

        // Each dataset on its own: a missing scope skips that dataset, any other failure
        // is reported once the other datasets had their turn.
        let mut plan = fitbit::FitbitAccount::new(account, &user_id, now);
        let mut first_error = None;
        for &dataset in datasets {
            let read = match account.provider {
                Provider::Fitbit => self.fitbit_dataset(&mut plan, dataset).await,
                Provider::Withings => self.withings_dataset(account, &user_id, dataset, now).await,
            };
            let batches = match read {
                Ok(b) => b,
                Err(AccountError::Source(e)) if e.is_scope_insufficient() => {
                    counters.skipped_datasets.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        dataset = dataset.as_str(),
                        missing_scope = fitbit::scope_for(dataset),
                        "the person did not grant this scope; dataset skipped"
                    );
                    continue;
                }
                Err(
                    e @ (AccountError::Source(SourceError::Auth(_))
                    | AccountError::Withings(WithingsSourceError::Auth(_))),
                ) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(dataset = dataset.as_str(), error = %e, "dataset failed");
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            for batch in batches {
                self.deliver(account, &subject, batch, output, counters).await?;
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Anonymise a batch and hand it to the output: print it (dry run), or put it in the
    /// outbox together with its cursor.
    async fn deliver(
        &self,
        account: &Account,
        subject: &str,
        batch: Batch,
        output: &Output,
        counters: &Counters,
    ) -> Result<(), AccountError> {
        let mut records = Vec::with_capacity(batch.records.len());
        for r in batch.records {
            match r {
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
        let (deliveries, quarantined) = self.to_deliveries(&records, subject, counters)?;
        tracing::info!(cursor = batch.cursor_key, records = records.len(), messages = deliveries.len(), "read");
        metrics::counter!("wearbridge_records_total", "dataset" => batch.cursor_key).increment(records.len() as u64);
        counters.messages.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
        match output {
            Output::DryRun(writer) => writer.write_batch(&deliveries)?,
            Output::Outbox => {
                let entries: Vec<OutboxEntry> = deliveries.iter().map(Delivery::outbox_entry).collect();
                let quarantined: Vec<(OutboxEntry, String)> =
                    quarantined.iter().map(|(d, why)| (d.outbox_entry(), why.clone())).collect();
                self.store.commit_batch(account.id, batch.cursor_key, &batch.cursor, &entries, &quarantined).await?;
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
        subject: &str,
        counters: &Counters,
    ) -> Result<(Vec<Delivery>, Vec<Quarantined>), Unrouted> {
        let mut out = Vec::with_capacity(records.len());
        let mut quarantined = Vec::new();
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
            let delivery = Delivery { stream, partition_key: subject.to_owned(), message: value };
            if let Err(violation) = self.schemas.validate(&delivery.message) {
                counters.invalid.fetch_add(1, Ordering::Relaxed);
                tracing::error!(message_id = %violation.message_id, error = %violation, "message failed its schema; quarantined, not published");
                quarantined.push((delivery, violation.errors.join("; ")));
                continue;
            }
            out.push(delivery);
        }
        Ok((out, quarantined))
    }
}
