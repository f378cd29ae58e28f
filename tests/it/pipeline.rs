//! The sync pass against the simulator: outbox and cursor, restarts without duplicates,
//! one person's failure isolated, single-flight refresh, retries, pagination.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use secrecy::ExposeSecret;
use wearbridge::pipeline::Output;
use wearbridge::simulator::Fault;
use wearbridge::store::{AccountStatus, Store};

/// Collects dry-run deliveries in memory.
use common::Collect;

async fn outbox_ids(store: &wearbridge::store::SqlStore) -> Vec<String> {
    sqlx::query_scalar("SELECT message_id FROM outbox ORDER BY seq")
        .fetch_all(store.sqlite_pool().expect("a SQLite store"))
        .await
        .unwrap()
}

async fn outbox_ids_of(store: &wearbridge::store::SqlStore, message_type: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT message_id FROM outbox WHERE payload LIKE ? ORDER BY seq")
        .bind(format!("%\"name\":\"{message_type}\"%"))
        .fetch_all(store.sqlite_pool().expect("a SQLite store"))
        .await
        .unwrap()
}

#[tokio::test]
async fn outbox_pass_moves_cursor_and_restart_adds_no_duplicates() {
    let sim = common::simulator(2, 11).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "1d").await;
    let summary = h.pipeline.run_pass(&Output::Outbox).await.unwrap();
    assert_eq!((summary.accounts, summary.synced, summary.failed), (2, 2, 0));
    let served = sim.request_count("points.heart-rate");
    assert_eq!(outbox_ids_of(&h.store, "heart-rate").await.len() as u64, served, "every served sample once");
    let first = outbox_ids(&h.store).await;
    assert_eq!(summary.messages, first.len() as u64);
    for p in sim.people() {
        let account = h.store.account(&p.name).await.unwrap().unwrap();
        assert!(h.store.cursor(account.id, "heart_rate").await.unwrap().is_some());
        assert_eq!(account.provider_user_id.as_deref(), Some(p.health_user_id.as_str()));
    }

    // A restart: a new pipeline over the same store re-reads the look-back window only.
    let again = h.reopen();
    let second = again.run_pass(&Output::Outbox).await.unwrap();
    assert_eq!(second.synced, 2);
    let after = outbox_ids(&h.store).await;
    let unique: BTreeSet<_> = after.iter().collect();
    assert_eq!(unique.len(), after.len(), "no duplicate ids");
    assert!(after.len() >= first.len() && after.len() <= first.len() + 6, "only genuinely new readings are added");
    assert!(sim.request_count("points.heart-rate") - served < served / 2, "the second pass reads the look-back only");
}

#[tokio::test]
async fn dry_run_is_deterministic_and_persists_only_tokens() {
    let sim = common::simulator(2, 12).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "12h").await;
    let a = Arc::new(Collect::default());
    let b = Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(a.clone())).await.unwrap();
    h.pipeline.run_pass(&Output::DryRun(b.clone())).await.unwrap();
    assert_eq!(a.len(), 146, "at the pinned instant");
    let (ia, ib) = (a.ids(), b.ids());
    assert_eq!(ia.len(), a.len(), "ids are unique");
    let common_ids = ia.intersection(&ib).count();
    assert!(common_ids + 2 >= ia.len(), "re-reading yields the same ids");

    assert!(outbox_ids(&h.store).await.is_empty(), "dry run writes no outbox");
    let cursors: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cursors")
        .fetch_one(h.store.sqlite_pool().expect("a SQLite store"))
        .await
        .unwrap();
    assert_eq!(cursors, 0, "dry run moves no cursor");
    let account = h.store.account(&sim.people()[0].name).await.unwrap().unwrap();
    assert!(account.provider_user_id.is_none(), "dry run stores no provider id");
    let tokens = h.store.tokens(account.id).await.unwrap().unwrap();
    assert!(tokens.access_token.is_some(), "refreshed tokens are persisted");
}

#[tokio::test]
async fn a_revoked_person_does_not_stop_the_others() {
    let sim = common::simulator(3, 13).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "6h").await;
    sim.revoke(1);
    let out = Arc::new(Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.synced, summary.needs_reconsent, summary.failed), (2, 1, 0));
    let revoked = h.store.account(&sim.people()[1].name).await.unwrap().unwrap();
    assert_eq!(revoked.status, AccountStatus::NeedsReconsent);
    let tokens = h.store.tokens(revoked.id).await.unwrap().unwrap();
    assert_eq!(tokens.refresh_token.expose_secret(), sim.people()[1].refresh_token, "a failed refresh erases nothing");
    let subjects: BTreeSet<String> = out.0.lock().unwrap().iter().map(|d| d.partition_key.clone()).collect();
    assert_eq!(subjects.len(), 2);
    // The next pass skips the account instead of hammering the token endpoint.
    let before = sim.request_count("google.token");
    let summary = h.pipeline.run_pass(&Output::DryRun(out)).await.unwrap();
    assert_eq!(summary.accounts, 2);
    assert_eq!(sim.request_count("google.token"), before);
}

#[tokio::test]
async fn concurrent_token_requests_share_one_refresh() {
    let sim = common::simulator(1, 14).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "1h").await;
    let account = h.store.account(&sim.people()[0].name).await.unwrap().unwrap();
    let tokens = h.pipeline.tokens();
    let calls = (0..16).map(|_| tokens.access_token(&account));
    let results = futures::future::join_all(calls).await;
    let distinct: BTreeSet<String> = results.into_iter().map(|r| r.unwrap().expose_secret().to_owned()).collect();
    assert_eq!(distinct.len(), 1);
    assert_eq!(sim.request_count("google.token"), 1, "16 concurrent callers, one upstream refresh");
}

#[tokio::test]
async fn rotated_refresh_tokens_are_persisted() {
    let sim = common::simulator(1, 15).await;
    sim.set_google_rotation(true);
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "1h").await;
    h.pipeline.run_pass(&Output::DryRun(Arc::new(Collect::default()))).await.unwrap();
    let account = h.store.account(&sim.people()[0].name).await.unwrap().unwrap();
    let stored = h.store.tokens(account.id).await.unwrap().unwrap();
    assert_ne!(stored.refresh_token.expose_secret(), sim.people()[0].refresh_token, "the rotated token replaced it");
    // Force another refresh: it must use the rotated token (the old one is dead upstream).
    let access = h.pipeline.tokens().force_refresh(&account).await;
    assert!(access.is_ok(), "{access:?}");
}

#[tokio::test]
async fn transient_faults_are_retried_and_a_401_refreshes_once() {
    let sim = common::simulator(1, 16).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "6h").await;
    sim.faults().inject("google.token", Fault::Status(500), 1);
    sim.faults().inject("google.identity", Fault::Status(401), 1);
    sim.faults().inject("google.dataPoints.heart-rate", Fault::Malformed, 1);
    sim.faults().inject("google.dataPoints.heart-rate", Fault::Truncated, 1);
    sim.faults().inject("google.dataPoints.heart-rate", Fault::RateLimited { retry_after: None }, 1);
    let out = Arc::new(Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.synced, summary.failed), (1, 0), "{summary:?}");
    assert_eq!(out.len(), 39, "at the pinned instant");
    assert_eq!(sim.request_count("google.token"), 3, "one retry after the 500, one refresh after the 401");
    assert_eq!(sim.request_count("google.dataPoints.heart-rate"), 4);
}

#[tokio::test]
async fn persistent_failure_fails_that_account_only() {
    let sim = common::simulator(2, 17).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "6h").await;
    sim.faults().inject_for_person("google.dataPoints.heart-rate", 0, Fault::Status(500), 100);
    let summary = h.pipeline.run_pass(&Output::Outbox).await.unwrap();
    assert_eq!((summary.synced, summary.failed), (1, 1), "{summary:?}");
    let broken = h.store.account(&sim.people()[0].name).await.unwrap().unwrap();
    let fine = h.store.account(&sim.people()[1].name).await.unwrap().unwrap();
    assert!(
        h.store.cursor(broken.id, "heart_rate").await.unwrap().is_none(),
        "a failed account's cursor does not move"
    );
    assert!(h.store.cursor(fine.id, "heart_rate").await.unwrap().is_some());
    assert_eq!(broken.status, AccountStatus::Active, "a server error is not a consent problem");
    assert!(!outbox_ids(&h.store).await.is_empty());
}

#[tokio::test]
async fn every_page_is_read() {
    let sim = common::simulator(1, 18).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness_with(&sim, &dir, "1d", |s| s.fitbit.page_size = 40).await;
    let out = Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    let served = sim.request_count("points.heart-rate") as usize;
    assert_eq!(out.count("heart-rate"), served);
    assert_eq!(served, 139, "a day of samples");
    assert_eq!(sim.request_count("google.dataPoints.heart-rate") as usize, served.div_ceil(40));
    assert_eq!(out.ids().len(), out.len());
}

#[tokio::test]
async fn no_provider_identifier_or_secret_in_any_payload() {
    let sim = common::simulator(3, 19).await;
    let dir = tempfile::tempdir().unwrap();
    let h = common::harness(&sim, &dir, "6h").await;
    let out = Arc::new(Collect::default());
    h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    let text: String = out.0.lock().unwrap().iter().map(|d| serde_json::to_string(d).unwrap()).collect();
    for p in sim.people() {
        for needle in [&p.health_user_id, &p.legacy_user_id, &p.refresh_token, &p.device_name.to_string()] {
            assert!(!text.contains(needle.as_str()), "{needle} leaked");
        }
        assert!(!text.contains(p.time_zone.name()));
    }
    assert!(!text.contains("ya29."), "no access token");
    assert!(!text.contains("utcOffset") && !text.contains("-18000s") && !text.contains("-14400s"));
}
