use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

use super::*;

const FITBIT: Provider = Provider::new("fitbit");
const WITHINGS: Provider = Provider::new("withings");

fn key(epoch: &str, byte: u8) -> PseudonymKey {
    PseudonymKey::new(epoch, [byte; 32]).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn hr(account: &str, bpm: f64, time: &str) -> Record {
    Record {
        provider: FITBIT,
        account_id: account.into(),
        source_key: format!("heart-rate/{time}"),
        observation: Observation::HeartRate { beats_per_minute: bpm, at: at(time), modality: Modality::Sensed },
    }
}

#[test]
fn pseudonym_is_keyed_stable_and_unlinkable() {
    let a = Anonymizer::new(key("e1", 1), Policy::default());
    let b = Anonymizer::new(key("e2", 2), Policy::default());
    let s1 = a.subject(FITBIT, "user-123");
    assert_eq!(s1, a.subject(FITBIT, "user-123"));
    assert_ne!(s1, b.subject(FITBIT, "user-123"));
    assert_ne!(s1, a.subject(WITHINGS, "user-123"));
    let plain = hex::encode_upper_free(&Sha256::digest(b"fitbituser-123"));
    assert!(!plain.starts_with(&s1));
    let plain_id = hex::encode_upper_free(&Sha256::digest(b"user-123"));
    assert!(!plain_id.starts_with(&s1));
}

#[test]
fn message_ids_are_deterministic_uuids() {
    let a = Anonymizer::new(key("e1", 1), Policy::default());
    let m1 = a.anonymize(&hr("u1", 70.0, "2026-11-01T10:00:30Z")).unwrap();
    let m2 = a.anonymize(&hr("u1", 70.0, "2026-11-01T10:00:30Z")).unwrap();
    let m3 = a.anonymize(&hr("u1", 70.0, "2026-11-01T10:00:40Z")).unwrap();
    assert_eq!(m1.header.uuid, m2.header.uuid);
    assert_ne!(m1.header.uuid, m3.header.uuid, "distinct source times give distinct ids even when coarsened together");
    let u = &m1.header.uuid;
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "8");
    assert_eq!(serde_json::to_string(&m1).unwrap(), serde_json::to_string(&m2).unwrap());
}

#[test]
fn time_is_utc_and_coarsened() {
    let p = Policy::default().with_granularity("heart-rate", TimeDelta::minutes(15));
    let a = Anonymizer::new(key("e1", 1), p);
    let m = a.anonymize(&hr("u1", 70.0, "2026-11-01T10:14:59Z")).unwrap();
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(json["header"]["source_creation_date_time"], "2026-11-01T10:00:00Z");
    assert_eq!(json["body"]["effective_time_frame"]["date_time"], "2026-11-01T10:00:00Z");
}

#[test]
fn date_shift_is_constant_per_subject() {
    let p = Policy::default().with_date_shift_days(30);
    let a = Anonymizer::new(key("e1", 7), p);
    let m1 = a.anonymize(&hr("u1", 70.0, "2026-11-01T10:00:00Z")).unwrap();
    let m2 = a.anonymize(&hr("u1", 70.0, "2026-11-02T11:00:00Z")).unwrap();
    let gap = m2.header.source_creation_date_time - m1.header.source_creation_date_time;
    assert_eq!(gap, TimeDelta::hours(25));
    let shift = at("2026-11-01T10:00:00Z") - m1.header.source_creation_date_time;
    assert!(shift >= TimeDelta::zero() && shift <= TimeDelta::days(30));
}

#[test]
fn disallowed_and_out_of_range_are_dropped_and_counted() {
    let a = Anonymizer::new(key("e1", 1), Policy::default().allow_only(["sleep-episode"]));
    assert_eq!(a.anonymize(&hr("u1", 70.0, "2026-11-01T10:00:00Z")), Err(Dropped::TypeNotAllowed("heart-rate")));
    let b = Anonymizer::new(key("e1", 1), Policy::default());
    assert!(b.anonymize(&hr("u1", f64::NAN, "2026-11-01T10:00:00Z")).is_err());
    assert!(b.anonymize(&hr("u1", -3.0, "2026-11-01T10:00:00Z")).is_err());
    assert_eq!(a.dropped().total(), 1);
    assert_eq!(b.dropped().total(), 2);
}

#[test]
fn output_carries_no_raw_identifier() {
    let a = Anonymizer::new(key("e1", 1), Policy::default());
    let m = a.anonymize(&hr("RAW-ACCOUNT-ID-42", 61.0, "2026-11-01T10:00:00Z")).unwrap();
    let s = serde_json::to_string(&m).unwrap();
    assert!(!s.contains("RAW-ACCOUNT-ID-42"));
    assert!(!s.contains("heart-rate/2026"), "source key must not leak: {s}");
}

#[test]
fn bad_epoch_is_rejected_and_key_is_redacted_in_debug() {
    assert!(PseudonymKey::new("", [0; 32]).is_err());
    assert!(PseudonymKey::new("has space", [0; 32]).is_err());
    let k = key("e1", 0xab);
    assert!(!format!("{k:?}").contains("ab, ab") && !format!("{k:?}").contains("171"));
}

mod hex {
    pub fn encode_upper_free(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[test]
fn weight_generalisation_and_top_coding() {
    let p = Policy::default().with_mass_step_kg(0.5).with_weight_top_code_kg(Some(150.0));
    let a = Anonymizer::new(key("e1", 1), p);
    let w = |kg: f64| Record {
        provider: WITHINGS,
        account_id: "u".into(),
        source_key: format!("w/{kg}"),
        observation: Observation::BodyWeight { kg, at: at("2026-11-01T07:00:00Z"), modality: Modality::Sensed },
    };
    let value = |kg| {
        serde_json::to_value(a.anonymize(&w(kg)).unwrap()).unwrap()["body"]["body_weight"]["value"].as_f64().unwrap()
    };
    assert_eq!(value(72.26), 72.5);
    assert_eq!(value(210.0), 150.0);
}

#[test]
fn provider_names_are_checked() {
    assert!(Provider::valid("oura") && Provider::valid("aria-v3"));
    for bad in ["", "Fitbit", "fit bit", "a/b", "x".repeat(33).as_str()] {
        assert!(!Provider::valid(bad), "{bad:?}");
    }
    assert_eq!(serde_json::to_string(&FITBIT).unwrap(), "\"fitbit\"");
}

#[test]
fn an_account_scope_gives_the_same_messages_and_never_lends_its_subject() {
    let policy = Policy::default().with_date_shift_days(30);
    let a = Anonymizer::new(key("e1", 1), policy);
    let scope = a.for_account(FITBIT, "u1");
    assert_eq!(scope.subject(), a.subject(FITBIT, "u1"));
    let mine = hr("u1", 70.0, "2026-11-01T10:00:30Z");
    assert_eq!(
        serde_json::to_string(&scope.anonymize(&mine).unwrap()).unwrap(),
        serde_json::to_string(&a.anonymize(&mine).unwrap()).unwrap()
    );
    // A record of another account through this scope is that account's, shift included.
    let theirs = hr("u2", 70.0, "2026-11-01T10:00:30Z");
    assert_eq!(
        serde_json::to_string(&scope.anonymize(&theirs).unwrap()).unwrap(),
        serde_json::to_string(&a.anonymize(&theirs).unwrap()).unwrap()
    );
    assert_ne!(scope.anonymize(&theirs).unwrap().subject, scope.subject());
    // Drops through a scope are counted like any other.
    let bad = hr("u1", f64::NAN, "2026-11-01T10:00:30Z");
    assert!(scope.anonymize(&bad).is_err());
    assert_eq!(a.dropped().total(), 1);
}
