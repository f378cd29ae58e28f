//! Durable state: accounts, encrypted tokens, sync cursors and the outbox.
//!
//! Behind the small [`Store`] trait so the embedded SQLite default and a PostgreSQL
//! backend for many workers share one contract. The one transaction that matters is
//! [`Store::commit_batch`]: records enter the outbox together with the cursor that
//! covers them, so a crash at any instant loses nothing.

mod cipher;
mod migrations;
mod sqlite;

pub use cipher::TokenCipher;
pub use migrations::MigrationError;
pub use sqlite::SqliteStore;

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
    #[error("an account named {0:?} already exists")]
    AccountExists(String),
    #[error("no account named {0:?}")]
    NoSuchAccount(String),
    #[error("invalid account name {0:?}: use 1 to 64 letters, digits, '.', '-' or '_'")]
    BadAccountName(String),
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

fn parse_provider(s: &str) -> Result<Provider, StoreError> {
    match s {
        "fitbit" => Ok(Provider::Fitbit),
        "withings" => Ok(Provider::Withings),
        other => Err(StoreError::Corrupt { column: "accounts.provider", value: other.into() }),
    }
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
    /// The operator's local name for the account (not the provider's id).
    pub name: String,
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

/// What `remove_account` deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Removal {
    pub dropped_messages: u64,
}

/// The storage contract shared by SQLite and (later) PostgreSQL.
pub trait Store: Send + Sync + 'static {
    /// Enrols an account with its refresh token (encrypted), status `active`. A removed
    /// account of the same name is re-enrolled.
    fn add_account(
        &self,
        name: &str,
        provider: Provider,
        refresh_token: &SecretString,
    ) -> impl Future<Output = Result<Account, StoreError>> + Send;

    /// All accounts, removed ones included, by name.
    fn accounts(&self) -> impl Future<Output = Result<Vec<Account>, StoreError>> + Send;

    fn account(&self, name: &str) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;

    /// Withdraws an account: deletes tokens, cursors and unpublished messages, keeps the
    /// row as `removed`.
    fn remove_account(&self, name: &str) -> impl Future<Output = Result<Removal, StoreError>> + Send;

    fn set_status(&self, account_id: i64, status: AccountStatus)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    fn set_provider_user_id(
        &self,
        account_id: i64,
        user_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

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
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Number of quarantined messages.
    fn quarantined_len(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Number of messages waiting in the outbox.
    fn outbox_len(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Up to `limit` pending messages, oldest first.
    fn outbox_pending(&self, limit: u32) -> impl Future<Output = Result<Vec<Pending>, StoreError>> + Send;

    /// Moves confirmed messages out of the outbox, remembering their ids so a re-read of
    /// the same upstream data does not publish them again.
    fn outbox_ack(&self, seqs: &[i64]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets published ids older than `older_than` (beyond any look-back).
    fn prune_published(&self, older_than: DateTime<Utc>) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Records a failed attempt (the message stays pending).
    fn outbox_attempt_failed(&self, seq: i64, error: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves a message the sink refused for good to quarantine, with the sink's reason.
    fn outbox_quarantine(&self, seq: i64, error: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}
