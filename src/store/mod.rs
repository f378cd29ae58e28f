//! Durable state: accounts, encrypted tokens, sync cursors and the outbox.
//!
//! One implementation, [`SqlStore`], on the embedded SQLite default or a PostgreSQL server
//! for many workers, with the statements written once (`sql.rs`). The one transaction that matters is
//! [`Store::commit_batch`]: records enter the outbox together with the cursor that
//! covers them, so a crash at any instant loses nothing.

mod cipher;
mod migrations;
mod sql;

pub use cipher::TokenCipher;
pub use migrations::MigrationError;
pub use sql::SqlStore;

use std::future::Future;

use anonymizer::Provider;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migration(#[from] MigrationError),
    #[error("{0}")]
    Crypto(String),
    #[error("{0} is already enrolled")]
    AccountExists(String),
    #[error("this upstream account is already enrolled for {person}; remove one of them (users remove)")]
    AlreadyEnrolled { person: String },
    #[error("no account named {0:?}")]
    NoSuchAccount(String),
    #[error("no scale named {0:?} (wearbridge scales list)")]
    NoSuchScale(String),
    #[error("a scale named {0:?}, or one with that MAC address, is already enrolled")]
    ScaleExists(String),
    #[error("invalid account name {0:?}: use 1 to 64 letters, digits, '.', '-' or '_'")]
    BadAccountName(String),
    #[error("store.url: {0}")]
    BadUrl(String),
    #[error("the store holds an unexpected value in {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
}

/// Lifecycle of an enrolled account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    /// The provider refused our refresh token (`invalid_grant`): the person must consent again.
    NeedsReconsent,
    /// Withdrawn: tokens, cursors and unpublished messages are gone.
    Removed,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::NeedsReconsent => "needs_reconsent",
            AccountStatus::Removed => "removed",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(AccountStatus::Active),
            "needs_reconsent" => Ok(AccountStatus::NeedsReconsent),
            "removed" => Ok(AccountStatus::Removed),
            other => Err(StoreError::Corrupt { column: "accounts.status", value: other.into() }),
        }
    }
}

/// A stored provider name: one this build has a source for.
fn parse_provider(s: &str) -> Result<Provider, StoreError> {
    crate::sources::registry::provider(s)
        .ok_or_else(|| StoreError::Corrupt { column: "accounts.provider", value: s.into() })
}

/// Checks an operator-chosen account name (it appears in logs about consent).
pub fn validate_account_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok { Ok(()) } else { Err(StoreError::BadAccountName(name.to_owned())) }
}

/// An enrolled account.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: i64,
    /// The store's name for the account: the person's name for their first account,
    /// `<person>/<provider>` for another provider's.
    pub name: String,
    /// The person (operator-chosen name) whose account this is.
    pub person: String,
    pub provider: Provider,
    pub status: AccountStatus,
    /// The provider's user id, learned on first sync. Personal data: never log it.
    pub provider_user_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// OAuth tokens of one account, decrypted.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub refresh_token: SecretString,
    pub access_token: Option<SecretString>,
    pub access_expires_at: Option<DateTime<Utc>>,
}

/// One message on its way to a sink.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub message_id: String,
    pub stream: String,
    pub partition_key: String,
    /// The message as JSON text, exactly as it will be published.
    pub payload: String,
}

/// A message waiting in the outbox, in publication order (`seq`).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub seq: i64,
    pub entry: OutboxEntry,
    pub attempts: i64,
}

/// A recorded consent.
#[derive(Debug, Clone, PartialEq)]
pub struct Consent {
    pub provider: Provider,
    /// The scopes the provider says were granted, space-separated.
    pub scopes: String,
    pub granted_at: DateTime<Utc>,
    /// SHA-256 (hex) of the account's leave secret.
    pub leave_hash: String,
}

/// What `remove_account` deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Removal {
    pub dropped_messages: u64,
}

/// A published window of a series: its key (`heart-rate-series/<start>`), the revision
/// last published and a digest of the samples it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesWindow {
    pub key: String,
    pub revision: u32,
    pub digest: String,
}

/// An enrolled scale as an upload finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleRef {
    pub id: i64,
    pub name: String,
    /// The correction (seconds) its clock currently gets.
    pub correction_s: i64,
}

/// An enrolled Wi-Fi scale (its MAC address is known only as a keyed hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub name: String,
    /// `aria` or `wbs01`.
    pub kind: String,
    /// Its assigned user slots: (slot, person).
    pub slots: Vec<(i64, String)>,
}

/// One dataset's row of an account's schedule (times in Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub dataset: String,
    pub next_due: i64,
    /// When the latest notification not yet served by a sync arrived.
    pub pushed_at: Option<i64>,
    /// The earliest instant those notifications said changed.
    pub push_from: Option<i64>,
}

/// A worker's claim: who, and until when (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub worker: String,
    pub now_ms: i64,
    pub until_ms: i64,
}

impl Lease {
    /// A lease for `worker` lasting `length` from `now`.
    pub fn new(worker: &str, length: std::time::Duration, now: DateTime<Utc>) -> Self {
        let now_ms = now.timestamp_millis();
        Self {
            worker: worker.to_owned(),
            now_ms,
            until_ms: now_ms + i64::try_from(length.as_millis()).unwrap_or(i64::MAX / 2),
        }
    }
}

/// The storage contract shared by SQLite and PostgreSQL.
pub trait Store: Send + Sync + 'static {
    /// Enrols `person`'s account with `provider` with its refresh token (encrypted),
    /// status `active`; the person is created when new (with a random subject basis). A
    /// person has one live account per provider; a removed one is re-enrolled.
    fn add_account(
        &self,
        person: &str,
        provider: Provider,
        refresh_token: &SecretString,
    ) -> impl Future<Output = Result<Account, StoreError>> + Send;

    /// All accounts, removed ones included, by name.
    fn accounts(&self) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send;

    fn account(&self, name: &str) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;

    /// Withdraws an account: deletes tokens, cursors, schedule, consent and unpublished
    /// messages, keeps the row as `removed`.
    fn remove_account(&self, name: &str) -> impl Future<Output = Result<Removal, StoreError>> + Send;

    fn set_status(&self, account_id: i64, status: AccountStatus)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records the provider's user id (encrypted, with a keyed hash to find duplicates).
    /// [`StoreError::AlreadyEnrolled`] when another live account has the same upstream
    /// account.
    fn set_provider_user_id(
        &self,
        account_id: i64,
        user_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The person's subject basis; `None` for a person migrated from a single account
    /// (whose published subjects stay per account) or an unknown name.
    fn subject_id(&self, person: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    fn tokens(&self, account_id: i64) -> impl Future<Output = Result<Option<Tokens>, StoreError>> + Send;

    /// Replaces the stored tokens (durably, before the caller uses the new access token).
    fn save_tokens(&self, account_id: i64, tokens: &Tokens) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn cursor(&self, account_id: i64, dataset: &str)
    -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// In one transaction: adds `entries` to the outbox (ignoring ids already there),
    /// keeps `quarantined` messages (failed their schema) with their error, never to be
    /// published, and moves the cursor. Returns how many entries were new.
    fn commit_batch(
        &self,
        account_id: i64,
        dataset: &str,
        cursor: &str,
        entries: &[OutboxEntry],
        quarantined: &[(OutboxEntry, String)],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.commit_series_batch(account_id, dataset, cursor, entries, quarantined, &[])
    }

    /// [`Store::commit_batch`], also recording the series windows the entries publish
    /// (their revision and digest) in the same transaction: a crash never leaves a window
    /// published without its record, or recorded without its message.
    fn commit_series_batch(
        &self,
        account_id: i64,
        dataset: &str,
        cursor: &str,
        entries: &[OutboxEntry],
        quarantined: &[(OutboxEntry, String)],
        windows: &[SeriesWindow],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The recorded windows among `keys` of an account's series.
    fn series_windows(
        &self,
        account_id: i64,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<SeriesWindow>, StoreError>> + Send;

    /// Number of quarantined messages.
    fn quarantined_len(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Number of messages waiting in the outbox.
    fn outbox_len(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Up to `limit` pending messages, oldest first (leased or not; for inspection).
    fn outbox_pending(&self, limit: u32) -> impl Future<Output = Result<Vec<Pending>, StoreError>> + Send;

    /// Leases up to `limit` pending messages, oldest first, that no other worker holds
    /// an unexpired lease on, to `lease.worker` until `lease.until_ms`. Messages already
    /// leased to the same worker are included (a retry). (SQLite, one worker per file,
    /// records leases but does not honour them: a killed process never holds work back.)
    fn outbox_claim(&self, lease: &Lease, limit: u32) -> impl Future<Output = Result<Vec<Pending>, StoreError>> + Send;

    /// Leases up to `limit` active accounts of `providers` that no worker holds (an
    /// account this worker is syncing is never returned again) and that have at least one
    /// of `datasets` due (no schedule row, or `next_due` passed), longest due first.
    /// SQLite does not honour other workers' leases (one worker per file).
    fn claim_accounts(
        &self,
        lease: &Lease,
        datasets: &[&str],
        providers: &[&str],
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send;

    /// Extends `lease.worker`'s lease on an account to `lease.until_ms`; false when the
    /// worker no longer holds it.
    fn renew_account_lease(
        &self,
        lease: &Lease,
        account_id: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives up every lease `worker` holds (accounts and outbox), at shutdown.
    fn release_worker(&self, worker: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// When each dataset of an account is due next, and what notifications said of it;
    /// absent datasets are due.
    fn schedule(&self, account_id: i64) -> impl Future<Output = Result<Vec<Scheduled>, StoreError>> + Send;

    /// Sets the next due times of an account's datasets and gives its lease up (only if
    /// `worker` still holds it). `served`: the schedule rows the sync read when it began,
    /// whose notification notes it served (they are cleared); a dataset notified of since
    /// (a newer note than the one read) keeps its earlier due time and its note, so the
    /// change it announced is read by another sync. `None` (a failed sync): every note
    /// stays for the retry.
    fn release_account(
        &self,
        worker: &str,
        account_id: i64,
        next_due: &[(String, i64)],
        served: Option<&[Scheduled]>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A provider's notification that upstream user `user_id`'s `datasets` changed (from
    /// `from_ms` on, when it says): those datasets of the active account become due at
    /// `due_ms` unless due sooner (so repeated notifications are one sync), with the note's
    /// time and the earliest changed instant kept for the sync. `None`: no active account
    /// of that upstream user (nothing is written).
    fn note_push(
        &self,
        provider: Provider,
        user_id: &str,
        datasets: &[&str],
        due_ms: i64,
        from_ms: Option<i64>,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Records a deletion upstream told of (published messages cannot be recalled; the
    /// record tells the operator what and when). `None`: unknown upstream user.
    fn note_push_deletion(
        &self,
        provider: Provider,
        user_id: &str,
        dataset: &str,
        interval: (Option<i64>, Option<i64>),
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// How many deletions upstream told of for an account.
    fn push_deletions(&self, account_id: i64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Enrols a Wi-Fi scale of `kind` (`aria`, `wbs01`) as `name`; it is known by a keyed
    /// hash of its kind and `mac` (normalised `aa:bb:…`), never by the address itself.
    fn add_scale(&self, name: &str, kind: &str, mac: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The enrolled scale of `kind` with `mac`.
    fn scale_by_mac(&self, kind: &str, mac: &str) -> impl Future<Output = Result<Option<ScaleRef>, StoreError>> + Send;

    /// Whether `auth` is the scale's auth code: pinned (as a keyed hash) at the first
    /// upload, compared after.
    fn check_scale_auth(&self, scale_id: i64, auth: &[u8]) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Keeps the correction (seconds) a scale's clock gets.
    fn set_scale_correction(&self, scale_id: i64, seconds: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Assigns a scale's user slot to `person`, enrolling the person's `local` account
    /// (which owns the captured readings) when they have none; returns that account.
    fn assign_scale_slot(
        &self,
        scale: &str,
        slot: i64,
        person: &str,
    ) -> impl Future<Output = Result<Account, StoreError>> + Send;

    /// A scale's assigned slots: (slot, person).
    fn scale_slots(&self, scale_id: i64) -> impl Future<Output = Result<Vec<(i64, String)>, StoreError>> + Send;

    /// The last weight (g) captured for each slot of a scale, by slot.
    fn scale_weights(&self, scale_id: i64) -> impl Future<Output = Result<Vec<(i64, i64)>, StoreError>> + Send;

    /// Records the last weight (g) captured for a slot.
    fn set_scale_weight(
        &self,
        scale_id: i64,
        slot: i64,
        grams: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every scale, by name.
    fn scales(&self) -> impl Future<Output = Result<Vec<Scale>, StoreError>> + Send;

    /// Forgets a scale and its slots (the people's `local` accounts stay until `users remove`).
    fn remove_scale(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// When the account's provider-side notification subscriptions were last checked.
    fn push_checked_at(&self, account_id: i64) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Records that check (`None`: check again at the next sync).
    fn set_push_checked(
        &self,
        account_id: i64,
        at_ms: Option<i64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// When the longest-waiting due work of an active account fell due, over `datasets`:
    /// the earliest scheduled time, or the enrolment of an account with a dataset never
    /// synced, whichever is older (for the schedule-lag metric; it may lie in the future).
    fn oldest_due(&self, datasets: &[&str]) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Pending messages, counted up to `limit` only: what the high-water check needs,
    /// at a cost bounded by the mark rather than by the outbox.
    fn outbox_len_up_to(&self, limit: u64) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The creation time of the oldest pending message (for the outbox-age metric).
    fn outbox_oldest(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>, StoreError>> + Send;

    /// Extends `lease.worker`'s lease on the pending messages `seqs` to `lease.until_ms`,
    /// so a batch that is slow to send (a slow node, retries) is not taken over mid-send;
    /// the seqs still held (a message taken over by another worker, or gone, is missing).
    fn outbox_renew(&self, lease: &Lease, seqs: &[i64]) -> impl Future<Output = Result<Vec<i64>, StoreError>> + Send;

    /// Gives up `worker`'s outbox leases (at the end of a drain), so what it could not
    /// deliver is free for any worker at once rather than when the leases expire.
    fn outbox_release(&self, worker: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records (or replaces) what the person agreed to when they connected.
    fn record_consent(&self, account_id: i64, consent: &Consent)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    fn consent(&self, account_id: i64) -> impl Future<Output = Result<Option<Consent>, StoreError>> + Send;

    /// Whether the database answers (for readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the database takes a write now: a committed no-op update, which fails on
    /// a full disk, a read-only file system or replica, or a lock another process holds.
    fn probe_write(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves confirmed messages out of the outbox, remembering their ids so a re-read of
    /// the same upstream data does not publish them again.
    fn outbox_ack(&self, seqs: &[i64]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets published ids older than `older_than` (beyond any look-back).
    fn prune_published(&self, retention: std::time::Duration) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Records a failed attempt (the message stays pending).
    fn outbox_attempt_failed(&self, seq: i64, error: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves a message the sink refused for good to quarantine, with the sink's reason.
    fn outbox_quarantine(&self, seq: i64, error: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}
