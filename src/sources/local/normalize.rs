//! Captured readings as records: a body weight for the person the scale slot is assigned
//! to. Impedance and the Aria's fat values are not published (no schema carries
//! impedance; the Aria's fat scaling is unconfirmed, local-scales.md), and nothing that
//! identifies the scale (MAC, auth code, serial, session) reaches a record.
//!
//! **Time** (the Aria, whose upload carries its clock). The scale's clock is checked
//! against the server's on every upload, and its readings are moved by a correction kept
//! per scale: zero while the clock is within [`MAX_SKEW`], else the clock's error
//! (`server time − (scale clock − reading time)`, local-scales.md). The kept correction
//! changes only when the error moves more than [`MAX_SKEW`] from it, so a resend of the
//! same readings (the clock having moved by seconds) keeps their times and message ids;
//! the answer then sets the scale's clock. A reading is at most [`MAX_SKEW`] off after
//! correction, so one up to that far ahead of the server is not refused. The WBS01 sends
//! no clock: its times are taken as sent.

use anonymizer::{Modality, Observation, Record};
use chrono::{DateTime, TimeDelta, Utc};

use super::PROVIDER;
use crate::normalize::Skipped;

/// How far a scale's clock may be off, and a correction from its error, before the
/// correction changes.
pub const MAX_SKEW: TimeDelta = TimeDelta::minutes(10);
/// The heaviest plausible reading (kg), as the schema allows.
const MAX_KG: f64 = 700.0;

/// The correction a scale's readings get, given the one it had (`kept`), its clock and
/// the server's when the upload arrived: `kept` while the error stays within
/// [`MAX_SKEW`] of it; else zero if the clock is within [`MAX_SKEW`], or the error to
/// the minute.
pub fn clock_correction(kept: TimeDelta, scale_now: DateTime<Utc>, server_now: DateTime<Utc>) -> TimeDelta {
    let error = server_now - scale_now;
    if (error - kept).abs() <= MAX_SKEW {
        return kept;
    }
    if error.abs() <= MAX_SKEW {
        return TimeDelta::zero();
    }
    TimeDelta::minutes((error.num_seconds() as f64 / 60.0).round() as i64)
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
    if at > server_now + MAX_SKEW + TimeDelta::minutes(1) {
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
    fn the_kept_correction_holds_while_the_clock_stays_near_it() {
        let zero = TimeDelta::zero();
        assert_eq!(clock_correction(zero, t(0), t(300)), zero, "within tolerance: the scale's own times");
        assert_eq!(clock_correction(zero, t(0), t(-600)), zero);
        // A day behind: corrected by the error, to the minute.
        let day = clock_correction(zero, t(0), t(86_400 + 17));
        assert_eq!(day, TimeDelta::days(1));
        // The same cache resent a little later (the clock moved by seconds): kept, so the
        // readings keep their times and ids, whichever way the seconds fall.
        assert_eq!(clock_correction(day, t(40), t(86_400 + 17)), day);
        assert_eq!(clock_correction(day, t(-200), t(86_400 + 17)), day);
        // Then the answer set the clock: back to none.
        assert_eq!(clock_correction(day, t(0), t(5)), zero);
        assert_eq!(clock_correction(zero, t(0), t(-3_600)), TimeDelta::hours(-1));
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
        assert!(weight("ann", "k".into(), 70.0, t(600), now).is_ok(), "within the clock's tolerance");
    }
}
