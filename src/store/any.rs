//! The store chosen by `store.url` at run time: `sqlite://…` or `postgres://…`.
//!
//! An enum rather than a trait object because [`Store`]'s methods return `impl Future`;
//! each method forwards to the backend.

use anonymizer::Provider;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::{
    Account, AccountStatus, Consent, Lease, OutboxEntry, Pending, PostgresStore, Removal, SqliteStore, Store,
    StoreError, TokenCipher, Tokens,
};

/// Either backend.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    /// Opens the store `url` names: `sqlite://PATH` (or a plain path) or `postgres://…`.
    pub async fn open(url: &str, cipher: TokenCipher) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(AnyStore::Postgres(PostgresStore::open(url, cipher).await?))
        } else {
            Ok(AnyStore::Sqlite(SqliteStore::open(url, cipher).await?))
        }
    }
}

macro_rules! forward {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {
        match $self {
            AnyStore::Sqlite(s) => s.$method($($arg),*).await,
            AnyStore::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store for AnyStore {
    async fn add_account(
        &self,
        name: &str,
        provider: Provider,
        refresh_token: &SecretString,
    ) -> Result<Account, StoreError> {
        forward!(self, add_account(name, provider, refresh_token))
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        forward!(self, accounts())
    }

    async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        forward!(self, account(name))
    }

    async fn remove_account(&self, name: &str) -> Result<Removal, StoreError> {
        forward!(self, remove_account(name))
    }

    async fn set_status(&self, account_id: i64, status: AccountStatus) -> Result<(), StoreError> {
        forward!(self, set_status(account_id, status))
    }

    async fn set_provider_user_id(&self, account_id: i64, user_id: &str) -> Result<(), StoreError> {
        forward!(self, set_provider_user_id(account_id, user_id))
    }

    async fn tokens(&self, account_id: i64) -> Result<Option<Tokens>, StoreError> {
        forward!(self, tokens(account_id))
    }

    async fn save_tokens(&self, account_id: i64, tokens: &Tokens) -> Result<(), StoreError> {
        forward!(self, save_tokens(account_id, tokens))
    }

    async fn cursor(&self, account_id: i64, dataset: &str) -> Result<Option<String>, StoreError> {
        forward!(self, cursor(account_id, dataset))
    }

    async fn quarantined_len(&self) -> Result<u64, StoreError> {
        forward!(self, quarantined_len())
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        forward!(self, outbox_len())
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<Pending>, StoreError> {
        forward!(self, outbox_pending(limit))
    }

    async fn outbox_claim(&self, lease: &Lease, limit: u32) -> Result<Vec<Pending>, StoreError> {
        forward!(self, outbox_claim(lease, limit))
    }

    async fn claim_accounts(&self, lease: &Lease, datasets: &[&str], limit: u32) -> Result<Vec<Account>, StoreError> {
        forward!(self, claim_accounts(lease, datasets, limit))
    }

    async fn schedule(&self, account_id: i64) -> Result<Vec<(String, i64)>, StoreError> {
        forward!(self, schedule(account_id))
    }

    async fn outbox_oldest(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        forward!(self, outbox_oldest())
    }

    async fn renew_account_lease(&self, lease: &Lease, account_id: i64) -> Result<bool, StoreError> {
        forward!(self, renew_account_lease(lease, account_id))
    }

    async fn release_worker(&self, worker: &str) -> Result<(), StoreError> {
        forward!(self, release_worker(worker))
    }

    async fn outbox_release(&self, worker: &str) -> Result<(), StoreError> {
        forward!(self, outbox_release(worker))
    }

    async fn record_consent(&self, account_id: i64, consent: &Consent) -> Result<(), StoreError> {
        forward!(self, record_consent(account_id, consent))
    }

    async fn consent(&self, account_id: i64) -> Result<Option<Consent>, StoreError> {
        forward!(self, consent(account_id))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        forward!(self, ping())
    }

    async fn outbox_ack(&self, seqs: &[i64]) -> Result<(), StoreError> {
        forward!(self, outbox_ack(seqs))
    }

    async fn prune_published(&self, retention: std::time::Duration) -> Result<u64, StoreError> {
        forward!(self, prune_published(retention))
    }

    async fn outbox_attempt_failed(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        forward!(self, outbox_attempt_failed(seq, error))
    }

    async fn outbox_quarantine(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        forward!(self, outbox_quarantine(seq, error))
    }

    async fn commit_batch(
        &self,
        account_id: i64,
        dataset: &str,
        cursor: &str,
        entries: &[OutboxEntry],
        quarantined: &[(OutboxEntry, String)],
    ) -> Result<u64, StoreError> {
        forward!(self, commit_batch(account_id, dataset, cursor, entries, quarantined))
    }

    async fn release_account(
        &self,
        worker: &str,
        account_id: i64,
        next_due: &[(String, i64)],
    ) -> Result<(), StoreError> {
        forward!(self, release_account(worker, account_id, next_due))
    }
}
