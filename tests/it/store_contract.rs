//! One store contract, run against both backends: the embedded SQLite file and a real
//! PostgreSQL server. What differs by design is tested where it lives: SQLite records
//! leases without honouring them (one worker per file), PostgreSQL honours them
//! (`postgres.rs`).

use crate::common::{self, entry};

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use wearbridge::sources::fitbit::PROVIDER as FITBIT;
use wearbridge::sources::withings::PROVIDER as WITHINGS;
use wearbridge::store::{AccountStatus, Lease, SqlStore, Store, StoreError, TokenCipher, Tokens};

/// The contract. `reopen` opens the same database again (as after a restart).
async fn contract<S: Store>(reopen: impl AsyncFn() -> S) {
    let store = reopen().await;
    let rt = SecretString::from("r1");
    let a = store.add_account("alice", FITBIT, &rt).await.unwrap();
    assert_eq!(a.status, AccountStatus::Active);
    // Reopening migrates nothing and keeps everything.
    let store = reopen().await;
    assert!(matches!(store.add_account("alice", FITBIT, &rt).await, Err(StoreError::AccountExists(_))));
    assert!(matches!(store.add_account("bad name", FITBIT, &rt).await, Err(StoreError::BadAccountName(_))));
    assert_eq!(store.tokens(a.id).await.unwrap().unwrap().refresh_token.expose_secret(), "r1");
    store.set_provider_user_id(a.id, "user-1").await.unwrap();
    store.set_status(a.id, AccountStatus::NeedsReconsent).await.unwrap();
    let got = store.account("alice").await.unwrap().unwrap();
    assert_eq!((got.provider_user_id.as_deref(), got.status), (Some("user-1"), AccountStatus::NeedsReconsent));
    store.set_status(a.id, AccountStatus::Active).await.unwrap();
    let expires = common::now() + chrono::TimeDelta::hours(1);
    let tokens = Tokens {
        refresh_token: SecretString::from("r2"),
        access_token: Some(SecretString::from("a2")),
        access_expires_at: Some(expires),
    };
    store.save_tokens(a.id, &tokens).await.unwrap();
    let back = store.tokens(a.id).await.unwrap().unwrap();
    assert_eq!(back.access_token.map(|t| t.expose_secret().to_owned()).as_deref(), Some("a2"));
    assert_eq!(back.access_expires_at, Some(expires), "times survive to the second and beyond");

    // The outbox: unique ids, the cursor moves with them, order kept, quarantine apart.
    let entries: Vec<_> = (0..10).map(entry).collect();
    assert_eq!(store.commit_batch(a.id, "heart_rate", "c1", &entries, &[]).await.unwrap(), 10);
    assert_eq!(store.commit_batch(a.id, "heart_rate", "c2", &entries, &[]).await.unwrap(), 0, "ids are unique");
    assert_eq!(store.cursor(a.id, "heart_rate").await.unwrap().as_deref(), Some("c2"));
    let bad = (entry(50), "body: missing".to_owned());
    store.commit_batch(a.id, "heart_rate", "c3", &[], std::slice::from_ref(&bad)).await.unwrap();
    assert_eq!((store.outbox_len().await.unwrap(), store.quarantined_len().await.unwrap()), (10, 1));
    let pending = store.outbox_pending(100).await.unwrap();
    assert_eq!(
        pending.iter().map(|p| p.entry.message_id.clone()).collect::<Vec<_>>(),
        (0..10).map(|n| entry(n).message_id).collect::<Vec<_>>(),
        "in order"
    );
    assert_eq!(pending[0].entry, entries[0], "stored as given");
    assert!(store.outbox_oldest().await.unwrap().is_some());

    // Published ids stay out of the outbox until they are forgotten.
    store.outbox_ack(&pending[..4].iter().map(|p| p.seq).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 6);
    assert_eq!(store.commit_batch(a.id, "heart_rate", "c4", &entries, &[]).await.unwrap(), 0, "published ids stay out");
    assert_eq!(store.prune_published(Duration::from_secs(3600)).await.unwrap(), 0);

    // A failed attempt keeps a message; a refusal quarantines it.
    store.outbox_attempt_failed(pending[4].seq, "HTTP 503").await.unwrap();
    store.outbox_quarantine(pending[5].seq, "HTTP 400").await.unwrap();
    assert_eq!((store.outbox_len().await.unwrap(), store.quarantined_len().await.unwrap()), (5, 2));

    // A claim is renewed for what the worker still holds, and released.
    let held = Lease::new("w1", Duration::from_secs(60), common::now());
    let mut claimed: Vec<i64> = store.outbox_claim(&held, 3).await.unwrap().iter().map(|p| p.seq).collect();
    assert_eq!(claimed.len(), 3);
    let unclaimed = store.outbox_pending(100).await.unwrap().last().unwrap().seq;
    assert!(!claimed.contains(&unclaimed));
    claimed.push(unclaimed);
    let mut renewed = store.outbox_renew(&held, &claimed).await.unwrap();
    renewed.sort_unstable();
    assert_eq!(renewed, claimed[..3], "what w1 claimed, not what it did not");
    let other = Lease::new("w2", Duration::from_secs(60), common::now());
    assert!(store.outbox_renew(&other, &claimed).await.unwrap().is_empty());
    store.outbox_release("w1").await.unwrap();
    assert!(store.outbox_renew(&held, &claimed).await.unwrap().is_empty(), "released");

    // Due accounts are claimed oldest due first; a dataset never synced is the oldest.
    let b = store.add_account("bob", WITHINGS, &SecretString::from("rb")).await.unwrap();
    let c = store.add_account("carol", FITBIT, &SecretString::from("rc")).await.unwrap();
    let now = common::now();
    let ago = |minutes: i64| (now - chrono::TimeDelta::minutes(minutes)).timestamp_millis();
    // (account, minutes since sleep was due, minutes since heart rate was due)
    let schedules = [(a.id, 5, -60), (b.id, 10, 10), (c.id, 1, 30)];
    let reschedule = async || {
        for (id, sleep, hr) in schedules {
            let next = [("sleep".to_owned(), ago(sleep)), ("heart_rate".to_owned(), ago(hr))];
            store.release_account("w1", id, &next, Some(&[])).await.unwrap();
        }
    };
    let lease = wearbridge::store::Lease::new("w1", Duration::from_secs(60), now);
    let datasets = ["sleep", "heart_rate"];
    reschedule().await;
    let mut all: Vec<String> = store
        .claim_accounts(&lease, &datasets, common::PROVIDERS, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    all.sort();
    assert_eq!(all, ["alice", "bob", "carol"], "each is due on one dataset at least");
    reschedule().await;
    let first = store.claim_accounts(&lease, &datasets, common::PROVIDERS, 1).await.unwrap();
    assert_eq!(first[0].name, "carol", "due 30 minutes ago: before bob (10) and alice (5)");
    reschedule().await;
    // The schedule lag is measured from the oldest due time, or from the enrolment of an
    // account with a dataset never synced.
    let thirty_ago = chrono::DateTime::from_timestamp_millis(ago(30));
    assert_eq!(store.oldest_due(&datasets).await.unwrap(), thirty_ago);
    let with_devices = ["sleep", "heart_rate", "devices"];
    assert_eq!(store.oldest_due(&with_devices).await.unwrap(), thirty_ago.min(Some(a.created_at)));
    assert_eq!(store.oldest_due(&["devices"]).await.unwrap(), Some(a.created_at), "alice enrolled first");
    let dave = store.add_account("dave", FITBIT, &SecretString::from("rd")).await.unwrap();
    let first = store.claim_accounts(&lease, &datasets, common::PROVIDERS, 1).await.unwrap();
    assert_eq!(first[0].id, dave.id, "never synced: the oldest due of all");
    store.remove_account("dave").await.unwrap();
    store.remove_account("carol").await.unwrap();
    reschedule().await;

    // Notifications: a note makes the dataset due (unless due sooner); repeated notes are
    // one due time; the earliest changed instant is kept; unknown users change nothing.
    store.set_provider_user_id(b.id, "withings-user-7").await.unwrap();
    let (t, hour) = (now.timestamp_millis(), 3_600_000);
    assert_eq!(store.note_push(WITHINGS, "someone-else", &["sleep"], t, None).await.unwrap(), None);
    assert_eq!(store.note_push(FITBIT, "withings-user-7", &["sleep"], t, None).await.unwrap(), None, "per provider");
    for (due, from) in [(t + 2_000, t - hour), (t + 5_000, t - 2 * hour), (t + 9_000, t - hour / 2)] {
        let noted = store.note_push(WITHINGS, "withings-user-7", &["body", "heart_rate"], due, Some(from)).await;
        assert_eq!(noted.unwrap(), Some(b.id));
    }
    let row = |rows: &[wearbridge::store::Scheduled], d: &str| rows.iter().find(|r| r.dataset == d).cloned().unwrap();
    let rows = store.schedule(b.id).await.unwrap();
    assert_eq!((row(&rows, "body").next_due, row(&rows, "body").push_from), (t + 2_000, Some(t - 2 * hour)));
    assert_eq!(row(&rows, "heart_rate").next_due, ago(10), "due sooner already: kept");
    assert!(row(&rows, "sleep").pushed_at.is_none());
    // A failed sync keeps the notes for its retry, at the retry's time.
    store.release_account("w1", b.id, &[("body".into(), t + 900_000)], None).await.unwrap();
    let after_failure = store.schedule(b.id).await.unwrap();
    assert_eq!(row(&after_failure, "body").next_due, t + 900_000);
    assert_eq!(row(&after_failure, "body").push_from, Some(t - 2 * hour), "the hint survives a failed sync");
    // A sync that read the notes serves them: cleared, next due as scheduled.
    store.release_account("w1", b.id, &[("body".into(), t + hour)], Some(&after_failure)).await.unwrap();
    let served = store.schedule(b.id).await.unwrap();
    assert_eq!((row(&served, "body").next_due, row(&served, "body").pushed_at), (t + hour, None));
    // A note that lands while a sync runs (after it read the schedule) keeps the dataset
    // due, with its hint.
    store.note_push(WITHINGS, "withings-user-7", &["body"], t + 3_000, Some(t)).await.unwrap();
    let read = store.schedule(b.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3)).await;
    store.note_push(WITHINGS, "withings-user-7", &["body"], t + 4_000, Some(t - 5)).await.unwrap();
    store.release_account("w1", b.id, &[("body".into(), t + hour)], Some(&read)).await.unwrap();
    let rows = store.schedule(b.id).await.unwrap();
    assert_eq!((row(&rows, "body").next_due, row(&rows, "body").push_from), (t + 3_000, Some(t - 5)));
    // Deletions are recorded, not acted on.
    let deleted = store.note_push_deletion(WITHINGS, "withings-user-7", "body", (Some(t - hour), Some(t))).await;
    assert_eq!((deleted.unwrap(), store.push_deletions(b.id).await.unwrap()), (Some(b.id), 1));
    assert_eq!(store.push_checked_at(b.id).await.unwrap(), None);
    store.set_push_checked(b.id, Some(t)).await.unwrap();
    assert_eq!(store.push_checked_at(b.id).await.unwrap(), Some(t));
    reschedule().await;

    // Scales: known by a keyed hash of kind and MAC; a slot assigned to a person gives
    // them a `local` account (once).
    let local = wearbridge::sources::local::PROVIDER;
    store.add_scale("bath", "aria", "00:1d:c9:12:34:56").await.unwrap();
    assert!(matches!(store.add_scale("bath", "aria", "00:1d:c9:00:00:01").await, Err(StoreError::ScaleExists(_))));
    assert!(matches!(store.add_scale("other", "aria", "00:1d:c9:12:34:56").await, Err(StoreError::ScaleExists(_))));
    let found = store.scale_by_mac("aria", "00:1d:c9:12:34:56").await.unwrap().unwrap();
    let scale_id = found.id;
    assert_eq!((found.name.as_str(), found.correction_s), ("bath", 0));
    // The auth code is pinned at first sight; the clock correction is kept.
    assert!(store.check_scale_auth(scale_id, &[1; 16]).await.unwrap());
    assert!(store.check_scale_auth(scale_id, &[1; 16]).await.unwrap());
    assert!(!store.check_scale_auth(scale_id, &[2; 16]).await.unwrap());
    store.set_scale_correction(scale_id, 86_400).await.unwrap();
    assert_eq!(store.scale_by_mac("aria", "00:1d:c9:12:34:56").await.unwrap().unwrap().correction_s, 86_400);
    assert_eq!(store.scale_by_mac("wbs01", "00:1d:c9:12:34:56").await.unwrap(), None, "per kind");
    let erin = store.assign_scale_slot("bath", 1, "erin").await.unwrap();
    assert_eq!((erin.person.as_str(), erin.provider), ("erin", local));
    assert_eq!(store.assign_scale_slot("bath", 2, "erin").await.unwrap().id, erin.id, "one local account");
    store.set_scale_weight(scale_id, 1, 70_500).await.unwrap();
    assert_eq!(store.scale_slots(scale_id).await.unwrap(), [(1, "erin".to_owned()), (2, "erin".to_owned())]);
    assert_eq!(store.scale_weights(scale_id).await.unwrap(), [(1, 70_500)]);
    assert_eq!(store.scales().await.unwrap()[0].slots.len(), 2);
    assert!(matches!(store.assign_scale_slot("nope", 1, "erin").await, Err(StoreError::NoSuchScale(_))));
    store.remove_scale("bath").await.unwrap();
    assert!(store.scales().await.unwrap().is_empty());
    assert!(matches!(store.remove_scale("bath").await, Err(StoreError::NoSuchScale(_))));
    store.remove_account(&erin.name).await.unwrap();

    // Removal drops everything of the account and takes no more writes.
    assert!(matches!(store.remove_account("nobody").await, Err(StoreError::NoSuchAccount(_))));
    let removal = store.remove_account("alice").await.unwrap();
    assert_eq!(removal.dropped_messages, 7, "five pending and two quarantined");
    assert_eq!(store.account("alice").await.unwrap().unwrap().status, AccountStatus::Removed);
    assert_eq!(store.commit_batch(a.id, "sleep", "c9", &[entry(99)], &[]).await.unwrap(), 0);
    store.save_tokens(a.id, &tokens).await.unwrap();
    store.set_provider_user_id(a.id, "late-id").await.unwrap();
    store.release_account("w1", a.id, &[("sleep".into(), 1)], Some(&[])).await.unwrap();
    assert!(store.tokens(a.id).await.unwrap().is_none());
    assert!(store.schedule(a.id).await.unwrap().is_empty());
    assert!(store.cursor(a.id, "sleep").await.unwrap().is_none());
    assert!(store.account("alice").await.unwrap().unwrap().provider_user_id.is_none());
    assert_eq!(store.account("bob").await.unwrap().unwrap().id, b.id);
    // Re-enrolling a removed name gives the same account back, fresh.
    let again = store.add_account("alice", FITBIT, &SecretString::from("r3")).await.unwrap();
    assert_eq!((again.id, again.status), (a.id, AccountStatus::Active));
    assert_eq!(store.tokens(a.id).await.unwrap().unwrap().refresh_token.expose_secret(), "r3");
    // Only providers this build has a source for are enrolled.
    let oura = anonymizer::Provider::new("oura");
    let err = store.add_account("olivia", oura, &SecretString::from("r4")).await.unwrap_err().to_string();
    assert!(err.contains("accounts.provider") && err.contains("oura"), "{err}");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn the_store_contract_holds_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    contract(async || SqlStore::open(&url, TokenCipher::new([7; 32])).await.unwrap()).await;
}

#[tokio::test]
async fn the_store_contract_holds_on_postgres() {
    let url = crate::postgres::fresh_database().await;
    contract(async || SqlStore::open(&url, TokenCipher::new([7; 32])).await.unwrap()).await;
}
