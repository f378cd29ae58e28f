//! The embedded SQLite store (WAL mode, one file).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anonymizer::Provider;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::migrations::{self, SQLITE};
use super::{
    Account, AccountStatus, Consent, Lease, OutboxEntry, Pending, Removal, Store, StoreError, TokenCipher, Tokens,
    parse_provider, validate_account_name,
};
use crate::clock::Clock;

const REFRESH: &str = "refresh_token";
const ACCESS: &str = "access_token";
const USER_ID: &str = "provider_user_id";

/// SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    cipher: TokenCipher,
    /// Stamps bookkeeping times (created, updated, published) and ages the published ids.
    clock: Clock,
}

fn parse_time(column: &'static str, text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt { column, value: text.into() })
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `sqlite://PATH` and migrates it.
    pub async fn open(url: &str, cipher: TokenCipher) -> Result<Self, StoreError> {
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        Self::open_path(Path::new(path), cipher).await
    }

    pub async fn open_path(path: &Path, cipher: TokenCipher) -> Result<Self, StoreError> {
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
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        Ok(Self { pool, cipher, clock: Clock::system() })
    }

    /// Uses `clock` for bookkeeping times (tests that pin the time of day).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> String {
        self.clock.now().to_rfc3339()
    }

    /// The pool, for tests and diagnostics.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn account_from_row(&self, row: &SqliteRow) -> Result<Account, StoreError> {
        let id: i64 = row.try_get("id")?;
        let sealed: Option<Vec<u8>> = row.try_get(USER_ID)?;
        let provider_user_id = match sealed {
            Some(bytes) => Some(self.cipher.open(id, USER_ID, &bytes)?),
            None => None,
        };
        let created: String = row.try_get("created_at")?;
        Ok(Account {
            id,
            name: row.try_get("name")?,
            provider: parse_provider(row.try_get("provider")?)?,
            status: AccountStatus::parse(row.try_get("status")?)?,
            provider_user_id,
            created_at: parse_time("accounts.created_at", &created)?,
        })
    }
}

fn pending_from_row(r: &SqliteRow) -> Result<Pending, StoreError> {
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

impl Store for SqliteStore {
    async fn add_account(
        &self,
        name: &str,
        provider: Provider,
        refresh_token: &SecretString,
    ) -> Result<Account, StoreError> {
        validate_account_name(name)?;
        let mut tx = self.pool.begin().await?;
        let existing =
            sqlx::query("SELECT id, status FROM accounts WHERE name = ?").bind(name).fetch_optional(&mut *tx).await?;
        let id: i64 = match existing {
            Some(row) => {
                let status: String = row.try_get("status")?;
                if AccountStatus::parse(&status)? != AccountStatus::Removed {
                    return Err(StoreError::AccountExists(name.into()));
                }
                let id: i64 = row.try_get("id")?;
                sqlx::query(
                    "UPDATE accounts SET provider = ?, status = 'active', provider_user_id = NULL, updated_at = ? WHERE id = ?",
                )
                .bind(provider.as_str())
                .bind(self.now())
                .bind(id)
                .execute(&mut *tx)
                .await?;
                id
            }
            None => sqlx::query(
                "INSERT INTO accounts (name, provider, status, created_at, updated_at) VALUES (?, ?, 'active', ?, ?) RETURNING id",
            )
            .bind(name)
            .bind(provider.as_str())
            .bind(self.now())
            .bind(self.now())
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?,
        };
        let sealed = self.cipher.seal_secret(id, REFRESH, refresh_token)?;
        sqlx::query(
            "INSERT INTO tokens (account_id, refresh_token, access_token, access_expires_at, updated_at)
             VALUES (?, ?, NULL, NULL, ?)
             ON CONFLICT (account_id) DO UPDATE SET refresh_token = excluded.refresh_token,
                 access_token = NULL, access_expires_at = NULL, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(sealed)
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        let row =
            sqlx::query("SELECT id, name, provider, status, provider_user_id, created_at FROM accounts WHERE id = ?")
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
        let row =
            sqlx::query("SELECT id, name, provider, status, provider_user_id, created_at FROM accounts WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| self.account_from_row(&r)).transpose()
    }

    async fn remove_account(&self, name: &str) -> Result<Removal, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT id FROM accounts WHERE name = ?").bind(name).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            return Err(StoreError::NoSuchAccount(name.into()));
        };
        let id: i64 = row.try_get("id")?;
        sqlx::query("DELETE FROM tokens WHERE account_id = ?").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM cursors WHERE account_id = ?").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM schedule WHERE account_id = ?").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM consents WHERE account_id = ?").bind(id).execute(&mut *tx).await?;
        let dropped =
            sqlx::query("DELETE FROM outbox WHERE account_id = ?").bind(id).execute(&mut *tx).await?.rows_affected();
        sqlx::query(
            "UPDATE accounts SET status = 'removed', provider_user_id = NULL, lease_owner = NULL, lease_until = NULL,
                 updated_at = ? WHERE id = ?",
        )
        .bind(self.now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Removal { dropped_messages: dropped })
    }

    async fn set_status(&self, account_id: i64, status: AccountStatus) -> Result<(), StoreError> {
        sqlx::query("UPDATE accounts SET status = ?, updated_at = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(self.now())
            .bind(account_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_provider_user_id(&self, account_id: i64, user_id: &str) -> Result<(), StoreError> {
        let sealed = self.cipher.seal(account_id, USER_ID, user_id)?;
        sqlx::query("UPDATE accounts SET provider_user_id = ?, updated_at = ? WHERE id = ? AND status <> 'removed'")
            .bind(sealed)
            .bind(self.now())
            .bind(account_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn tokens(&self, account_id: i64) -> Result<Option<Tokens>, StoreError> {
        let row = sqlx::query("SELECT refresh_token, access_token, access_expires_at FROM tokens WHERE account_id = ?")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let refresh: Vec<u8> = row.try_get(REFRESH)?;
        let access: Option<Vec<u8>> = row.try_get(ACCESS)?;
        let expires: Option<String> = row.try_get("access_expires_at")?;
        Ok(Some(Tokens {
            refresh_token: SecretString::from(self.cipher.open(account_id, REFRESH, &refresh)?),
            access_token: match access {
                Some(bytes) => Some(SecretString::from(self.cipher.open(account_id, ACCESS, &bytes)?)),
                None => None,
            },
            access_expires_at: expires.map(|t| parse_time("tokens.access_expires_at", &t)).transpose()?,
        }))
    }

    async fn save_tokens(&self, account_id: i64, tokens: &Tokens) -> Result<(), StoreError> {
        let refresh = self.cipher.seal_secret(account_id, REFRESH, &tokens.refresh_token)?;
        let access =
            tokens.access_token.as_ref().map(|t| self.cipher.seal_secret(account_id, ACCESS, t)).transpose()?;
        sqlx::query(
            "INSERT INTO tokens (account_id, refresh_token, access_token, access_expires_at, updated_at)
             SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ? AND status <> 'removed')
             ON CONFLICT (account_id) DO UPDATE SET refresh_token = excluded.refresh_token,
                 access_token = excluded.access_token, access_expires_at = excluded.access_expires_at,
                 updated_at = excluded.updated_at",
        )
        .bind(account_id)
        .bind(refresh)
        .bind(access)
        .bind(tokens.access_expires_at.map(|t| t.to_rfc3339()))
        .bind(self.now())
        .bind(account_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn cursor(&self, account_id: i64, dataset: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT position FROM cursors WHERE account_id = ? AND dataset = ?")
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
        let mut tx = self.pool.begin().await?;
        // A withdrawn account takes nothing more: a sync that was running when the person
        // left writes nothing. The check is a write, so the transaction takes SQLite's
        // write lock first (waiting its turn) instead of failing to upgrade a read.
        let live = sqlx::query("UPDATE accounts SET updated_at = updated_at WHERE id = ? AND status <> 'removed'")
            .bind(account_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if live == 0 {
            return Ok(0);
        }
        let mut inserted = 0;
        let created = self.now();
        for e in entries {
            inserted += sqlx::query(
                "INSERT INTO outbox (message_id, account_id, stream, partition_key, payload, created_at)
                 SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM published WHERE message_id = ?)
                 ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(&e.message_id)
            .bind(account_id)
            .bind(&e.stream)
            .bind(&e.partition_key)
            .bind(&e.payload)
            .bind(&created)
            .bind(&e.message_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        for (e, error) in quarantined {
            sqlx::query(
                "INSERT INTO outbox (message_id, account_id, stream, partition_key, payload, status, last_error, created_at)
                 VALUES (?, ?, ?, ?, ?, 'quarantined', ?, ?) ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(&e.message_id)
            .bind(account_id)
            .bind(&e.stream)
            .bind(&e.partition_key)
            .bind(&e.payload)
            .bind(error)
            .bind(&created)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO cursors (account_id, dataset, position, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (account_id, dataset) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        )
        .bind(account_id)
        .bind(dataset)
        .bind(cursor)
        .bind(&created)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<Pending>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, message_id, stream, partition_key, payload, attempts FROM outbox
             WHERE status = 'pending' ORDER BY seq LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pending_from_row).collect()
    }

    async fn outbox_claim(&self, lease: &Lease, limit: u32) -> Result<Vec<Pending>, StoreError> {
        // A SQLite file serves one worker, so earlier leases (of a process that was
        // killed, say) never hold work back; they are recorded for diagnostics only.
        let rows = sqlx::query(
            "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE seq IN (
                 SELECT seq FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT ?)
             RETURNING seq, message_id, stream, partition_key, payload, attempts",
        )
        .bind(&lease.worker)
        .bind(lease.until_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut pending = rows.iter().map(pending_from_row).collect::<Result<Vec<_>, _>>()?;
        pending.sort_by_key(|p| p.seq);
        Ok(pending)
    }

    async fn claim_accounts(&self, lease: &Lease, datasets: &[&str], limit: u32) -> Result<Vec<Account>, StoreError> {
        let list = serde_json::Value::from(datasets.to_vec()).to_string();
        let rows = sqlx::query(
            "UPDATE accounts SET lease_owner = ?, lease_until = ? WHERE id IN (
                 SELECT a.id FROM accounts a
                 WHERE a.status = 'active'
                   AND EXISTS (SELECT 1 FROM json_each(?) d
                               LEFT JOIN schedule s ON s.account_id = a.id AND s.dataset = d.value
                               WHERE s.next_due IS NULL OR s.next_due <= ?)
                 ORDER BY a.id LIMIT ?)
             RETURNING id, name, provider, status, provider_user_id, created_at",
        )
        .bind(&lease.worker)
        .bind(lease.until_ms)
        .bind(list)
        .bind(lease.now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut accounts = rows.iter().map(|r| self.account_from_row(r)).collect::<Result<Vec<_>, _>>()?;
        accounts.sort_by_key(|a| a.id);
        Ok(accounts)
    }

    async fn schedule(&self, account_id: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT dataset, next_due FROM schedule WHERE account_id = ? ORDER BY dataset")
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
                 SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ? AND status <> 'removed')
                 ON CONFLICT (account_id, dataset) DO UPDATE SET next_due = excluded.next_due",
            )
            .bind(account_id)
            .bind(dataset)
            .bind(due)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE accounts SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?")
            .bind(account_id)
            .bind(worker)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_oldest(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT created_at FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("created_at")?;
        parse_time("outbox.created_at", &text).map(Some)
    }

    async fn renew_account_lease(&self, lease: &Lease, account_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE accounts SET lease_until = ? WHERE id = ? AND lease_owner = ?")
            .bind(lease.until_ms)
            .bind(account_id)
            .bind(&lease.worker)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_worker(&self, worker: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE accounts SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?")
            .bind(worker)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?")
            .bind(worker)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_release(&self, worker: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?")
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_consent(&self, account_id: i64, consent: &Consent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO consents (account_id, provider, scopes, granted_at, leave_hash) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (account_id) DO UPDATE SET provider = excluded.provider, scopes = excluded.scopes,
                 granted_at = excluded.granted_at, leave_hash = excluded.leave_hash",
        )
        .bind(account_id)
        .bind(consent.provider.as_str())
        .bind(&consent.scopes)
        .bind(consent.granted_at.to_rfc3339())
        .bind(&consent.leave_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn consent(&self, account_id: i64) -> Result<Option<Consent>, StoreError> {
        let row = sqlx::query("SELECT provider, scopes, granted_at, leave_hash FROM consents WHERE account_id = ?")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let granted: String = r.try_get("granted_at")?;
        Ok(Some(Consent {
            provider: parse_provider(r.try_get("provider")?)?,
            scopes: r.try_get("scopes")?,
            granted_at: parse_time("consents.granted_at", &granted)?,
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
        // Two set-based statements, whatever the number of messages.
        let list = format!("[{}]", seqs.iter().map(i64::to_string).collect::<Vec<_>>().join(","));
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO published (message_id, published_at)
             SELECT message_id, ? FROM outbox WHERE seq IN (SELECT value FROM json_each(?))
             ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(self.now())
        .bind(&list)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM outbox WHERE seq IN (SELECT value FROM json_each(?))")
            .bind(&list)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn prune_published(&self, retention: std::time::Duration) -> Result<u64, StoreError> {
        let older_than = self.clock.now() - chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
        let done = sqlx::query("DELETE FROM published WHERE published_at < ?")
            .bind(older_than.to_rfc3339())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn outbox_attempt_failed(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, lease_owner = NULL, lease_until = NULL WHERE seq = ?",
        )
            .bind(error)
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox_quarantine(&self, seq: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE outbox SET status = 'quarantined', attempts = attempts + 1, last_error = ? WHERE seq = ?")
            .bind(error)
            .bind(seq)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn quarantined_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE status = 'quarantined'")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests;
