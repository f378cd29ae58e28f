//! Hostile input and bad days (issue 15): one named test per case. Whatever upstreams,
//! the node, the disk, the settings or a second process do — no panic, no stall, no lost
//! message, no leaked name.

use anonymizer::{Anonymizer, Modality, Observation, Policy, PseudonymKey, Record};
use chrono::{DateTime, NaiveDate, Utc};
use proptest::prelude::*;
use wearbridge::sources::fitbit::PROVIDER as FITBIT;

/// Case 2: with a date shift, an upstream time at the edge of the calendar is dropped
/// (counted), never a panic and never published unshifted.
#[test]
fn case_02_calendar_edges_are_dropped_not_a_panic() {
    let a = Anonymizer::new(PseudonymKey::new("h", [1; 32]).unwrap(), Policy::default().with_date_shift_days(400));
    let edges = [
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
        DateTime::parse_from_rfc3339("-262143-01-01T00:00:00Z").map(|t| t.to_utc()).unwrap_or(DateTime::<Utc>::MIN_UTC),
        DateTime::from_timestamp(-8_334_601_228_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC),
    ];
    for at in edges {
        for observation in [
            Observation::HeartRate { beats_per_minute: 60.0, at, modality: Modality::Sensed },
            Observation::Sleep {
                start: at,
                end: at,
                main_sleep: true,
                minutes_asleep: None,
                minutes_awake: None,
                stages: Default::default(),
            },
            Observation::DailyActivity {
                day: at.date_naive(),
                steps: Some(1),
                distance_m: None,
                active_minutes: None,
                kcal: None,
            },
        ] {
            let record = Record { provider: FITBIT, account_id: "u".into(), source_key: "k".into(), observation };
            if let Ok(m) = a.anonymize(&record) {
                assert!(m.header.source_creation_date_time <= at, "shifted back, never forward or unshifted");
            }
        }
    }
    assert!(a.dropped().total() > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Case 2, any instant chrono can hold and any day: no panic under any shift.
    #[test]
    fn case_02_any_time_any_shift_never_panics(
        secs in DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
        days in proptest::num::i32::ANY,
        shift in 0u32..100_000,
    ) {
        let a = Anonymizer::new(PseudonymKey::new("h", [2; 32]).unwrap(), Policy::default().with_date_shift_days(shift));
        let at = DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let day = NaiveDate::from_num_days_from_ce_opt(days).unwrap_or(NaiveDate::MIN);
        for observation in [
            Observation::HeartRate { beats_per_minute: 70.0, at, modality: Modality::Sensed },
            Observation::RestingHeartRate { beats_per_minute: 55.0, day },
        ] {
            let record = Record { provider: FITBIT, account_id: "u".into(), source_key: "k".into(), observation };
            let _ = a.anonymize(&record);
        }
    }
}
