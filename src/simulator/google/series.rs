//! Synthetic readings: pure functions of (seed, person, time slot or day), so any range
//! can be served in any order and re-reading returns the same values.

use chrono::{DateTime, Days, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};

use super::super::Person;
use super::super::people::mix_all;

/// One heart-rate sample every ten minutes (with a few gaps).
pub(crate) const HEART_RATE_STEP_SECS: i64 = 600;
/// How far back a simulated person has data.
pub(crate) const HISTORY_DAYS: i64 = 400;

/// A generated reading, before it is rendered as JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reading {
    HeartRate { at: DateTime<Utc>, bpm: u32 },
    RestingHeartRate { day: NaiveDate, bpm: u32 },
    Sleep { id: String, start: DateTime<Utc>, end: DateTime<Utc>, nap: bool, stages: [u32; 4] },
    Weight { at: DateTime<Utc>, grams: f64 },
    BodyFat { at: DateTime<Utc>, percent: f64 },
}

impl Reading {
    /// The instant that orders readings (newest first) and that physical filters test.
    pub(crate) fn key(&self) -> DateTime<Utc> {
        match self {
            Reading::HeartRate { at, .. } | Reading::Weight { at, .. } | Reading::BodyFat { at, .. } => *at,
            Reading::RestingHeartRate { day, .. } => day.and_time(NaiveTime::MIN).and_utc(),
            Reading::Sleep { end, .. } => *end,
        }
    }
}

/// Daily activity totals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DayActivity {
    pub steps: u64,
    pub distance_mm: u64,
    pub active_minutes: [u64; 3],
    pub kcal: f64,
}

fn h(seed: u64, person: &Person, parts: &[u64]) -> u64 {
    let mut all = vec![seed, person.index as u64];
    all.extend_from_slice(parts);
    mix_all(&all)
}

fn day_number(day: NaiveDate) -> u64 {
    day.num_days_from_ce() as u64
}

use chrono::Datelike;

/// The UTC instant of a civil time in the person's zone (the earlier one when a fall-back
/// repeats it, the later side when a spring-forward skips it).
pub(crate) fn local_to_utc(person: &Person, civil: NaiveDateTime) -> DateTime<Utc> {
    match person.time_zone.from_local_datetime(&civil) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        chrono::LocalResult::None => person
            .time_zone
            .from_local_datetime(&(civil + TimeDelta::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| civil.and_utc()),
    }
}

/// The person's civil date at `at`.
pub(crate) fn civil_date(person: &Person, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&person.time_zone).date_naive()
}

/// A heart-rate sample in slot `slot` (seconds since epoch / `step`), if the person wore
/// the device then.
pub(crate) fn heart_rate_sample(seed: u64, person: &Person, step: i64, slot: i64) -> Option<(DateTime<Utc>, u32)> {
    let x = h(seed, person, &[slot as u64, 0x4852]);
    if x % 100 < 3 {
        return None; // not worn
    }
    let jitter = ((x >> 8) % 60) as i64 % step;
    let at = DateTime::from_timestamp(slot * step + jitter, 0)?;
    let hour_utc = (slot * step / 3600) % 24;
    let activity = if (7..=21).contains(&((hour_utc + 24) % 24)) { 15 } else { 0 };
    let noise = ((x >> 16) % 25) as u32;
    Some((at, person.resting_bpm + activity + noise))
}

/// The earliest instant a person has data.
pub(crate) fn earliest(now: DateTime<Utc>) -> DateTime<Utc> {
    now - TimeDelta::days(HISTORY_DAYS)
}

/// Below this cadence the device is modelled as a real one: exercise bouts sampled every
/// second and an off-wrist gap (charging) every evening.
const DETAILED_BELOW_SECS: i64 = 60;

type Period = (DateTime<Utc>, DateTime<Utc>);

/// A civil day's exercise bout (two days in three, late afternoon, 20 to 60 minutes) and
/// its charging gap (30 to 60 minutes in the evening), as UTC intervals.
fn day_periods(seed: u64, person: &Person, day: NaiveDate) -> (Option<Period>, Period) {
    let x = h(seed, person, &[day_number(day), 5]);
    let at = |minutes: i64| local_to_utc(person, day.and_time(NaiveTime::MIN) + TimeDelta::minutes(minutes));
    let bout = (x % 3 != 0).then(|| {
        let start = 17 * 60 + ((x >> 8) % 120) as i64;
        (at(start), at(start + 20 + ((x >> 16) % 41) as i64))
    });
    let charge = 20 * 60 + ((x >> 24) % 60) as i64;
    (bout, (at(charge), at(charge + 30 + ((x >> 32) % 31) as i64)))
}

/// Heart-rate samples with `from <= t < before`, newest first, within the history: one
/// per `step` seconds while worn; below a minute's cadence also one per second during
/// exercise bouts (higher, as in a workout) and none while the device charges.
pub(crate) fn heart_rate(
    seed: u64,
    person: &Person,
    step: i64,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Reading> {
    let step = step.max(1);
    let from = from.max(earliest(now));
    let before = before.min(now);
    if from >= before {
        return Vec::new();
    }
    let mut bouts = Vec::new();
    let mut gaps = Vec::new();
    if step < DETAILED_BELOW_SECS {
        for day in days(person, from, before, now) {
            let (bout, gap) = day_periods(seed, person, day);
            bouts.extend(bout);
            gaps.push(gap);
        }
    }
    let inside = |t: DateTime<Utc>, periods: &[Period]| periods.iter().any(|(a, b)| t >= *a && t < *b);
    let first = from.timestamp().div_euclid(step);
    let last = before.timestamp().div_euclid(step);
    let mut out: Vec<Reading> = (first..=last)
        .filter_map(|slot| heart_rate_sample(seed, person, step, slot))
        .filter(|(t, _)| *t >= from && *t < before && !inside(*t, &bouts) && !inside(*t, &gaps))
        .map(|(at, bpm)| Reading::HeartRate { at, bpm })
        .collect();
    for (start, end) in &bouts {
        let mut t = (*start).max(from);
        let stop = (*end).min(before);
        while t < stop {
            let x = h(seed, person, &[t.timestamp() as u64, 0x4557]);
            out.push(Reading::HeartRate { at: t, bpm: person.resting_bpm + 50 + (x % 40) as u32 });
            t += TimeDelta::seconds(1);
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.key()));
    out
}

/// Civil days of the person touching `[from, before)`, newest first, up to yesterday or
/// today as `include_today` says.
fn days(person: &Person, from: DateTime<Utc>, before: DateTime<Utc>, now: DateTime<Utc>) -> Vec<NaiveDate> {
    let first = civil_date(person, from.max(earliest(now))) - Days::new(1);
    let last = civil_date(person, before.min(now));
    first.iter_days().take_while(|d| *d <= last).collect::<Vec<_>>().into_iter().rev().collect()
}

/// Daily resting heart rate, one per civil day that is over.
pub(crate) fn resting(
    seed: u64,
    person: &Person,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Reading> {
    let today = civil_date(person, now);
    days(person, from, before, now)
        .into_iter()
        .filter(|d| *d < today)
        .map(|day| Reading::RestingHeartRate {
            day,
            bpm: person.resting_bpm + (h(seed, person, &[day_number(day), 1]) % 5) as u32,
        })
        .collect()
}

/// Sleep sessions (main sleep every night, a nap now and then), keyed by end time.
pub(crate) fn sleep(
    seed: u64,
    person: &Person,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Reading> {
    let mut out = Vec::new();
    for day in days(person, from - TimeDelta::days(1), before, now) {
        let x = h(seed, person, &[day_number(day), 2]);
        let start_local = day.and_hms_opt(22, 30, 0).unwrap_or_default() + TimeDelta::minutes((x % 90) as i64);
        let start = local_to_utc(person, start_local);
        let end = start + TimeDelta::minutes(360 + ((x >> 8) % 150) as i64);
        let total = (end - start).num_minutes() as u32;
        let awake = 10 + ((x >> 16) % 30) as u32;
        let deep = (total - awake) / 5;
        let rem = (total - awake) / 5 + ((x >> 24) % 20) as u32;
        let light = total - awake - deep - rem;
        out.push(Reading::Sleep {
            id: format!("{:016x}", x),
            start,
            end,
            nap: false,
            stages: [awake, light, deep, rem],
        });
        if (x >> 32) % 10 == 0 {
            let nap_start = local_to_utc(person, day.and_hms_opt(14, 0, 0).unwrap_or_default());
            let nap_end = nap_start + TimeDelta::minutes(30 + ((x >> 40) % 30) as i64);
            let total = (nap_end - nap_start).num_minutes() as u32;
            out.push(Reading::Sleep {
                id: format!("{:016x}", x ^ 1),
                start: nap_start,
                end: nap_end,
                nap: true,
                stages: [5, total - 5, 0, 0],
            });
        }
    }
    out.retain(|r| r.key() >= from && r.key() < before && r.key() <= now);
    out.sort_by_key(|r| std::cmp::Reverse(r.key()));
    out
}

/// Scale readings on most mornings: weight and body fat share the measurement time.
fn weigh_ins(
    seed: u64,
    person: &Person,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, u64)> {
    let mut out: Vec<(DateTime<Utc>, u64)> = days(person, from, before, now)
        .into_iter()
        .filter_map(|day| {
            let x = h(seed, person, &[day_number(day), 3]);
            (x % 4 != 0).then(|| {
                let civil = day.and_hms_opt(7, 0, 0).unwrap_or_default() + TimeDelta::seconds((x >> 8) as i64 % 2400);
                (local_to_utc(person, civil), x)
            })
        })
        .collect();
    out.retain(|(t, _)| *t >= from && *t < before && *t <= now);
    out
}

pub(crate) fn weight(
    seed: u64,
    person: &Person,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Reading> {
    let base = 58_000.0 + (person.resting_bpm as f64 - 52.0) * 1_500.0;
    weigh_ins(seed, person, from, before, now)
        .into_iter()
        .map(|(at, x)| Reading::Weight { at, grams: base + ((x >> 16) % 2000) as f64 })
        .collect()
}

pub(crate) fn body_fat(
    seed: u64,
    person: &Person,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Reading> {
    weigh_ins(seed, person, from, before, now)
        .into_iter()
        .map(|(at, x)| Reading::BodyFat { at, percent: 18.0 + ((x >> 24) % 90) as f64 / 10.0 })
        .collect()
}

/// Activity of one civil day; `None` on a day the tracker was not worn (zero steps).
pub(crate) fn activity(seed: u64, person: &Person, day: NaiveDate) -> Option<DayActivity> {
    let x = h(seed, person, &[day_number(day), 4]);
    if x % 20 == 0 {
        return None;
    }
    let steps = 2_000 + (x >> 8) % 12_000;
    let vigorous = (x >> 24) % 20;
    let moderate = (x >> 32) % 30;
    let light = 60 + (x >> 40) % 120;
    Some(DayActivity {
        steps,
        distance_mm: steps * 760,
        active_minutes: [light, moderate, vigorous],
        kcal: 1_600.0 + steps as f64 * 0.045 + ((x >> 48) % 100) as f64 / 10.0,
    })
}
