//! The one store, on the embedded SQLite file or a PostgreSQL server.
//!
//! Every statement is written once, with `$N` placeholders (sqlx's SQLite driver maps
//! `$N` to the N-th argument), and run on whichever pool `store.url` opened; times are
//! bound from the store's clock rather than taken from the database, so both backends
//! stamp alike. The few statements that truly differ live in [`Dialect`]: PostgreSQL
//! locks rows (`FOR UPDATE`, claims with `FOR UPDATE SKIP LOCKED`, so several workers
//! share one database and a killed worker's leases are taken over when they expire) and
//! reads JSON lists with its own functions; SQLite serves one worker per file and records
//! leases without honouring them, so a killed process never holds work back.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anonymizer::Provider;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};

use super::migrations::{self, POSTGRES, SQLITE};
use super::{
    Account, AccountStatus, Consent, Lease, OutboxEntry, Pending, Removal, Scale, ScaleRef, Scheduled, SeriesWindow,
    Store, StoreError, TokenCipher, Tokens, parse_provider, validate_account_name,
};
use crate::clock::Clock;

const REFRESH: &str = "refresh_token";
const ACCESS: &str = "access_token";
const USER_ID: &str = "provider_user_id";
/// The columns an [`Account`] is read from.
macro_rules! account_columns {
    () => {
        "id, name, person, provider, status, provider_user_id, created_at"
    };
}

/// SQLite reader connections (WAL readers do not block the writer or each other).
const READERS: u32 = 4;
/// How long a write may queue for the SQLite writer connection before it is an error.
const WRITE_QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

/// The store named by `store.url`.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: Pool,
    cipher: TokenCipher,
    /// Stamps every time the store writes and ages the published ids.
    clock: Clock,
}

#[derive(Debug, Clone)]
enum Pool {
    /// Reads use `read`; every write goes through the single connection of `write`, so
    /// the process's writers queue in the pool (in order, without holding a connection)
    /// instead of sleeping in SQLite's busy handler against each other, and a write
    /// transaction begins `IMMEDIATE`, so a writer in another process (the CLI beside a
    /// daemon) waits out its busy timeout instead of failing on a stale snapshot.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// The statements whose text differs by backend; everything else is shared.
struct Dialect {
    /// Begins a transaction that will write: `BEGIN IMMEDIATE` takes SQLite's write lock
    /// up front (waiting its busy timeout), so no statement in it can fail on a snapshot
    /// another writer made stale.
    begin: &'static str,
    /// Locks the row read for the rest of the transaction (PostgreSQL), or nothing
    /// (SQLite: one writer at a time anyway).
    lock_account_by_name: &'static str,
    /// `$1` person, `$2` provider: the person's account with that provider (a live one
    /// first, else a removed one to enrol afresh), locked.
    lock_person_account: &'static str,
    /// Inserts a JSON list of `{id, stream, key, payload}` into the outbox, in order,
    /// skipping published ids: `$1` account, `$2` list, `$3` time.
    insert_outbox: &'static str,
    /// Remembers the outbox messages whose `seq` is in the JSON list `$1` as published at `$2`.
    publish_acked: &'static str,
    /// Deletes the outbox messages whose `seq` is in the JSON list `$1`.
    delete_acked: &'static str,
    /// `$1` worker, `$2` lease until, `$3` now, `$4` limit.
    claim_outbox: &'static str,
    /// `$1` worker, `$2` lease until, `$3` JSON list of seqs; returns the renewed seqs.
    renew_outbox: &'static str,
    /// `$1` worker, `$2` lease until, `$3` now, `$4` JSON list of datasets, `$5` limit.
    /// Oldest due first (a dataset never synced counts as due since forever), so a
    /// new enrolment or a starved account is not left behind the ones that keep coming due.
    claim_accounts: &'static str,
    series_windows: &'static str,
    /// `$1` JSON list of datasets: the earliest `next_due` of active accounts.
    earliest_scheduled: &'static str,
    /// `$1` JSON list of datasets: the earliest enrolment of an active account with one
    /// of them never scheduled.
    earliest_unscheduled: &'static str,
}

const SQLITE_DIALECT: Dialect = Dialect {
    begin: "BEGIN IMMEDIATE",
    lock_account_by_name: "SELECT id, status FROM accounts WHERE name = $1",
    lock_person_account: "SELECT id, status FROM accounts WHERE person = $1 AND provider = $2
         ORDER BY status = 'removed', id LIMIT 1",
    insert_outbox: "INSERT INTO outbox (message_id, account_id, stream, partition_key, payload, created_at)
         SELECT json_extract(m.value, '$.id'), $1, json_extract(m.value, '$.stream'),
                json_extract(m.value, '$.key'), json_extract(m.value, '$.payload'), $3
         FROM json_each($2) AS m
         WHERE NOT EXISTS (SELECT 1 FROM published p WHERE p.message_id = json_extract(m.value, '$.id'))
         ORDER BY m.key
         ON CONFLICT (message_id) DO NOTHING",
    publish_acked: "INSERT INTO published (message_id, published_at)
         SELECT message_id, $2 FROM outbox WHERE seq IN (SELECT value FROM json_each($1))
         ON CONFLICT (message_id) DO NOTHING",
    delete_acked: "DELETE FROM outbox WHERE seq IN (SELECT value FROM json_each($1))",
    renew_outbox: "UPDATE outbox SET lease_until = $2
         WHERE lease_owner = $1 AND status = 'pending' AND seq IN (SELECT value FROM json_each($3))
         RETURNING seq",
    // Other workers' leases are recorded, not honoured (one worker per file, so a killed
    // worker's leases do not hold its restart up); this worker's own are, so an account
    // it is syncing is not claimed twice.
    claim_outbox: "UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE seq IN (
             SELECT seq FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT $4)
         RETURNING seq, message_id, stream, partition_key, payload, attempts",
    claim_accounts: "UPDATE accounts SET lease_owner = $1, lease_until = $2 WHERE id IN (
             SELECT id FROM (
                 SELECT a.id,
                        (SELECT MIN(COALESCE(s.next_due, 0)) FROM json_each($4) d
                         LEFT JOIN schedule s ON s.account_id = a.id AND s.dataset = d.value) AS due
                 FROM accounts a
                 WHERE a.status = 'active' AND a.provider IN (SELECT value FROM json_each($6))
                   AND (a.lease_owner IS NULL OR a.lease_owner <> $1 OR a.lease_until < $3))
             WHERE due <= $3
             ORDER BY due, id LIMIT $5)
         RETURNING id, name, person, provider, status, provider_user_id, created_at",
    series_windows: "SELECT series_key, revision, digest FROM series_windows
         WHERE account_id = $1 AND series_key IN (SELECT value FROM json_each($2))",
    earliest_scheduled: "SELECT MIN(s.next_due) AS due FROM schedule s JOIN accounts a ON a.id = s.account_id
         WHERE a.status = 'active' AND s.dataset IN (SELECT value FROM json_each($1))",
    earliest_unscheduled: "SELECT created_at FROM accounts a WHERE a.status = 'active'
           AND EXISTS (SELECT 1 FROM json_each($1) d WHERE NOT EXISTS
                       (SELECT 1 FROM schedule s WHERE s.account_id = a.id AND s.dataset = d.value))
         ORDER BY a.created_at, a.id LIMIT 1",
};

const POSTGRES_DIALECT: Dialect = Dialect {
    begin: "BEGIN",
    lock_account_by_name: "SELECT id, status FROM accounts WHERE name = $1 FOR UPDATE",
    lock_person_account: "SELECT id, status FROM accounts WHERE person = $1 AND provider = $2
         ORDER BY status = 'removed', id LIMIT 1 FOR UPDATE",
    insert_outbox: "INSERT INTO outbox (message_id, account_id, stream, partition_key, payload, created_at)
         SELECT m.v->>'id', $1, m.v->>'stream', m.v->>'key', m.v->>'payload', $3
         FROM json_array_elements($2::json) WITH ORDINALITY AS m(v, ord)
         WHERE NOT EXISTS (SELECT 1 FROM published p WHERE p.message_id = m.v->>'id')
         ORDER BY m.ord
         ON CONFLICT (message_id) DO NOTHING",
    publish_acked: "INSERT INTO published (message_id, published_at)
         SELECT message_id, $2 FROM outbox WHERE seq IN (SELECT value::bigint FROM json_array_elements_text($1::json))
         ON CONFLICT (message_id) DO NOTHING",
    delete_acked: "DELETE FROM outbox WHERE seq IN (SELECT value::bigint FROM json_array_elements_text($1::json))",
    renew_outbox: "UPDATE outbox SET lease_until = $2
         WHERE lease_owner = $1 AND status = 'pending'
           AND seq IN (SELECT value::bigint FROM json_array_elements_text($3::json))
         RETURNING seq",
    claim_outbox: "WITH claimable AS (
             SELECT seq FROM outbox
             WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < $3 OR lease_owner = $1)
             ORDER BY seq LIMIT $4
             FOR UPDATE SKIP LOCKED)
         UPDATE outbox o SET lease_owner = $1, lease_until = $2 FROM claimable c WHERE o.seq = c.seq
         RETURNING o.seq, o.message_id, o.stream, o.partition_key, o.payload, o.attempts",
    claim_accounts: "WITH claimable AS (
             SELECT a.id FROM accounts a
             CROSS JOIN LATERAL (
                 SELECT MIN(COALESCE(s.next_due, 0)) AS due
                 FROM json_array_elements_text($4::json) AS d(name)
                 LEFT JOIN schedule s ON s.account_id = a.id AND s.dataset = d.name) AS oldest
             WHERE a.status = 'active' AND (a.lease_until IS NULL OR a.lease_until < $3)
               AND a.provider IN (SELECT json_array_elements_text($6::json))
               AND oldest.due <= $3
             ORDER BY oldest.due, a.id LIMIT $5
             FOR UPDATE OF a SKIP LOCKED)
         UPDATE accounts SET lease_owner = $1, lease_until = $2 FROM claimable c WHERE accounts.id = c.id
         RETURNING accounts.id, accounts.name, accounts.person, accounts.provider, accounts.status,
                   accounts.provider_user_id, accounts.created_at",
    series_windows: "SELECT series_key, revision, digest FROM series_windows
         WHERE account_id = $1 AND series_key IN (SELECT json_array_elements_text($2::json))",
    earliest_scheduled: "SELECT MIN(s.next_due) AS due FROM schedule s JOIN accounts a ON a.id = s.account_id
         WHERE a.status = 'active' AND s.dataset IN (SELECT json_array_elements_text($1::json))",
    earliest_unscheduled: "SELECT created_at FROM accounts a WHERE a.status = 'active'
           AND EXISTS (SELECT 1 FROM json_array_elements_text($1::json) AS d(name) WHERE NOT EXISTS
                       (SELECT 1 FROM schedule s WHERE s.account_id = a.id AND s.dataset = d.name))
         ORDER BY a.created_at, a.id LIMIT 1",
};

/// Runs `$body` on the store's pool, whichever it is: `$pool` names the pool and `$d`
/// the backend's [`Dialect`] inside. The body is written once and compiled for each
/// backend. `on_pool!` is for reads; `on_writer!` for anything that writes (on SQLite,
/// the one writer connection).
macro_rules! on_pool {
    ($self:expr, |$pool:ident, $d:ident| $body:expr) => {
        on_pool!(@ $self, read, |$pool, $d| $body)
    };
    (@ $self:expr, $which:ident, |$pool:ident, $d:ident| $body:expr) => {
        match &$self.pool {
            Pool::Sqlite { $which: $pool, .. } => {
                let $d = &SQLITE_DIALECT;
                let _ = $d;
                $body
            }
            Pool::Postgres($pool) => {
                let $d = &POSTGRES_DIALECT;
                let _ = $d;
                $body
            }
        }
    };
}

macro_rules! on_writer {
    ($self:expr, |$pool:ident, $d:ident| $body:expr) => {
        on_pool!(@ $self, write, |$pool, $d| $body)
    };
}

/// A new person's pseudonym basis: 128 random bits (hex).
fn random_subject_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Crypto(format!("no random source: {e}")))?;
    Ok(hex::encode(bytes))
}

/// An [`Account`] from a row of `account_columns!()`.
macro_rules! account_from_row {
    ($self:expr, $row:expr) => {{
        let row = $row;
        let id: i64 = row.try_get("id")?;
        let sealed: Option<Vec<u8>> = row.try_get(USER_ID)?;
        let provider_user_id = match sealed {
            Some(bytes) => Some($self.cipher.open(id, USER_ID, &bytes)?),
            None => None,
        };
        let name: String = row.try_get("name")?;
        // Rows written without a person (by hand, or before migration 7) are their own.
        let person: Option<String> = row.try_get("person")?;
        Ok::<Account, StoreError>(Account {
            id,
            person: person.unwrap_or_else(|| name.clone()),
            name,
            provider: parse_provider(row.try_get("provider")?)?,
            status: AccountStatus::parse(row.try_get("status")?)?,
            provider_user_id,
            created_at: row.try_get("created_at")?,
        })
    }};
}

/// A [`Pending`] from an outbox row.
macro_rules! pending_from_row {
    ($row:expr) => {{
        let r = $row;
        Ok::<Pending, StoreError>(Pending {
            seq: r.try_get("seq")?,
            attempts: r.try_get("attempts")?,
            entry: OutboxEntry {
                message_id: r.try_get("message_id")?,
                stream: r.try_get("stream")?,
                partition_key: r.try_get("partition_key")?,
                payload: r.try_get("payload")?,
            },
        })
    }};
}

/// Connection errors can carry the URL, and with it the password.
fn without_url(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Configuration(_) => StoreError::BadUrl("not a valid postgres:// URL".into()),
        other => StoreError::Database(other),
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A JSON list of `values`.
fn json_list<T: serde::Serialize>(values: &[T]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

/// Creates the SQLite file with mode 0600 when it does not exist yet: it holds encrypted
/// tokens and personal ids, and SQLite gives its `-wal` and `-shm` files the same mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // A missing directory or a read-only place: let SQLite say what is wrong.
        Err(_) => Ok(()),
    }
}

impl SqlStore {
    /// Opens the store `url` names — `postgres://…` (or `postgresql://…`), else
    /// `sqlite://PATH` or a plain path, created if needed — and migrates it.
    pub async fn open(url: &str, cipher: TokenCipher) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            crate::http::tls();
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(without_url)?;
            migrations::run_postgres(&pool, POSTGRES).await?;
            let store = Self { pool: Pool::Postgres(pool), cipher, clock: Clock::system() };
            store.key_upstream_accounts().await?;
            return Ok(store);
        }
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Self::open_sqlite(Path::new(path), cipher).await
    }

    /// Opens (creating if needed) the SQLite file at `path` and migrates it.
    pub async fn open_sqlite(path: &Path, cipher: TokenCipher) -> Result<Self, StoreError> {
        create_private(path)?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Migrate on a connection of its own, then open the pool: a connection that read
        // the schema before a migration would describe `SELECT *` with the old columns.
        let migrator = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        migrations::run_sqlite(&migrator, SQLITE).await?;
        migrator.close().await;
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(WRITE_QUEUE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        let read = SqlitePoolOptions::new().max_connections(READERS).connect_with(options).await?;
        let store = Self { pool: Pool::Sqlite { read, write }, cipher, clock: Clock::system() };
        store.key_upstream_accounts().await?;
        Ok(store)
    }

    /// The secret path segment of `provider`'s per-account notification callback
    /// (`/webhooks/<provider>/<token>`): a keyed hash under the store's key, so every
    /// worker on the same store agrees on it and nobody without the key can post there.
    pub fn push_token(&self, provider: Provider) -> Result<String, StoreError> {
        let mut token = self.cipher.lookup_key("wearbridge/push-callback", provider.as_str())?;
        token.truncate(32);
        Ok(token)
    }

    /// The active account of upstream user `user_id` at `provider`, found by the keyed
    /// hash of the id (the id itself is stored encrypted).
    async fn account_of_upstream(&self, provider: Provider, user_id: &str) -> Result<Option<i64>, StoreError> {
        let key = self.cipher.lookup_key(provider.as_str(), user_id)?;
        on_pool!(self, |pool, _d| {
            let id: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM accounts WHERE provider = $1 AND provider_user_key = $2 AND status = 'active'",
            )
            .bind(provider.as_str())
            .bind(&key)
            .fetch_optional(pool)
            .await?;
            Ok(id)
        })
    }

    /// Accounts enrolled before migration 7 know their upstream user id but not its keyed
    /// hash, so a second enrolment of the same upstream account would pass. Their hash is
    /// filled in at open (nothing to do once done); two existing accounts that are one
    /// upstream account are reported at every start until one is removed.
    async fn key_upstream_accounts(&self) -> Result<(), StoreError> {
        let rows: Vec<(i64, String, Vec<u8>)> = on_pool!(self, |pool, _d| {
            let rows = sqlx::query(
                "SELECT id, name, provider_user_id FROM accounts
                 WHERE provider_user_id IS NOT NULL AND provider_user_key IS NULL AND status <> 'removed'
                 ORDER BY id",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((r.try_get("id")?, r.try_get("name")?, r.try_get(USER_ID)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
        })?;
        for (id, name, sealed) in rows {
            // A row this key cannot open fails loudly where it is used; here it stays as is.
            let Ok(user_id) = self.cipher.open(id, USER_ID, &sealed) else { continue };
            match self.set_provider_user_id(id, &user_id).await {
                Ok(()) => {}
                Err(StoreError::AlreadyEnrolled { person }) => tracing::warn!(
                    account = %name,
                    other_person = %person,
                    "this account is the same upstream account as one of another person's: remove one of them (`wearbridge users remove`)"
                ),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Uses `clock` for the times the store writes (tests that pin the time of day).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The SQLite writer pool, for tests and diagnostics; `None` on PostgreSQL.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.pool {
            Pool::Sqlite { write, .. } => Some(write),
            Pool::Postgres(_) => None,
        }
    }

    /// Closes every connection (a SQLite file can then be read whole).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

impl Store for SqlStore {
    async fn add_account(
        &self,
        person: &str,
        provider: Provider,
        refresh_token: &SecretString,
    ) -> Result<Account, StoreError> {
        validate_account_name(person)?;
        parse_provider(provider.as_str())?;
        let now = self.now();
        let subject_id = random_subject_id()?;
        on_writer!(self, |pool, d| {
            let mut tx = pool.begin_with(d.begin).await?;
            sqlx::query(
                "INSERT INTO people (name, subject_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(person)
            .bind(&subject_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let existing = sqlx::query(d.lock_person_account)
                .bind(person)
                .bind(provider.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let id: i64 = match existing {
                Some(row) => {
                    let status: String = row.try_get("status")?;
                    if AccountStatus::parse(&status)? != AccountStatus::Removed {
                        return Err(StoreError::AccountExists(format!("{person} ({provider})")));
                    }
                    let id: i64 = row.try_get("id")?;
                    sqlx::query(
                        // Enrolled afresh: as new, its enrolment time included.
                        "UPDATE accounts SET status = 'active', provider_user_id = NULL, provider_user_key = NULL, push_checked_at = NULL,
                                created_at = $1, updated_at = $1
                         WHERE id = $2",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
                None => {
                    // The person's first account is named after them (as before people
                    // existed); another provider's is `<person>/<provider>`.
                    let taken = sqlx::query("SELECT 1 FROM accounts WHERE name = $1")
                        .bind(person)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                    let name = if taken { format!("{person}/{provider}") } else { person.to_owned() };
                    sqlx::query(
                        "INSERT INTO accounts (name, person, provider, status, created_at, updated_at)
                         VALUES ($1, $2, $3, 'active', $4, $4) RETURNING id",
                    )
                    .bind(&name)
                    .bind(person)
                    .bind(provider.as_str())
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| match e {
                        sqlx::Error::Database(d) if d.is_unique_violation() => {
                            StoreError::AccountExists(format!("{person} ({provider})"))
                        }
                        other => StoreError::Database(other),
                    })?
                    .try_get("id")?
                }
            };
            let sealed = self.cipher.seal_secret(id, REFRESH, refresh_token)?;
            sqlx::query(
                "INSERT INTO tokens (account_id, refresh_token, access_token, access_expires_at, updated_at)
                 VALUES ($1, $2, NULL, NULL, $3)
                 ON CONFLICT (account_id) DO UPDATE SET refresh_token = excluded.refresh_token,
                     access_token = NULL, access_expires_at = NULL, updated_at = excluded.updated_at",
            )
            .bind(id)
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(concat!("SELECT ", account_columns!(), " FROM accounts WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let account = account_from_row!(self, &row)?;
            tx.commit().await?;
            Ok(account)
        })
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        on_pool!(self, |pool, _d| {
            let rows = sqlx::query(concat!("SELECT ", account_columns!(), " FROM accounts ORDER BY name"))
                .fetch_all(pool)
                .await?;
            // One unreadable account (a provider this build has no source for, after a
            // downgrade) must not stop the others: it is named in the log and left out.
            let read: Vec<Result<Account, StoreError>> = rows.iter().map(|r| account_from_row!(self, r)).collect();
            let mut accounts = Vec::with_capacity(read.len());
            for (row, result) in rows.iter().zip(read) {
                match result {
                    Ok(account) => accounts.push(account),
                    Err(error) => {
                        let name: Option<String> = row.try_get("name").ok();
                        tracing::error!(account = name.as_deref().unwrap_or("?"), %error, "account left out: cannot read it");
                    }
                }
            }
            Ok(accounts)
        })
    }

    async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        on_pool!(self, |pool, _d| {
            let row = sqlx::query(concat!("SELECT ", account_columns!(), " FROM accounts WHERE name = $1"))
                .bind(name)
                .fetch_optional(pool)
                .await?;
            row.map(|r| account_from_row!(self, &r)).transpose()
        })
    }

    async fn remove_account(&self, name: &str) -> Result<Removal, StoreError> {
        let now = self.now();
        on_writer!(self, |pool, d| {
            let mut tx = pool.begin_with(d.begin).await?;
            let row = sqlx::query(d.lock_account_by_name).bind(name).fetch_optional(&mut *tx).await?;
            let Some(row) = row else {
                return Err(StoreError::NoSuchAccount(name.into()));
            };
            let id: i64 = row.try_get("id")?;
            // A person's scale slots go with their `local` account (their name, shown on
            // the scale, and their last weight).
            sqlx::query(
                "DELETE FROM scale_slots WHERE person IN
                   (SELECT person FROM accounts WHERE id = $1 AND provider = 'local')",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            for statement in [
                "DELETE FROM tokens WHERE account_id = $1",
                "DELETE FROM cursors WHERE account_id = $1",
                "DELETE FROM schedule WHERE account_id = $1",
                "DELETE FROM consents WHERE account_id = $1",
                "DELETE FROM series_windows WHERE account_id = $1",
                "DELETE FROM push_deletions WHERE account_id = $1",
            ] {
                sqlx::query(statement).bind(id).execute(&mut *tx).await?;
            }
            let dropped = sqlx::query("DELETE FROM outbox WHERE account_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE accounts SET status = 'removed', provider_user_id = NULL, provider_user_key = NULL, push_checked_at = NULL, lease_owner = NULL,
                     lease_until = NULL, updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Removal { dropped_messages: dropped })
        })
    }

    async fn set_status(&self, account_id: i64, status: AccountStatus) -> Result<(), StoreError> {
        let now = self.now();
        on_writer!(self, |pool, _d| {
            sqlx::query("UPDATE accounts SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status.as_str())
                .bind(now)
                .bind(account_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    async fn set_provider_user_id(&self, account_id: i64, user_id: &str) -> Result<(), StoreError> {
        let sealed = self.cipher.seal(account_id, USER_ID, user_id)?;
        let now = self.now();
        on_writer!(self, |pool, d| {
            let mut tx = pool.begin_with(d.begin).await?;
            let provider: Option<String> = sqlx::query("SELECT provider FROM accounts WHERE id = $1")
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("provider"))
                .transpose()?;
            let Some(provider) = provider else { return Ok(()) };
            let key = self.cipher.lookup_key(&provider, user_id)?;
            // The same upstream account enrolled for someone else: refused, naming them.
            let other: Option<String> = sqlx::query(
                "SELECT person FROM accounts WHERE provider = $1 AND provider_user_key = $2
                     AND status <> 'removed' AND id <> $3",
            )
            .bind(&provider)
            .bind(&key)
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("person"))
            .transpose()?;
            if let Some(person) = other {
                return Err(StoreError::AlreadyEnrolled { person });
            }
            sqlx::query(
                "UPDATE accounts SET provider_user_id = $1, provider_user_key = $2, updated_at = $3
                 WHERE id = $4 AND status <> 'removed'",
            )
            .bind(&sealed)
            .bind(&key)
            .bind(now)
            .bind(account_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => {
                    StoreError::AlreadyEnrolled { person: "another person".into() }
                }
                other => StoreError::Database(other),
            })?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn subject_id(&self, person: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, |pool, _d| {
            let row =
                sqlx::query("SELECT subject_id FROM people WHERE name = $1").bind(person).fetch_optional(pool).await?;
            Ok(row.map(|r| r.try_get::<Option<String>, _>("subject_id")).transpose()?.flatten())
        })
    }

    async fn tokens(&self, account_id: i64) -> Result<Option<Tokens>, StoreError> {
        let (refresh, access, expires): (Vec<u8>, Option<Vec<u8>>, Option<DateTime<Utc>>) =
            match on_pool!(self, |pool, _d| {
                let row = sqlx::query(
                    "SELECT refresh_token, access_token, access_expires_at FROM tokens WHERE account_id = $1",
                )
                .bind(account_id)
                .fetch_optional(pool)
                .await?;
                row.map(|r| {
                    Ok::<_, StoreError>((r.try_get(REFRESH)?, r.try_get(ACCESS)?, r.try_get("access_expires_at")?))
                })
                .transpose()?
            }) {
                Some(columns) => columns,
                None => return Ok(None),
            };
        Ok(Some(Tokens {
            refresh_token: SecretString::from(self.cipher.open(account_id, REFRESH, &refresh)?),
            access_token: match access {
                Some(bytes) => Some(SecretString::from(self.cipher.open(account_id, ACCESS, &bytes)?)),
                None => None,
            },
            access_expires_at: expires,
        }))
    }

    async fn save_tokens(&self, account_id: i64, tokens: &Tokens) -> Result<(), StoreError> {
        let refresh = self.cipher.seal_secret(account_id, REFRESH, &tokens.refresh_token)?;
        let access =
            tokens.access_token.as_ref().map(|t| self.cipher.seal_secret(account_id, ACCESS, t)).transpose()?;
        let now = self.now();
        on_writer!(self, |pool, _d| {
            sqlx::query(
                "INSERT INTO tokens (account_id, refresh_token, access_token, access_expires_at, updated_at)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND status <> 'removed')
                 ON CONFLICT (account_id) DO UPDATE SET refresh_token = excluded.refresh_token,
                     access_token = excluded.access_token, access_expires_at = excluded.access_expires_at,
                     updated_at = excluded.updated_at",
            )
            .bind(account_id)
            .bind(&refresh)
            .bind(&access)
            .bind(tokens.access_expires_at)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    async fn cursor(&self, account_id: i64, dataset: &str) -> Result<Option<String>, StoreError> {
        on_pool!(self, |pool, _d| {
            let row = sqlx::query("SELECT position FROM cursors WHERE account_id = $1 AND dataset = $2")
                .bind(account_id)
                .bind(dataset)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| r.try_get("position")).transpose()?)
        })
    }

    async fn commit_series_batch(
        &self,
        account_id: i64,
        dataset: &str,
        cursor: &str,
        entries: &[OutboxEntry],
        quarantined: &[(OutboxEntry, String)],
        windows: &[SeriesWindow],
    ) -> Result<u64, StoreError> {
        let now = self.now();
        let list: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({"id": e.message_id, "stream": e.stream, "key": e.partition_key, "payload": e.payload})
            })
            .collect();
        let list = json_list(&list);
        on_writer!(self, |pool, d| {
            let mut tx = pool.begin_with(d.begin).await?;
            // A withdrawn account takes nothing more: a sync that was running when the
            // person left writes nothing. The check is a write, so it waits for a
            // concurrent removal (and takes SQLite's write lock first instead of failing
            // to upgrade a read).
            let live = sqlx::query("UPDATE accounts SET updated_at = updated_at WHERE id = $1 AND status <> 'removed'")
                .bind(account_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if live == 0 {
                return Ok(0);
            }
            // One statement for the whole batch, `seq` in record order.
            let inserted = sqlx::query(d.insert_outbox)
                .bind(account_id)
                .bind(&list)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            for (e, error) in quarantined {
                sqlx::query(
                    "INSERT INTO outbox (message_id, account_id, stream, partition_key, payload, status, last_error, created_at)
                     VALUES ($1, $2, $3, $4, $5, 'quarantined', $6, $7) ON CONFLICT (message_id) DO NOTHING",
                )
                .bind(&e.message_id)
                .bind(account_id)
                .bind(&e.stream)
                .bind(&e.partition_key)
                .bind(&e.payload)
                .bind(error)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO cursors (account_id, dataset, position, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account_id, dataset) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
            )
            .bind(account_id)
            .bind(dataset)
            .bind(cursor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            for w in windows {
                sqlx::query(
                    "INSERT INTO series_windows (account_id, series_key, revision, digest) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (account_id, series_key) DO UPDATE SET revision = excluded.revision, digest = excluded.digest",
                )
                .bind(account_id)
                .bind(&w.key)
                .bind(i64::from(w.revision))
                .bind(&w.digest)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(inserted)
        })
    }

    async fn series_windows(&self, account_id: i64, keys: &[String]) -> Result<Vec<SeriesWindow>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let list = json_list(keys);
        on_pool!(self, |pool, d| {
            let rows = sqlx::query(d.series_windows).bind(account_id).bind(&list).fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    let revision: i64 = r.try_get("revision")?;
                    Ok(SeriesWindow {
                        key: r.try_get("series_key")?,
                        revision: u32::try_from(revision).unwrap_or(u32::MAX),
                        digest: r.try_get("digest")?,
                    })
                })
                .collect()
        })
    }

    async fn quarantined_len(&self) -> Result<u64, StoreError> {
        on_pool!(self, |pool, _d| {
            let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE status = 'quarantined'")
                .fetch_one(pool)
                .await?
                .try_get("n")?;
            Ok(count(n))
        })
    }

    async fn outbox_len_up_to(&self, limit: u64) -> Result<u64, StoreError> {
        on_pool!(self, |pool, _d| {
            let n: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM outbox WHERE status = 'pending' LIMIT $1) AS pending",
            )
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_one(pool)
            .await?
            .try_get("n")?;
            Ok(count(n))
        })
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        on_pool!(self, |pool, _d| {
            let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE status = 'pending'")
                .fetch_one(pool)
                .await?
                .try_get("n")?;
            Ok(count(n))
        })
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<Pending>, StoreError> {
        on_pool!(self, |pool, _d| {
            let rows = sqlx::query(
                "SELECT seq, message_id, stream, partition_key, payload, attempts FROM outbox
                 WHERE status = 'pending' ORDER BY seq LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| pending_from_row!(r)).collect()
        })
    }

    async fn outbox_claim(&self, lease: &Lease, limit: u32) -> Result<Vec<Pending>, StoreError> {
        let mut pending: Vec<Pending> = on_writer!(self, |pool, d| {
            let rows = sqlx::query(d.claim_outbox)
                .bind(&lease.worker)
                .bind(lease.until_ms)
                .bind(lease.now_ms)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| pending_from_row!(r)).collect::<Result<Vec<_>, _>>()?
        });
        pending.sort_by_key(|p| p.seq);
        Ok(pending)
    }

    async fn claim_accounts(
        &self,
        lease: &Lease,
        datasets: &[&str],
        providers: &[&str],
        limit: u32,
    ) -> Result<Vec<Account>, StoreError> {
        let list = json_list(datasets);
        let providers = json_list(providers);
        let mut accounts: Vec<Account> = on_writer!(self, |pool, d| {
            let rows = sqlx::query(d.claim_accounts)
                .bind(&lease.worker)
                .bind(lease.until_ms)
                .bind(lease.now_ms)
                .bind(&list)
                .bind(i64::from(limit))
                .bind(&providers)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| account_from_row!(self, r)).collect::<Result<Vec<_>, _>>()?
        });
        accounts.sort_by_key(|a| a.id);
        Ok(accounts)
    }

    async fn renew_account_lease(&self, lease: &Lease, account_id: i64) -> Result<bool, StoreError> {
        on_writer!(self, |pool, _d| {
            let done = sqlx::query("UPDATE accounts SET lease_until = $1 WHERE id = $2 AND lease_owner = $3")
                .bind(lease.until_ms)
                .bind(account_id)
                .bind(&lease.worker)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn release_worker(&self, worker: &str) -> Result<(), StoreError> {
        on_writer!(self, |pool, d| {
            let mut tx = pool.begin_with(d.begin).await?;
            for statement in [
                "UPDATE accounts SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
                "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
            ] {
                sqlx::query(statement).bind(worker).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    async fn schedule(&self, account_id: i64) -> Result<Vec<Scheduled>, StoreError> {
        on_pool!(self, |pool, _d| {
            let rows = sqlx::query(
                "SELECT dataset, next_due, pushed_at, push_from FROM schedule WHERE account_id = $1 ORDER BY dataset",
            )
            .bind(account_id)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Scheduled {
                        dataset: r.try_get("dataset")?,
                        next_due: r.try_get("next_due")?,
                        pushed_at: r.try_get("pushed_at")?,
                        push_from: r.try_get("push_from")?,
                    })
                })
                .collect()
        })
    }

    async fn release_account(
        &self,
        worker: &str,
        account_id: i64,
        next_due: &[(String, i64)],
        served: Option<&[Scheduled]>,
    ) -> Result<(), StoreError> {
        on_writer!(self, |pool, d| {
            let mut tx = pool.begin_with(d.begin).await?;
            for (dataset, due) in next_due {
                let read =
                    served.and_then(|rows| rows.iter().find(|r| &r.dataset == dataset)).and_then(|r| r.pushed_at);
                // One statement, so a note that lands meanwhile is either before it (and
                // kept, being newer than the one read) or after it. A note is "newer" when
                // its time differs from the one the sync read, whichever worker's clock
                // wrote either.
                sqlx::query(
                    "INSERT INTO schedule (account_id, dataset, next_due)
                     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND status <> 'removed')
                     ON CONFLICT (account_id, dataset) DO UPDATE SET
                       next_due = CASE WHEN $4 = 1 AND schedule.pushed_at IS NOT NULL
                                            AND ($5 IS NULL OR schedule.pushed_at <> $5)
                                            AND schedule.next_due < excluded.next_due
                                       THEN schedule.next_due ELSE excluded.next_due END,
                       push_from = CASE WHEN $4 = 0 OR (schedule.pushed_at IS NOT NULL
                                            AND ($5 IS NULL OR schedule.pushed_at <> $5))
                                        THEN schedule.push_from ELSE NULL END,
                       pushed_at = CASE WHEN $4 = 0 OR (schedule.pushed_at IS NOT NULL
                                            AND ($5 IS NULL OR schedule.pushed_at <> $5))
                                        THEN schedule.pushed_at ELSE NULL END",
                )
                .bind(account_id)
                .bind(dataset)
                .bind(due)
                .bind(i64::from(served.is_some()))
                .bind(read)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE accounts SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
            )
            .bind(account_id)
            .bind(worker)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn note_push(
        &self,
        provider: Provider,
        user_id: &str,
        datasets: &[&str],
        due_ms: i64,
        from_ms: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let Some(account_id) = self.account_of_upstream(provider, user_id).await? else { return Ok(None) };
        let now = self.now().timestamp_millis();
        on_writer!(self, |pool, d| {
            let mut tx = pool.begin_with(d.begin).await?;
            for dataset in datasets {
                sqlx::query(
                    "INSERT INTO schedule (account_id, dataset, next_due, pushed_at, push_from)
                     SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND status = 'active')
                     ON CONFLICT (account_id, dataset) DO UPDATE SET
                       next_due = CASE WHEN excluded.next_due < schedule.next_due
                                       THEN excluded.next_due ELSE schedule.next_due END,
                       pushed_at = excluded.pushed_at,
                       push_from = CASE WHEN schedule.push_from IS NULL OR excluded.push_from < schedule.push_from
                                        THEN excluded.push_from ELSE schedule.push_from END",
                )
                .bind(account_id)
                .bind(*dataset)
                .bind(due_ms)
                .bind(now)
                .bind(from_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(Some(account_id))
        })
    }

    async fn note_push_deletion(
        &self,
        provider: Provider,
        user_id: &str,
        dataset: &str,
        interval: (Option<i64>, Option<i64>),
    ) -> Result<Option<i64>, StoreError> {
        let Some(account_id) = self.account_of_upstream(provider, user_id).await? else { return Ok(None) };
        let now = self.now().timestamp_millis();
        on_writer!(self, |pool, _d| {
            sqlx::query(
                "INSERT INTO push_deletions (account_id, dataset, start_ms, end_ms, received_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(account_id)
            .bind(dataset)
            .bind(interval.0)
            .bind(interval.1)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(Some(account_id))
        })
    }

    async fn push_deletions(&self, account_id: i64) -> Result<u64, StoreError> {
        on_pool!(self, |pool, _d| {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM push_deletions WHERE account_id = $1")
                .bind(account_id)
                .fetch_one(pool)
                .await?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    async fn add_scale(&self, name: &str, kind: &str, mac: &str) -> Result<(), StoreError> {
        validate_account_name(name)?;
        let key = self.cipher.lookup_key(&format!("scale/{kind}"), mac)?;
        on_writer!(self, |pool, _d| {
            sqlx::query("INSERT INTO scales (name, kind, device_key) VALUES ($1, $2, $3)")
                .bind(name)
                .bind(kind)
                .bind(&key)
                .execute(pool)
                .await
                .map_err(|e| match e {
                    sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::ScaleExists(name.to_owned()),
                    other => StoreError::Database(other),
                })?;
            Ok(())
        })
    }

    async fn scale_by_mac(&self, kind: &str, mac: &str) -> Result<Option<ScaleRef>, StoreError> {
        let key = self.cipher.lookup_key(&format!("scale/{kind}"), mac)?;
        on_pool!(self, |pool, _d| {
            let row =
                sqlx::query("SELECT id, name, clock_correction_s FROM scales WHERE device_key = $1 AND kind = $2")
                    .bind(&key)
                    .bind(kind)
                    .fetch_optional(pool)
                    .await?;
            Ok(row
                .map(|r| {
                    Ok::<_, sqlx::Error>(ScaleRef {
                        id: r.try_get("id")?,
                        name: r.try_get("name")?,
                        correction_s: r.try_get("clock_correction_s")?,
                    })
                })
                .transpose()?)
        })
    }

    async fn check_scale_auth(&self, scale_id: i64, auth: &[u8]) -> Result<bool, StoreError> {
        let key = self.cipher.lookup_key("scale/auth", &hex::encode(auth))?;
        on_writer!(self, |pool, _d| {
            // Pinned at the first upload; one statement, so two first uploads agree.
            sqlx::query("UPDATE scales SET auth_key = $1 WHERE id = $2 AND auth_key IS NULL")
                .bind(&key)
                .bind(scale_id)
                .execute(pool)
                .await?;
            let pinned: Option<Option<String>> = sqlx::query_scalar("SELECT auth_key FROM scales WHERE id = $1")
                .bind(scale_id)
                .fetch_optional(pool)
                .await?;
            Ok(pinned.flatten().is_some_and(|p| p == key))
        })
    }

    async fn set_scale_correction(&self, scale_id: i64, seconds: i64) -> Result<(), StoreError> {
        on_writer!(self, |pool, _d| {
            sqlx::query("UPDATE scales SET clock_correction_s = $1 WHERE id = $2")
                .bind(seconds)
                .bind(scale_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    async fn assign_scale_slot(&self, scale: &str, slot: i64, person: &str) -> Result<Account, StoreError> {
        validate_account_name(person)?;
        let scale_id: Option<i64> = on_pool!(self, |pool, _d| {
            sqlx::query_scalar("SELECT id FROM scales WHERE name = $1").bind(scale).fetch_optional(pool).await?
        });
        let scale_id = scale_id.ok_or_else(|| StoreError::NoSuchScale(scale.to_owned()))?;
        let local = crate::sources::local::PROVIDER;
        let existing = self
            .accounts()
            .await?
            .into_iter()
            .find(|a| a.person == person && a.provider == local && a.status != AccountStatus::Removed);
        let account = match existing {
            Some(a) => a,
            None => {
                let token = SecretString::from(crate::sources::local::NO_TOKEN);
                let a = self.add_account(person, local, &token).await?;
                self.set_provider_user_id(a.id, person).await?;
                a
            }
        };
        on_writer!(self, |pool, _d| {
            sqlx::query(
                "INSERT INTO scale_slots (scale_id, slot, person) VALUES ($1, $2, $3)
                 ON CONFLICT (scale_id, slot) DO UPDATE SET person = excluded.person,
                   last_grams = CASE WHEN scale_slots.person = excluded.person
                                     THEN scale_slots.last_grams ELSE NULL END",
            )
            .bind(scale_id)
            .bind(slot)
            .bind(person)
            .execute(pool)
            .await?;
            Ok::<_, StoreError>(())
        })?;
        Ok(account)
    }

    async fn scale_slots(&self, scale_id: i64) -> Result<Vec<(i64, String)>, StoreError> {
        on_pool!(self, |pool, _d| {
            let rows = sqlx::query("SELECT slot, person FROM scale_slots WHERE scale_id = $1 ORDER BY slot")
                .bind(scale_id)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| Ok((r.try_get("slot")?, r.try_get("person")?))).collect()
        })
    }

    async fn scale_weights(&self, scale_id: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        on_pool!(self, |pool, _d| {
            let rows = sqlx::query(
                "SELECT slot, last_grams FROM scale_slots WHERE scale_id = $1 AND last_grams IS NOT NULL ORDER BY slot",
            )
            .bind(scale_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| Ok((r.try_get("slot")?, r.try_get("last_grams")?))).collect()
        })
    }

    async fn set_scale_weight(&self, scale_id: i64, slot: i64, grams: i64) -> Result<(), StoreError> {
        on_writer!(self, |pool, _d| {
            sqlx::query("UPDATE scale_slots SET last_grams = $1 WHERE scale_id = $2 AND slot = $3")
                .bind(grams)
                .bind(scale_id)
                .bind(slot)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    async fn scales(&self) -> Result<Vec<Scale>, StoreError> {
        let rows: Vec<(i64, String, String)> = on_pool!(self, |pool, _d| {
            let rows = sqlx::query("SELECT id, name, kind FROM scales ORDER BY name").fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get("id")?, r.try_get("name")?, r.try_get("kind")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        let mut out = Vec::with_capacity(rows.len());
        for (id, name, kind) in rows {
            out.push(Scale { name, kind, slots: self.scale_slots(id).await? });
        }
        Ok(out)
    }

    async fn remove_scale(&self, name: &str) -> Result<(), StoreError> {
        on_writer!(self, |pool, d| {
            let mut tx = pool.begin_with(d.begin).await?;
            let id: Option<i64> =
                sqlx::query_scalar("SELECT id FROM scales WHERE name = $1").bind(name).fetch_optional(&mut *tx).await?;
            let id = id.ok_or_else(|| StoreError::NoSuchScale(name.to_owned()))?;
            sqlx::query("DELETE FROM scale_slots WHERE scale_id = $1").bind(id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM scales WHERE id = $1").bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn push_checked_at(&self, account_id: i64) -> Result<Option<i64>, StoreError> {
        on_pool!(self, |pool, _d| {
            let at: Option<Option<i64>> = sqlx::query_scalar("SELECT push_checked_at FROM accounts WHERE id = $1")
                .bind(account_id)
                .fetch_optional(pool)
                .await?;
            Ok(at.flatten())
        })
    }

    async fn set_push_checked(&self, account_id: i64, at_ms: Option<i64>) -> Result<(), StoreError> {
        on_writer!(self, |pool, _d| {
            sqlx::query("UPDATE accounts SET push_checked_at = $1 WHERE id = $2")
                .bind(at_ms)
                .bind(account_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    async fn oldest_due(&self, datasets: &[&str]) -> Result<Option<DateTime<Utc>>, StoreError> {
        let list = json_list(datasets);
        on_pool!(self, |pool, d| {
            let scheduled: Option<i64> =
                sqlx::query(d.earliest_scheduled).bind(&list).fetch_one(pool).await?.try_get("due")?;
            let unscheduled = sqlx::query(d.earliest_unscheduled).bind(&list).fetch_optional(pool).await?;
            let enrolled: Option<DateTime<Utc>> = unscheduled.map(|r| r.try_get("created_at")).transpose()?;
            let scheduled = scheduled.and_then(DateTime::from_timestamp_millis);
            Ok(scheduled.into_iter().chain(enrolled).min())
        })
    }

    async fn outbox_oldest(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        on_pool!(self, |pool, _d| {
            let row = sqlx::query("SELECT created_at FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT 1")
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|r| r.try_get("created_at")).transpose()?)
        })
    }

    async fn outbox_renew(&self, lease: &Lease, seqs: &[i64]) -> Result<Vec<i64>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let list = json_list(seqs);
        on_writer!(self, |pool, d| {
            let rows = sqlx::query(d.renew_outbox)
                .bind(&lease.worker)
                .bind(lease.until_ms)
                .bind(&list)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| r.try_get::<i64, _>("seq")).collect::<Result<Vec<_>, _>>().map_err(StoreError::from)
        })
    }

    async fn outbox_release(&self, worker: &str) -> Result<(), StoreError> {
        on_writer!(self, |pool, _d| {
            sqlx::query("UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
                .bind(worker)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    async fn record_consent(&self, account_id: i64, consent: &Consent) -> Result<(), StoreError> {
        on_writer!(self, |pool, _d| {
            sqlx::query(
                "INSERT INTO consents (account_id, provider, scopes, granted_at, leave_hash) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (account_id) DO UPDATE SET provider = excluded.provider, scopes = excluded.scopes,
                     granted_at = excluded.granted_at, leave_hash = excluded.leave_hash",
            )
            .bind(account_id)
            .bind(consent.provider.as_str())
            .bind(&consent.scopes)
            .bind(consent.granted_at)
            .bind(&consent.leave_hash)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    async fn consent(&self, account_id: i64) -> Result<Option<Consent>, StoreError> {
        on_pool!(self, |pool, _d| {
            let row =
                sqlx::query("SELECT provider, scopes, granted_at, leave_hash FROM consents WHERE account_id = $1")
                    .bind(account_id)
                    .fetch_optional(pool)
                    .await?;
            let Some(r) = row else { return Ok(None) };
            Ok(Some(Consent {
                provider: parse_provider(r.try_get("provider")?)?,
                scopes: r.try_get("scopes")?,
                granted_at: r.try_get("granted_at")?,
                leave_hash: r.try_get("leave_hash")?,
            }))
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool, _d| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        on_writer!(self, |pool, _d| {
            sqlx::query(
                "UPDATE schema_migrations SET applied_at = applied_at
                 WHERE version = (SELECT min(version) FROM schema_migrations)",
            )
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    async fn outbox_ack(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let list = json_list(seqs);
        // Two set-based statements, whatever the number of messages.
        on_writer!(self, |pool, d| {
            let mut tx = pool.begin_with(d.begin).await?;
            sqlx::query(d.publish_acked).bind(&list).bind(now).execute(&mut *tx).await?;
            sqlx::query(d.delete_acked).bind(&list).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn prune_published(&self, retention: Duration) -> Result<u64, StoreError> {
        let older_than = chrono::TimeDelta::from_std(retention)
            .ok()
            .and_then(|age| self.now().checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        on_writer!(self, |pool, _d| {
            let done =
                sqlx::query("DELETE FROM published WHERE published_at < $1").bind(older_than).execute(pool).await?;
            Ok(done.rows_affected())
        })
    }

    async fn outbox_attempt_failed(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        on_writer!(self, |pool, _d| {
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, last_error = $1, lease_owner = NULL, lease_until = NULL
                 WHERE seq = $2",
            )
            .bind(error)
            .bind(seq)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    async fn outbox_quarantine(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        on_writer!(self, |pool, _d| {
            sqlx::query(
                "UPDATE outbox SET status = 'quarantined', attempts = attempts + 1, last_error = $1 WHERE seq = $2",
            )
            .bind(error)
            .bind(seq)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;
