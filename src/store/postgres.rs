//! The PostgreSQL store, for several workers sharing one database.
//!
//! Same contract and migrations (in PostgreSQL's types) as SQLite. Work is shared with
//! leases: accounts and outbox batches are claimed with `FOR UPDATE SKIP LOCKED`, so two
//! workers never claim the same row, and a lease a killed worker left behind is taken
//! over once it expires.

use std::time::Duration;

use anonymizer::Provider;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};

use super::migrations::{self, POSTGRES};
use super::{
    Account, AccountStatus, Consent, Lease, OutboxEntry, Pending, Removal, Store, StoreError, TokenCipher, Tokens,
    parse_provider, validate_account_name,
};

const REFRESH: &str = "refresh_token";
const ACCESS: &str = "access_token";
const USER_ID: &str = "provider_user_id";

/// PostgreSQL-backed [`Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    cipher: TokenCipher,
}

impl PostgresStore {
    /// Connects to `postgres://…` and migrates the database.
    pub async fn open(url: &str, cipher: TokenCipher) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(without_url)?;
        migrations::run_postgres(&pool, POSTGRES).await?;
        Ok(Self { pool, cipher })
    }

    /// The pool, for tests and diagnostics.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn account_from_row(&self, row: &PgRow) -> Result<Account, StoreError> {
        let id: i64 = row.try_get("id")?;
        let sealed: Option<Vec<u8>> = row.try_get(USER_ID)?;
        let provider_user_id = match sealed {
            Some(bytes) => Some(self.cipher.open(id, USER_ID, &bytes)?),
            None => None,
        };
        Ok(Account {
            id,
            name: row.try_get("name")?,
            provider: parse_provider(row.try_get("provider")?)?,
            status: AccountStatus::parse(row.try_get("status")?)?,
            provider_user_id,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Connection errors can carry the URL, and with it the password.
fn without_url(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Configuration(_) => StoreError::BadUrl("not a valid postgres:// URL".into()),
        other => StoreError::Database(other),
    }
}

fn pending_from_row(r: &PgRow) -> Result<Pending, StoreError> {
    Ok(Pending {
        seq: r.try_get("seq")?,
        attempts: r.try_get("attempts")?,
        entry: OutboxEntry {
            message_id: r.try_get("message_id")?,
            stream: r.try_get("stream")?,
            partition_key: r.try_get("partition_key")?,
            payload: r.try_get("payload")?,
        },
    })
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store for PostgresStore {
    async fn add_account(
        &self,
        name: &str,
        provider: Provider,
        refresh_token: &SecretString,
    ) -> Result<Account, StoreError> {
        validate_account_name(name)?;
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query("SELECT id, status FROM accounts WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let id: i64 = match existing {
            Some(row) => {
                let status: String = row.try_get("status")?;
                if AccountStatus::parse(&status)? != AccountStatus::Removed {
                    return Err(StoreError::AccountExists(name.into()));
                }
                let id: i64 = row.try_get("id")?;
                sqlx::query(
                    "UPDATE accounts SET provider = $1, status = 'active', provider_user_id = NULL, updated_at = now()
                     WHERE id = $2",
                )
                .bind(provider.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                id
            }
            None => sqlx::query(
                "INSERT INTO accounts (name, provider, status, created_at, updated_at)
                 VALUES ($1, $2, 'active', now(), now()) RETURNING id",
            )
            .bind(name)
            .bind(provider.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::AccountExists(name.into()),
                other => StoreError::Database(other),
            })?
            .try_get("id")?,
        };
        let sealed = self.cipher.seal_secret(id, REFRESH, refresh_token)?;
        sqlx::query(
            "INSERT INTO tokens (account_id, refresh_token, access_token, access_expires_at, updated_at)
             VALUES ($1, $2, NULL, NULL, now())
             ON CONFLICT (account_id) DO UPDATE SET refresh_token = excluded.refresh_token,
                 access_token = NULL, access_expires_at = NULL, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        let row =
            sqlx::query("SELECT id, name, provider, status, provider_user_id, created_at FROM accounts WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        let account = self.account_from_row(&row)?;
        tx.commit().await?;
        Ok(account)
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let rows =
            sqlx::query("SELECT id, name, provider, status, provider_user_id, created_at FROM accounts ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| self.account_from_row(r)).collect()
    }

    async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, provider, status, provider_user_id, created_at FROM accounts WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| self.account_from_row(&r)).transpose()
    }

    async fn remove_account(&self, name: &str) -> Result<Removal, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT id FROM accounts WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NoSuchAccount(name.into()));
        };
        let id: i64 = row.try_get("id")?;
        sqlx::query("DELETE FROM tokens WHERE account_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM cursors WHERE account_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM schedule WHERE account_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM consents WHERE account_id = $1").bind(id).execute(&mut *tx).await?;
        let dropped =
            sqlx::query("DELETE FROM outbox WHERE account_id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        sqlx::query(
            "UPDATE accounts SET status = 'removed', provider_user_id = NULL, lease_owner = NULL, lease_until = NULL,
                 updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Removal { dropped_messages: dropped })
    }

    async fn set_status(&self, account_id: i64, status: AccountStatus) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET status = $1, updated_at = now() WHERE id = $2")
            .bind(status.as_str())
            .bind(account_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_provider_user_id(&self, account_id: i64, user_id: &str) -> Result<(), StoreError> {
        let sealed = self.cipher.seal(account_id, USER_ID, user_id)?;
        sqlx::query(
            "UPDATE accounts SET provider_user_id = $1, updated_at = now() WHERE id = $2 AND status <> 'removed'",
        )
        .bind(sealed)
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn tokens(&self, account_id: i64) -> Result<Option<Tokens>, StoreError> {
        let row =
            sqlx::query("SELECT refresh_token, access_token, access_expires_at FROM tokens WHERE account_id = $1")
                .bind(account_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let refresh: Vec<u8> = row.try_get(REFRESH)?;
        let access: Option<Vec<u8>> = row.try_get(ACCESS)?;
        let expires: Option<DateTime<Utc>> = row.try_get("access_expires_at")?;
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
        sqlx::query(
            "INSERT INTO tokens (account_id, refresh_token, access_token, access_expires_at, updated_at)
             SELECT $1, $2, $3, $4, now() WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND status <> 'removed')
             ON CONFLICT (account_id) DO UPDATE SET refresh_token = excluded.refresh_token,
                 access_token = excluded.access_token, access_expires_at = excluded.access_expires_at,
                 updated_at = excluded.updated_at",
        )
        .bind(account_id)
        .bind(refresh)
        .bind(access)
        .bind(tokens.access_expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn cursor(&self, account_id: i64, dataset: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT position FROM cursors WHERE account_id = $1 AND dataset = $2")
            .bind(account_id)
            .bind(dataset)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("position")).transpose()?)
    }

    async fn commit_batch(
        &self,
        account_id: i64,
        dataset: &str,
        cursor: &str,
        entries: &[OutboxEntry],
        quarantined: &[(OutboxEntry, String)],
    ) -> Result<u64, StoreError> {
        let column = |f: fn(&OutboxEntry) -> &String| entries.iter().map(|e| f(e).clone()).collect::<Vec<_>>();
        let mut tx = self.pool.begin().await?;
        // A withdrawn account takes nothing more. The share lock orders this batch with a
        // concurrent removal (which locks the row for update).
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM accounts WHERE id = $1 FOR SHARE")
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?;
        if status.as_deref() == Some("removed") || status.is_none() {
            return Ok(0);
        }
        // One statement for the whole batch; `ORDER BY ord` keeps `seq` in record order.
        let inserted = sqlx::query(
            "INSERT INTO outbox (message_id, account_id, stream, partition_key, payload, created_at)
             SELECT m.id, $1, m.stream, m.key, m.payload, now()
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS m(id, stream, key, payload, ord)
             WHERE NOT EXISTS (SELECT 1 FROM published p WHERE p.message_id = m.id)
             ORDER BY m.ord
             ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(account_id)
        .bind(column(|e| &e.message_id))
        .bind(column(|e| &e.stream))
        .bind(column(|e| &e.partition_key))
        .bind(column(|e| &e.payload))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for (e, error) in quarantined {
            sqlx::query(
                "INSERT INTO outbox (message_id, account_id, stream, partition_key, payload, status, last_error, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'quarantined', $6, now()) ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(&e.message_id)
            .bind(account_id)
            .bind(&e.stream)
            .bind(&e.partition_key)
            .bind(&e.payload)
            .bind(error)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO cursors (account_id, dataset, position, updated_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (account_id, dataset) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        )
        .bind(account_id)
        .bind(dataset)
        .bind(cursor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn quarantined_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE status = 'quarantined'")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(count(n))
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(count(n))
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<Pending>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, message_id, stream, partition_key, payload, attempts FROM outbox
             WHERE status = 'pending' ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pending_from_row).collect()
    }

    async fn outbox_claim(&self, lease: &Lease, limit: u32) -> Result<Vec<Pending>, StoreError> {
        let rows = sqlx::query(
            "WITH claimable AS (
                 SELECT seq FROM outbox
                 WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < $3 OR lease_owner = $1)
                 ORDER BY seq LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             UPDATE outbox o SET lease_owner = $1, lease_until = $2 FROM claimable c WHERE o.seq = c.seq
             RETURNING o.seq, o.message_id, o.stream, o.partition_key, o.payload, o.attempts",
        )
        .bind(&lease.worker)
        .bind(lease.until_ms)
        .bind(lease.now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut pending = rows.iter().map(pending_from_row).collect::<Result<Vec<_>, _>>()?;
        pending.sort_by_key(|p| p.seq);
        Ok(pending)
    }

    async fn claim_accounts(&self, lease: &Lease, datasets: &[&str], limit: u32) -> Result<Vec<Account>, StoreError> {
        let datasets: Vec<String> = datasets.iter().map(|d| (*d).to_owned()).collect();
        let rows = sqlx::query(
            "WITH claimable AS (
                 SELECT a.id FROM accounts a
                 WHERE a.status = 'active' AND (a.lease_until IS NULL OR a.lease_until < $3 OR a.lease_owner = $1)
                   AND EXISTS (SELECT 1 FROM unnest($4::text[]) AS d(name)
                               LEFT JOIN schedule s ON s.account_id = a.id AND s.dataset = d.name
                               WHERE s.next_due IS NULL OR s.next_due <= $3)
                 ORDER BY a.id LIMIT $5
                 FOR UPDATE OF a SKIP LOCKED)
             UPDATE accounts SET lease_owner = $1, lease_until = $2 FROM claimable c WHERE accounts.id = c.id
             RETURNING accounts.id, accounts.name, accounts.provider, accounts.status,
                       accounts.provider_user_id, accounts.created_at",
        )
        .bind(&lease.worker)
        .bind(lease.until_ms)
        .bind(lease.now_ms)
        .bind(datasets)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut accounts = rows.iter().map(|r| self.account_from_row(r)).collect::<Result<Vec<_>, _>>()?;
        accounts.sort_by_key(|a| a.id);
        Ok(accounts)
    }

    async fn schedule(&self, account_id: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT dataset, next_due FROM schedule WHERE account_id = $1 ORDER BY dataset")
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("dataset")?, r.try_get("next_due")?))).collect()
    }

    async fn release_account(
        &self,
        worker: &str,
        account_id: i64,
        next_due: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (dataset, due) in next_due {
            sqlx::query(
                "INSERT INTO schedule (account_id, dataset, next_due)
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1 AND status <> 'removed')
                 ON CONFLICT (account_id, dataset) DO UPDATE SET next_due = excluded.next_due",
            )
            .bind(account_id)
            .bind(dataset)
            .bind(due)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE accounts SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2")
            .bind(account_id)
            .bind(worker)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_oldest(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT min(created_at) AS oldest FROM outbox WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("oldest")?)
    }

    async fn renew_account_lease(&self, lease: &Lease, account_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE accounts SET lease_until = $1 WHERE id = $2 AND lease_owner = $3")
            .bind(lease.until_ms)
            .bind(account_id)
            .bind(&lease.worker)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_worker(&self, worker: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE accounts SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
            .bind(worker)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
            .bind(worker)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_release(&self, worker: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1")
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_consent(&self, account_id: i64, consent: &Consent) -> Result<(), StoreError> {
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn consent(&self, account_id: i64) -> Result<Option<Consent>, StoreError> {
        let row = sqlx::query("SELECT provider, scopes, granted_at, leave_hash FROM consents WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Consent {
            provider: parse_provider(r.try_get("provider")?)?,
            scopes: r.try_get("scopes")?,
            granted_at: r.try_get("granted_at")?,
            leave_hash: r.try_get("leave_hash")?,
        }))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn outbox_ack(&self, seqs: &[i64]) -> Result<(), StoreError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO published (message_id, published_at)
             SELECT message_id, now() FROM outbox WHERE seq = ANY($1)
             ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(seqs)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM outbox WHERE seq = ANY($1)").bind(seqs).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn prune_published(&self, retention: std::time::Duration) -> Result<u64, StoreError> {
        // The server's clock stamps `published_at`, so the server's clock measures its age.
        let done = sqlx::query("DELETE FROM published WHERE published_at < now() - make_interval(secs => $1)")
            .bind(retention.as_secs_f64())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn outbox_attempt_failed(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1, lease_owner = NULL, lease_until = NULL
             WHERE seq = $2",
        )
        .bind(error)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox_quarantine(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'quarantined', attempts = attempts + 1, last_error = $1 WHERE seq = $2",
        )
        .bind(error)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
