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
    store.release_account("w", a.id, &[("sleep".into(), 1)]).await.unwrap();
    assert!(store.tokens(a.id).await.unwrap().is_none());
    assert!(store.cursor(a.id, "sleep").await.unwrap().is_none());
    assert!(store.schedule(a.id).await.unwrap().is_empty());
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    assert!(store.account("alice").await.unwrap().unwrap().provider_user_id.is_none());
}
