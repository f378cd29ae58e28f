//! Synthetic readings: a pure function of (seed, person, time slot), so any range can be
//! served in any order and re-reading returns the same values.

use chrono::{DateTime, TimeDelta, Utc};

use super::super::Person;
use super::super::people::mix_all;

/// One heart-rate sample every ten minutes (with a few gaps).
pub(crate) const HEART_RATE_STEP_SECS: i64 = 600;
/// How far back a simulated person has data.
pub(crate) const HISTORY_DAYS: i64 = 400;

/// A heart-rate sample in slot `slot` (seconds since epoch / step), if the person wore
/// the device then.
pub(crate) fn heart_rate_sample(seed: u64, person: &Person, slot: i64) -> Option<(DateTime<Utc>, u32)> {
    let h = mix_all(&[seed, person.index as u64, slot as u64, 0x4852]);
    if h % 100 < 3 {
        return None; // not worn
    }
    let jitter = (h >> 8) % 60;
    let at = DateTime::from_timestamp(slot * HEART_RATE_STEP_SECS + jitter as i64, 0)?;
    let hour_utc = (slot * HEART_RATE_STEP_SECS / 3600) % 24;
    let activity = if (7..=21).contains(&((hour_utc + 24) % 24)) { 15 } else { 0 };
    let noise = ((h >> 16) % 25) as u32;
    Some((at, person.resting_bpm + activity + noise))
}

/// Samples with `from <= t < before`, newest first, within the person's history.
pub(crate) fn heart_rate_newest_first(
    seed: u64,
    person: &Person,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> impl Iterator<Item = (DateTime<Utc>, u32)> + '_ {
    let earliest = now - TimeDelta::days(HISTORY_DAYS);
    let from = from.max(earliest);
    let before = before.min(now);
    let first = from.timestamp().div_euclid(HEART_RATE_STEP_SECS);
    let last = before.timestamp().div_euclid(HEART_RATE_STEP_SECS);
    (first..=last)
        .rev()
        .filter_map(move |slot| heart_rate_sample(seed, person, slot))
        .filter(move |(t, _)| *t >= from && *t < before)
}
