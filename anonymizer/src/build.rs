//! Record → message body: range checks, generalisation, time coarsening and shifting.
//! Each body is built field by field, so nothing undeclared can pass.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::message::{Body, Interval, Measurement, SeriesPoint, SeriesValues, StageMinutes, TimeFrame, UnitValue};
use crate::time::coarsen;
use crate::{Dropped, Observation, SleepStages};

/// How times are transformed for one subject and message type.
pub(crate) struct Timing {
    pub shift: TimeDelta,
    pub granularity: TimeDelta,
    /// Generalisation of masses (kg).
    pub mass_step: f64,
    /// Weights above this are published as this.
    pub top_code_kg: Option<f64>,
}

/// A time the shift or coarsening cannot represent (the edge of the calendar): dropped,
/// never published unshifted.
const TIME_OUT_OF_RANGE: Dropped = Dropped::OutOfRange { field: "time" };

impl Timing {
    fn instant(&self, at: DateTime<Utc>) -> Result<DateTime<Utc>, Dropped> {
        let shifted = at.checked_add_signed(self.shift).ok_or(TIME_OUT_OF_RANGE)?;
        coarsen(shifted, self.granularity).ok_or(TIME_OUT_OF_RANGE)
    }

    fn day(&self, day: NaiveDate) -> Result<NaiveDate, Dropped> {
        day.checked_add_signed(self.shift).ok_or(TIME_OUT_OF_RANGE)
    }
}

fn check(field: &'static str, value: f64, low: f64, high: f64) -> Result<f64, Dropped> {
    if value.is_finite() && value >= low && value <= high { Ok(value) } else { Err(Dropped::OutOfRange { field }) }
}

/// Rounds to `step` (e.g. 0.1 kg): generalisation of quasi-identifying precision.
fn round_to(value: f64, step: f64) -> f64 {
    let r = (value / step).round() * step;
    // Keep the decimal representation short (0.1 steps, not 72.30000000000001).
    (r * 1e6).round() / 1e6
}

fn minutes(field: &'static str, value: Option<u64>) -> Result<Option<UnitValue>, Dropped> {
    value.map(|m| check(field, m as f64, 0.0, 1440.0 * 2.0).map(|m| UnitValue::new(m, "min"))).transpose()
}

fn stages(s: &SleepStages) -> Result<Option<StageMinutes>, Dropped> {
    if *s == SleepStages::default() {
        return Ok(None);
    }
    Ok(Some(StageMinutes {
        awake: minutes("sleep_stages.awake", s.awake)?,
        light: minutes("sleep_stages.light", s.light)?,
        deep: minutes("sleep_stages.deep", s.deep)?,
        rem: minutes("sleep_stages.rem", s.rem)?,
    }))
}

/// Aggregates per step of the samples in `[start, end)` (offsets from `start`, before any
/// shift: a shift is whole days, so steps keep their place). Values outside what a heart
/// can do (1–400 bpm, or not a number) are left out; so are steps without samples.
fn series_points(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    step: i64,
    samples: &[(DateTime<Utc>, f64)],
) -> Vec<SeriesPoint> {
    let mut steps: std::collections::BTreeMap<u32, (f64, f64, f64, u32)> = std::collections::BTreeMap::new();
    for (at, bpm) in samples {
        if *at < start || *at >= end || !(bpm.is_finite() && (1.0..=400.0).contains(bpm)) {
            continue;
        }
        let Ok(offset) = u32::try_from((*at - start).num_seconds() / step) else { continue };
        let e = steps.entry(offset).or_insert((0.0, f64::INFINITY, f64::NEG_INFINITY, 0));
        e.0 += bpm;
        e.1 = e.1.min(*bpm);
        e.2 = e.2.max(*bpm);
        e.3 += 1;
    }
    steps
        .into_iter()
        .map(|(offset, (sum, min, max, count))| SeriesPoint {
            offset,
            mean: (sum / f64::from(count) * 10.0).round() / 10.0,
            min: min.round(),
            max: max.round(),
            count,
        })
        .collect()
}

/// The body of `observation` and the (transformed) time its header carries.
pub(crate) fn body(observation: &Observation, t: &Timing) -> Result<(Body, DateTime<Utc>), Dropped> {
    let day_start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|x| x.and_utc()).unwrap_or_default();
    Ok(match observation {
        Observation::HeartRate { beats_per_minute, at, .. } => {
            let bpm = check("heart_rate", *beats_per_minute, 1.0, 400.0)?;
            let at = t.instant(*at)?;
            (
                Body::HeartRate {
                    heart_rate: UnitValue::new(bpm.round(), "beats/min"),
                    effective_time_frame: TimeFrame::DateTime(at),
                },
                at,
            )
        }
        Observation::HeartRateSeries { start, end, samples, revision } => {
            let step = t.granularity.num_seconds().max(1);
            let window = (*end - *start).num_seconds();
            if window <= 0 || window > 86_400 || window % step != 0 {
                return Err(Dropped::OutOfRange { field: "effective_time_frame" });
            }
            let (shifted_start, shifted_end) = (t.instant(*start)?, t.instant(*end)?);
            let points = series_points(*start, *end, step, samples);
            if points.is_empty() {
                return Err(Dropped::OutOfRange { field: "heart_rate" });
            }
            (
                Body::HeartRateSeries {
                    heart_rate: SeriesValues {
                        unit: "beats/min",
                        step_seconds: u32::try_from(step).unwrap_or(u32::MAX),
                        points,
                    },
                    revision: *revision,
                    effective_time_frame: TimeFrame::TimeInterval(Interval::Instants {
                        start_date_time: shifted_start,
                        end_date_time: shifted_end,
                    }),
                },
                shifted_start,
            )
        }
        Observation::RestingHeartRate { beats_per_minute, day } => {
            let bpm = check("heart_rate", *beats_per_minute, 10.0, 250.0)?;
            let day = t.day(*day)?;
            (
                Body::RestingHeartRate {
                    heart_rate: UnitValue::new(bpm.round(), "beats/min"),
                    effective_time_frame: TimeFrame::TimeInterval(Interval::Day { date: day }),
                },
                day_start(day),
            )
        }
        Observation::DailyActivity { day, steps, distance_m, active_minutes, kcal } => {
            let day = t.day(*day)?;
            let steps = steps.map(|s| check("step_count", s as f64, 0.0, 300_000.0)).transpose()?;
            let distance = distance_m.map(|m| check("distance", m, 0.0, 1_000_000.0)).transpose()?;
            let kcal = kcal.map(|k| check("kcal_burned", k, 0.0, 20_000.0)).transpose()?;
            (
                Body::DailyActivity {
                    step_count: steps.map(|s| UnitValue::new(s, "steps")),
                    distance: distance.map(|m| UnitValue::new(m.round(), "m")),
                    active_duration: minutes("active_duration", *active_minutes)?,
                    kcal_burned: kcal.map(|k| UnitValue::new(k.round(), "kcal")),
                    effective_time_frame: TimeFrame::TimeInterval(Interval::Day { date: day }),
                },
                day_start(day),
            )
        }
        Observation::Sleep { start, end, main_sleep, minutes_asleep, minutes_awake, stages: s } => {
            if end <= start || *end - *start > TimeDelta::hours(24) {
                return Err(Dropped::OutOfRange { field: "effective_time_frame" });
            }
            let (start, end) = (t.instant(*start)?, t.instant(*end)?);
            (
                Body::SleepEpisode {
                    is_main_sleep: *main_sleep,
                    total_sleep_time: minutes("total_sleep_time", *minutes_asleep)?,
                    awake_time: minutes("awake_time", *minutes_awake)?,
                    sleep_stages: stages(s)?,
                    effective_time_frame: TimeFrame::TimeInterval(Interval::Instants {
                        start_date_time: start,
                        end_date_time: end,
                    }),
                },
                start,
            )
        }
        Observation::BodyWeight { kg, at, .. } => {
            let kg = check("body_weight", *kg, 1.0, 700.0)?;
            let kg = t.top_code_kg.map_or(kg, |top| kg.min(top));
            let at = t.instant(*at)?;
            (
                Body::BodyWeight {
                    body_weight: UnitValue::new(round_to(kg, t.mass_step), "kg"),
                    effective_time_frame: TimeFrame::DateTime(at),
                },
                at,
            )
        }
        Observation::BodyFat { percent, at, .. } => {
            let p = check("body_fat_percentage", *percent, 0.5, 80.0)?;
            let at = t.instant(*at)?;
            (
                Body::BodyFatPercentage {
                    body_fat_percentage: UnitValue::new(round_to(p, 0.1), "%"),
                    effective_time_frame: TimeFrame::DateTime(at),
                },
                at,
            )
        }
        Observation::Measurement { kind, value, at, .. } => {
            let (_, field, unit, low, high, step) = kind.spec();
            let step = if unit == "kg" { t.mass_step } else { step };
            let v = check(field, *value, low, high)?;
            let at = t.instant(*at)?;
            (
                Body::Measurement(Measurement {
                    field,
                    value: UnitValue::new(round_to(v, step), unit),
                    effective_time_frame: TimeFrame::DateTime(at),
                }),
                at,
            )
        }
        Observation::BloodPressure { systolic, diastolic, at, .. } => {
            let sys = check("systolic_blood_pressure", *systolic, 40.0, 300.0)?;
            let dia = check("diastolic_blood_pressure", *diastolic, 20.0, 200.0)?;
            let at = t.instant(*at)?;
            (
                Body::BloodPressure {
                    systolic_blood_pressure: UnitValue::new(sys.round(), "mmHg"),
                    diastolic_blood_pressure: UnitValue::new(dia.round(), "mmHg"),
                    effective_time_frame: TimeFrame::DateTime(at),
                },
                at,
            )
        }
        Observation::DeviceStatus { family, battery_percent, last_sync } => {
            let battery = battery_percent
                .map(|b| check("battery_level", f64::from(b), 0.0, 100.0))
                .transpose()?
                .map(|b| UnitValue::new(round_to(b, 10.0), "%"));
            let last_sync = last_sync.map(|s| t.instant(s)).transpose()?;
            (
                Body::DeviceStatus { device_family: *family, battery_level: battery, last_sync_date_time: last_sync },
                last_sync.unwrap_or_default(),
            )
        }
    })
}
