//! Issue 19: people, not accounts. One person's Fitbit and Withings accounts publish
//! under one subject; one upstream account is enrolled once.

use std::collections::BTreeSet;
use std::sync::Arc;

use secrecy::SecretString;
use wearbridge::config::Settings;
use wearbridge::pipeline::Output;
use wearbridge::simulator::Simulator;
use wearbridge::sources::{fitbit, withings};
use wearbridge::store::{SqlStore, Store, StoreError, TokenCipher};

use crate::common::{self, Collect};

async fn store(sim: &Simulator, dir: &tempfile::TempDir, adjust: impl FnOnce(&mut Settings)) -> common::Harness {
    let mut s = common::settings(sim, dir, "2d");
    adjust(&mut s);
    let loaded = wearbridge::config::Loaded::from_settings(s);
    let clock = sim.clock().clone();
    let store = Arc::new(
        SqlStore::open(&loaded.settings.store.url, TokenCipher::new([9; 32])).await.unwrap().with_clock(clock.clone()),
    );
    let pipeline = common::pipeline_on(&loaded, store.clone(), &clock);
    common::Harness { store, pipeline, loaded, clock }
}

fn subjects(out: &Collect) -> BTreeSet<String> {
    out.all().iter().map(|m| m["subject"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn one_person_with_both_providers_publishes_under_one_subject() {
    let sim = common::simulator(1, 1901).await;
    let dir = tempfile::tempdir().unwrap();
    let h = store(&sim, &dir, |_| {}).await;
    let p = &sim.people()[0];
    h.store.add_account("alice", fitbit::PROVIDER, &SecretString::from(p.refresh_token.clone())).await.unwrap();
    let second = SecretString::from(p.withings_refresh_token.clone());
    let account = h.store.add_account("alice", withings::PROVIDER, &second).await.unwrap();
    assert_eq!((account.person.as_str(), account.name.as_str()), ("alice", "alice/withings"));
    // A second account of one provider for one person is refused.
    let again = h.store.add_account("alice", withings::PROVIDER, &second).await.unwrap_err();
    assert!(again.to_string().contains("alice (withings) is already enrolled"), "{again}");

    let out = Arc::new(Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!((summary.accounts, summary.synced), (2, 2));
    let types: BTreeSet<String> =
        out.all().iter().map(|m| m["header"]["schema_id"]["name"].as_str().unwrap().to_owned()).collect();
    for t in ["heart-rate", "daily-activity", "body-weight", "sleep-episode"] {
        assert!(types.contains(t), "{t} missing: {types:?}");
    }
    let providers: BTreeSet<String> =
        out.all().iter().map(|m| m["header"]["source_provider"].as_str().unwrap().to_owned()).collect();
    assert_eq!(providers, BTreeSet::from(["fitbit".to_owned(), "withings".to_owned()]));
    assert_eq!(subjects(&out).len(), 1, "every message of both providers carries one subject");
    let subject = subjects(&out).into_iter().next().unwrap();
    assert_eq!(subject, common::subject_of(&h.store, "alice", fitbit::PROVIDER, &p.health_user_id).await);
    // And it is neither account's own pseudonym.
    let key = anonymizer::PseudonymKey::new("t1", [5; 32]).unwrap();
    let per_account = anonymizer::Anonymizer::new(key, Default::default());
    assert_ne!(subject, per_account.subject(fitbit::PROVIDER, &p.health_user_id));
    assert_ne!(subject, per_account.subject(withings::PROVIDER, &p.withings_user_id.to_string()));

    // Operators who must not link keep one subject per account (a fresh simulator: the
    // Withings refresh token above was rotated).
    let sim = common::simulator(1, 1901).await;
    let p = &sim.people()[0];
    let second = SecretString::from(p.withings_refresh_token.clone());
    let dir = tempfile::tempdir().unwrap();
    let h = store(&sim, &dir, |s| s.anonymizer.link_providers = false).await;
    h.store.add_account("alice", fitbit::PROVIDER, &SecretString::from(p.refresh_token.clone())).await.unwrap();
    h.store.add_account("alice", withings::PROVIDER, &second).await.unwrap();
    let out = Arc::new(Collect::default());
    let summary = h.pipeline.run_pass(&Output::DryRun(out.clone())).await.unwrap();
    assert_eq!(summary.synced, 2);
    assert_eq!(subjects(&out).len(), 2);
}

#[tokio::test]
async fn the_same_upstream_account_is_enrolled_once() {
    let sim = common::simulator(1, 1902).await;
    let dir = tempfile::tempdir().unwrap();
    let h = store(&sim, &dir, |_| {}).await;
    let token = SecretString::from(sim.people()[0].refresh_token.clone());
    h.store.add_account("alice", fitbit::PROVIDER, &token).await.unwrap();
    h.pipeline.run_pass(&Output::Outbox).await.unwrap();
    let published = h.store.outbox_len().await.unwrap();
    assert!(published > 0);

    // Bob is enrolled with the same Fitbit account: his first sync learns whose it is
    // and is refused, naming Alice; nothing of his is published.
    h.store.add_account("bob", fitbit::PROVIDER, &token).await.unwrap();
    let summary = h.pipeline.run_pass(&Output::Outbox).await.unwrap();
    assert_eq!((summary.synced, summary.failed), (1, 1));
    assert_eq!(h.store.outbox_len().await.unwrap(), published, "nothing twice");
    let bob = h.store.account("bob").await.unwrap().unwrap();
    assert_eq!(bob.provider_user_id, None);
    let refused = h.store.set_provider_user_id(bob.id, &sim.people()[0].health_user_id).await.unwrap_err();
    assert!(matches!(&refused, StoreError::AlreadyEnrolled { person } if person == "alice"), "{refused}");
    assert!(refused.to_string().contains("already enrolled for alice"));

    // Once Alice is removed, the account may be enrolled for Bob.
    h.store.remove_account("alice").await.unwrap();
    h.store.set_provider_user_id(bob.id, &sim.people()[0].health_user_id).await.unwrap();
}
