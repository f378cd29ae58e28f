use secrecy::ExposeSecret;

use super::*;
use crate::store::migrations::{Migration, run_sqlite};
use crate::store::{AccountStatus, Tokens};

async fn open(dir: &tempfile::TempDir) -> SqlStore {
    SqlStore::open_sqlite(&dir.path().join("t.db"), TokenCipher::new([3; 32])).await.unwrap()
}

#[tokio::test]
async fn migrations_are_idempotent_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    assert!(run_sqlite(store.sqlite_pool().unwrap(), SQLITE).await.unwrap().is_empty(), "second run applies nothing");
    let tables: Vec<String> = sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(store.sqlite_pool().unwrap())
        .await
        .unwrap();
    for t in ["accounts", "consents", "cursors", "outbox", "published", "schedule", "schema_migrations", "tokens"] {
        assert!(tables.iter().any(|x| x == t), "missing {t}: {tables:?}");
    }
    let mut changed: Vec<Migration> =
        SQLITE.iter().map(|m| Migration { version: m.version, name: m.name, sql: m.sql }).collect();
    changed[0].sql = "SELECT 1";
    let err = run_sqlite(store.sqlite_pool().unwrap(), &changed).await.unwrap_err().to_string();
    assert!(err.contains("differs"), "{err}");
    let err = run_sqlite(store.sqlite_pool().unwrap(), &SQLITE[..1]).await.unwrap_err().to_string();
    assert!(err.contains("newer"), "{err}");
    let mut next: Vec<Migration> =
        SQLITE.iter().map(|m| Migration { version: m.version, name: m.name, sql: m.sql }).collect();
    let extra = SQLITE.len() as i64 + 1;
    next.push(Migration { version: extra, name: "extra", sql: "CREATE TABLE extra (x INTEGER)" });
    assert_eq!(run_sqlite(store.sqlite_pool().unwrap(), &next).await.unwrap(), vec![extra]);
}

#[tokio::test]
async fn accounts_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::pinned(chrono::TimeZone::with_ymd_and_hms(&Utc, 2027, 3, 28, 0, 30, 0).unwrap());
    let store = open(&dir).await.with_clock(clock.clone());
    let rt = SecretString::from("rt-1");
    let a = store.add_account("alice", crate::sources::fitbit::PROVIDER, &rt).await.unwrap();
    assert_eq!(a.status, AccountStatus::Active);
    assert!(matches!(
        store.add_account("alice", crate::sources::fitbit::PROVIDER, &rt).await,
        Err(StoreError::AccountExists(_))
    ));
    assert!(matches!(
        store.add_account("bad name", crate::sources::fitbit::PROVIDER, &rt).await,
        Err(StoreError::BadAccountName(_))
    ));
    store.set_provider_user_id(a.id, "hu-123").await.unwrap();
    store.set_status(a.id, AccountStatus::NeedsReconsent).await.unwrap();
    let got = store.account("alice").await.unwrap().unwrap();
    assert_eq!(got.provider_user_id.as_deref(), Some("hu-123"));
    assert_eq!(got.status, AccountStatus::NeedsReconsent);

    let entry =
        OutboxEntry { message_id: "m1".into(), stream: "s".into(), partition_key: "p".into(), payload: "{}".into() };
    assert_eq!(store.commit_batch(a.id, "heart_rate", "c1", std::slice::from_ref(&entry), &[]).await.unwrap(), 1);
    assert_eq!(
        store.commit_batch(a.id, "heart_rate", "c2", &[entry], &[]).await.unwrap(),
        0,
        "same id is not added twice"
    );
    assert_eq!(store.cursor(a.id, "heart_rate").await.unwrap().as_deref(), Some("c2"));
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    let bad =
        OutboxEntry { message_id: "m2".into(), stream: "s".into(), partition_key: "p".into(), payload: "{}".into() };
    store.commit_batch(a.id, "heart_rate", "c3", &[], &[(bad, "body: missing".into())]).await.unwrap();
    assert_eq!((store.outbox_len().await.unwrap(), store.quarantined_len().await.unwrap()), (1, 1));
    // Once published, a re-read of the same message does not queue it again.
    let pending = store.outbox_pending(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    store.outbox_ack(&[pending[0].seq]).await.unwrap();
    let again =
        OutboxEntry { message_id: "m1".into(), stream: "s".into(), partition_key: "p".into(), payload: "{}".into() };
    assert_eq!(store.commit_batch(a.id, "heart_rate", "c4", &[again], &[]).await.unwrap(), 0);
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    let memory = Duration::from_secs(60 * 86_400);
    clock.advance(chrono::TimeDelta::days(60));
    assert_eq!(store.prune_published(memory).await.unwrap(), 0, "remembered for the whole retention");
    clock.advance(chrono::TimeDelta::seconds(1));
    assert_eq!(store.prune_published(memory).await.unwrap(), 1);

    let removal = store.remove_account("alice").await.unwrap();
    assert_eq!(removal.dropped_messages, 1, "the quarantined message of the withdrawn account");
    assert!(store.tokens(a.id).await.unwrap().is_none());
    assert!(store.cursor(a.id, "heart_rate").await.unwrap().is_none());
    assert_eq!(store.account("alice").await.unwrap().unwrap().status, AccountStatus::Removed);
    assert!(matches!(store.remove_account("nobody").await, Err(StoreError::NoSuchAccount(_))));
    let again =
        store.add_account("alice", crate::sources::fitbit::PROVIDER, &SecretString::from("rt-2")).await.unwrap();
    assert_eq!(again.id, a.id);
    assert_eq!(store.tokens(a.id).await.unwrap().unwrap().refresh_token.expose_secret(), "rt-2");
}

#[tokio::test]
async fn tokens_are_encrypted_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let a = store
        .add_account("bob", crate::sources::fitbit::PROVIDER, &SecretString::from("REFRESH-CANARY-0001"))
        .await
        .unwrap();
    let expires = chrono::TimeZone::with_ymd_and_hms(&Utc, 2027, 1, 1, 0, 0, 0).unwrap();
    store
        .save_tokens(
            a.id,
            &Tokens {
                refresh_token: SecretString::from("REFRESH-CANARY-0002"),
                access_token: Some(SecretString::from("ACCESS-CANARY-0003")),
                access_expires_at: Some(expires),
            },
        )
        .await
        .unwrap();
    store.set_provider_user_id(a.id, "USERID-CANARY-0004").await.unwrap();
    let t = store.tokens(a.id).await.unwrap().unwrap();
    assert_eq!(t.refresh_token.expose_secret(), "REFRESH-CANARY-0002");
    assert_eq!(t.access_token.unwrap().expose_secret(), "ACCESS-CANARY-0003");
    store.sqlite_pool().unwrap().close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for canary in ["REFRESH-CANARY", "ACCESS-CANARY", "USERID-CANARY"] {
        assert!(!bytes.windows(canary.len()).any(|w| w == canary.as_bytes()), "{canary} found in clear");
    }
    let wrong = SqlStore::open_sqlite(&dir.path().join("t.db"), TokenCipher::new([4; 32])).await.unwrap();
    let err = wrong.tokens(a.id).await.unwrap_err().to_string();
    assert!(err.contains("store.key_file") && !err.contains("CANARY"), "{err}");
}

#[tokio::test]
async fn a_removed_account_takes_no_more_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let a = store.add_account("alice", crate::sources::fitbit::PROVIDER, &SecretString::from("rt")).await.unwrap();
    store.remove_account("alice").await.unwrap();
    let entry =
        OutboxEntry { message_id: "m".into(), stream: "s".into(), partition_key: "p".into(), payload: "{}".into() };
    assert_eq!(store.commit_batch(a.id, "sleep", "c", &[entry], &[]).await.unwrap(), 0);
    let tokens = Tokens { refresh_token: SecretString::from("late"), access_token: None, access_expires_at: None };
    store.save_tokens(a.id, &tokens).await.unwrap();
    store.set_provider_user_id(a.id, "late-id").await.unwrap();
    store.release_account("w", a.id, &[("sleep".into(), 1)], Some(&[])).await.unwrap();
    assert!(store.tokens(a.id).await.unwrap().is_none());
    assert!(store.cursor(a.id, "sleep").await.unwrap().is_none());
    assert!(store.schedule(a.id).await.unwrap().is_empty());
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    assert!(store.account("alice").await.unwrap().unwrap().provider_user_id.is_none());
}

/// Migration 5 rebuilds `accounts` (to drop the provider CHECK): every child row survives
/// (with foreign keys on, dropping the old table would have cascaded into them), the
/// foreign keys still hold, ids are never reused, and a new provider name is accepted.
#[tokio::test]
async fn rebuilding_accounts_keeps_every_row_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
    let v4 = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    run_sqlite(&v4, &SQLITE[..4]).await.unwrap();
    for sql in [
        "INSERT INTO accounts (name, provider, status, created_at, updated_at) VALUES ('a', 'fitbit', 'active', '2026-11-30T12:00:00Z', '2026-11-30T12:00:00Z')",
        "INSERT INTO accounts (name, provider, status, created_at, updated_at) VALUES ('b', 'withings', 'active', '2026-11-30T12:00:00Z', '2026-11-30T12:00:00Z')",
        "INSERT INTO accounts (name, provider, status, created_at, updated_at) VALUES ('c', 'fitbit', 'active', '2026-11-30T12:00:00Z', '2026-11-30T12:00:00Z')",
        "UPDATE accounts SET status = 'removed' WHERE name = 'c'",
        "INSERT INTO tokens (account_id, refresh_token, updated_at) VALUES (1, x'00', 't')",
        "INSERT INTO cursors (account_id, dataset, position, updated_at) VALUES (2, 'body', 'p', 't')",
        "INSERT INTO outbox (message_id, account_id, stream, partition_key, payload, created_at) VALUES ('m', 2, 's', 'k', '{}', 't')",
        "INSERT INTO schedule (account_id, dataset, next_due) VALUES (1, 'sleep', 5)",
        "INSERT INTO consents (account_id, provider, scopes, granted_at, leave_hash) VALUES (1, 'fitbit', 's', 't', 'h')",
    ] {
        sqlx::query(sql).execute(&v4).await.unwrap();
    }
    v4.close().await;

    let store = SqlStore::open_sqlite(&path, TokenCipher::new([3; 32])).await.unwrap();
    let pool = store.sqlite_pool().unwrap();
    let count = async |table: &str| -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(pool).await.unwrap()
    };
    for (table, rows) in
        [("accounts", 3), ("tokens", 1), ("cursors", 1), ("outbox", 1), ("schedule", 1), ("consents", 1)]
    {
        assert_eq!(count(table).await, rows, "{table}");
    }
    let b = store.account("b").await.unwrap().unwrap();
    assert_eq!((b.id, b.provider.as_str()), (2, "withings"));
    // Foreign keys are on again and still point at accounts.
    let orphan =
        sqlx::query("INSERT INTO cursors (account_id, dataset, position, updated_at) VALUES (99, 'x', 'p', 't')")
            .execute(pool)
            .await;
    assert!(orphan.is_err(), "a cursor of no account is refused");
    // The id sequence carried over, and a provider outside the old CHECK is stored.
    sqlx::query("INSERT INTO accounts (name, provider, status, created_at, updated_at) VALUES ('d', 'oura', 'active', '2026-11-30T12:00:00Z', '2026-11-30T12:00:00Z')")
        .execute(pool)
        .await
        .unwrap();
    let id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE name = 'd'").fetch_one(pool).await.unwrap();
    assert_eq!(id, 4);
    // A provider this build has no source for is reported, not guessed at, and does not
    // stop the others from being listed.
    let err = store.account("d").await.unwrap_err().to_string();
    assert!(err.contains("oura"), "{err}");
    let listed: Vec<String> = store.accounts().await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(listed, ["a", "b", "c"]);
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_store_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    store.add_account("a", crate::sources::fitbit::PROVIDER, &SecretString::from("r")).await.unwrap();
    for name in ["t.db", "t.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
}

/// Accounts enrolled before migration 7 get the keyed hash of their upstream id when the
/// store opens, so a later enrolment of the same upstream account is refused; two old
/// accounts that are one upstream account keep working (one is reported) until one goes.
#[tokio::test]
async fn accounts_from_before_people_are_keyed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v6.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true).foreign_keys(true);
    let v6 = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    run_sqlite(&v6, &SQLITE[..6]).await.unwrap();
    let cipher = TokenCipher::new([3; 32]);
    for (id, name, provider, user_id) in [
        (1, "alice", "fitbit", "U1"),
        (2, "bob", "fitbit", "U1"),
        (3, "carol", "withings", "U1"),
        (4, "dan", "fitbit", ""),
    ] {
        let sealed = (!user_id.is_empty()).then(|| cipher.seal(id, USER_ID, user_id).unwrap());
        sqlx::query(
            "INSERT INTO accounts (id, name, provider, status, provider_user_id, created_at, updated_at)
             VALUES ($1, $2, $3, 'active', $4, '2026-11-30T12:00:00Z', '2026-11-30T12:00:00Z')",
        )
        .bind(id)
        .bind(name)
        .bind(provider)
        .bind(sealed)
        .execute(&v6)
        .await
        .unwrap();
    }
    v6.close().await;

    let store = SqlStore::open_sqlite(&path, TokenCipher::new([3; 32])).await.unwrap();
    let keyed = async |name: &str| -> bool {
        sqlx::query_scalar::<_, Option<String>>("SELECT provider_user_key FROM accounts WHERE name = $1")
            .bind(name)
            .fetch_one(store.sqlite_pool().unwrap())
            .await
            .unwrap()
            .is_some()
    };
    assert!(keyed("alice").await && keyed("carol").await, "keyed at open");
    assert!(!keyed("bob").await, "the same upstream account as alice's: reported, left unkeyed");
    assert!(!keyed("dan").await, "no upstream id yet: keyed at its first sync");
    // Every old account still works.
    assert_eq!(store.accounts().await.unwrap().len(), 4);
    // A new enrolment of alice's upstream account is refused, naming her.
    let erin = store.add_account("erin", crate::sources::fitbit::PROVIDER, &SecretString::from("r")).await.unwrap();
    let err = store.set_provider_user_id(erin.id, "U1").await.unwrap_err();
    assert!(matches!(&err, StoreError::AlreadyEnrolled { person } if person == "alice"), "{err}");
    // Once alice is removed, bob's (the same upstream account) is keyed at the next open.
    store.remove_account("alice").await.unwrap();
    store.close().await;
    let store = SqlStore::open_sqlite(&path, TokenCipher::new([3; 32])).await.unwrap();
    let bob: Option<String> = sqlx::query_scalar("SELECT provider_user_key FROM accounts WHERE name = 'bob'")
        .fetch_one(store.sqlite_pool().unwrap())
        .await
        .unwrap();
    assert!(bob.is_some());
}
