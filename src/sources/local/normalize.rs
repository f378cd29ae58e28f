//! Captured readings as records: a body weight for the person the scale slot is assigned
//! to. Impedance and the Aria's fat values are not published (no schema carries
//! impedance; the Aria's fat scaling is unconfirmed, local-scales.md), and nothing that
//! identifies the scale (MAC, auth code, serial, session) reaches a record.
//!
//! **Time.** A scale's clock is checked against the server's on every upload. Within
//! [`MAX_SKEW`] the reading's own time is kept, so the cached readings a scale resends
//! give the same message ids. Beyond it the reading is corrected by the clock's error
//! (`server time − (scale clock − reading time)`, local-scales.md), rounded to
//! [`SKEW_STEP`] so a resend of the same readings (the scale's clock having moved by
//! seconds) gives the same times and ids; the answer then sets the scale's clock.

use anonymizer::{Modality, Observation, Record};
use chrono::{DateTime, TimeDelta, Utc};

use super::PROVIDER;
use crate::normalize::Skipped;

/// How far a scale's clock may be off before its readings are corrected.
pub const MAX_SKEW: TimeDelta = TimeDelta::minutes(10);
/// The correction's step.
pub const SKEW_STEP: TimeDelta = TimeDelta::minutes(15);
/// The heaviest plausible reading (kg), as the schema allows.
const MAX_KG: f64 = 700.0;

/// The correction to add to a scale's reading times, given its clock and the server's
/// when the upload arrived: zero within [`MAX_SKEW`], else the error rounded to
/// [`SKEW_STEP`].
pub fn clock_correction(scale_now: DateTime<Utc>, server_now: DateTime<Utc>) -> TimeDelta {
    let error = server_now - scale_now;
    if error.abs() <= MAX_SKEW {
        return TimeDelta::zero();
    }
    let step = SKEW_STEP.num_seconds();
    let rounded = (error.num_seconds() as f64 / step as f64).round() as i64 * step;
    TimeDelta::seconds(rounded)
}

/// A captured weight of `person` (their `local` account's user) as a record. `key` is
/// what identifies the reading on the scale (its slot, raw time and value): the same
/// reading resent gives the same record. `at` is the corrected time; `server_now` bounds it.
pub fn weight(
    person: &str,
    key: String,
    kg: f64,
    at: DateTime<Utc>,
    server_now: DateTime<Utc>,
) -> Result<Record, Skipped> {
    if !(kg.is_finite() && kg > 0.0 && kg <= MAX_KG) {
        return Err(Skipped::bad("a weight that is not a plausible number of kilograms"));
    }
    if at > server_now + TimeDelta::minutes(1) {
        return Err(Skipped::bad("a reading from the future, even after the scale's clock was corrected"));
    }
    Ok(Record {
        provider: PROVIDER,
        account_id: person.to_owned(),
        source_key: key,
        observation: Observation::BodyWeight { kg, at, modality: Modality::Sensed },
    })
}

/// The key of an Aria reading: slot, the scale's own time and the raw weight.
pub fn aria_key(reading: &super::aria::Reading) -> String {
    format!("aria/{}/{}/{}", reading.user, reading.time, reading.weight_grams)
}

/// The key of a WBS01 reading: slot, the scale's own time and the raw weight.
pub fn wbs01_key(user: u64, time: i64, measure: &super::wbs01::Measure) -> String {
    format!("wbs01/{user}/{time}/{}e{}", measure.value, measure.unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_500_000 + s, 0).unwrap()
    }

    #[test]
    fn small_skews_keep_the_scales_time_and_large_ones_are_corrected_in_steps() {
        assert_eq!(clock_correction(t(0), t(300)), TimeDelta::zero());
        assert_eq!(clock_correction(t(0), t(-600)), TimeDelta::zero());
        // Off by a day: corrected by a day, whatever seconds the clock moved meanwhile.
        assert_eq!(clock_correction(t(0), t(86_400 + 17)), TimeDelta::days(1));
        assert_eq!(clock_correction(t(40), t(86_400 + 17)), TimeDelta::days(1));
        assert_eq!(clock_correction(t(0), t(-3_600)), TimeDelta::hours(-1));
    }

    #[test]
    fn weights_are_checked() {
        let now = t(0);
        let r = weight("ann", "k".into(), 72.5, t(-60), now).unwrap();
        assert_eq!(r.provider, PROVIDER);
        assert!(matches!(r.observation, Observation::BodyWeight { kg, .. } if (kg - 72.5).abs() < 1e-9));
        assert!(weight("ann", "k".into(), 0.0, t(-60), now).is_err());
        assert!(weight("ann", "k".into(), f64::NAN, t(-60), now).is_err());
        assert!(weight("ann", "k".into(), 900.0, t(-60), now).is_err());
        assert!(weight("ann", "k".into(), 70.0, t(3_600), now).is_err(), "from the future");
    }
}
