//! Google Health data points → records.

use std::collections::BTreeMap;

use anonymizer::{DeviceFamily, Modality, Observation, Record, SleepStages};
use chrono::{NaiveDate, SecondsFormat};

use crate::normalize::{Lenient, Skipped};
use crate::sources::fitbit::api::{DailyRollupDataPoint, DataPoint, PairedDevice};

fn record(account_id: &str, source_key: String, observation: Observation) -> Record {
    Record { provider: super::PROVIDER, account_id: account_id.to_owned(), source_key, observation }
}

fn modality(point: &DataPoint) -> Modality {
    match point.data_source.as_ref().and_then(|s| s.recording_method.as_deref()) {
        Some("MANUAL") => Modality::SelfReported,
        _ => Modality::Sensed,
    }
}

fn non_negative(value: i64, reason: &'static str) -> Result<u64, Skipped> {
    u64::try_from(value).map_err(|_| Skipped::bad(reason))
}

/// A daily resting heart rate point.
pub fn resting_heart_rate(account_id: &str, point: &DataPoint) -> Result<Record, Skipped> {
    let r = point.daily_resting_heart_rate.as_ref().ok_or(Skipped::bad("no dailyRestingHeartRate member"))?;
    let day = r.date.to_naive().ok_or(Skipped::bad("invalid date"))?;
    if !(1..=400).contains(&r.beats_per_minute) {
        return Err(Skipped::bad("beatsPerMinute out of range"));
    }
    Ok(record(
        account_id,
        format!("resting-heart-rate/{day}/{}", r.beats_per_minute),
        Observation::RestingHeartRate { beats_per_minute: r.beats_per_minute as f64, day },
    ))
}

/// Steps, distance, active minutes and calories roll-ups → one record per civil day.
/// Google omits days with zero steps; a day that has other totals gets zero steps.
/// The values are part of the source key: a corrected day is a new message.
pub fn daily_activity(account_id: &str, points: &[Lenient<DailyRollupDataPoint>]) -> Vec<Result<Record, Skipped>> {
    #[derive(Default)]
    struct Day {
        steps: Option<u64>,
        distance_m: Option<f64>,
        active_minutes: Option<u64>,
        kcal: Option<f64>,
    }
    let mut days: BTreeMap<NaiveDate, Day> = BTreeMap::new();
    let mut out = Vec::new();
    for p in points {
        let Some(p) = p.good() else {
            out.push(Err(Skipped::bad("a malformed roll-up")));
            continue;
        };
        let Some(day) = p.civil_start_time.date.to_naive() else {
            out.push(Err(Skipped::bad("invalid roll-up date")));
            continue;
        };
        let d = days.entry(day).or_default();
        if let Some(s) = &p.steps {
            match non_negative(s.count_sum, "negative steps") {
                Ok(v) => d.steps = Some(v),
                Err(e) => out.push(Err(e)),
            }
        }
        if let Some(m) = &p.distance {
            d.distance_m = Some(m.millimeters_sum as f64 / 1000.0);
        }
        if let Some(a) = &p.active_minutes {
            let sum = a
                .active_minutes_rollup_by_activity_level
                .iter()
                .try_fold(0i64, |acc, l| acc.checked_add(l.active_minutes_sum))
                .ok_or(Skipped::bad("active minutes beyond 64 bits"));
            match sum.and_then(|s| non_negative(s, "negative active minutes")) {
                Ok(v) => d.active_minutes = Some(v),
                Err(e) => out.push(Err(e)),
            }
        }
        if let Some(c) = &p.total_calories {
            d.kcal = Some(c.kcal_sum);
        }
    }
    for (day, d) in days {
        let steps = d.steps.or(Some(0));
        let key = format!(
            "daily-activity/{day}/{}/{:?}/{:?}/{:?}",
            steps.unwrap_or(0),
            d.distance_m.map(|m| m.round() as i64),
            d.active_minutes,
            d.kcal.map(|k| k.round() as i64)
        );
        let observation = Observation::DailyActivity {
            day,
            steps,
            distance_m: d.distance_m,
            active_minutes: d.active_minutes,
            kcal: d.kcal,
        };
        out.push(Ok(record(account_id, key, observation)));
    }
    out
}

/// A sleep session.
pub fn sleep(account_id: &str, point: &DataPoint) -> Result<Record, Skipped> {
    let s = point.sleep.as_ref().ok_or(Skipped::bad("no sleep member"))?;
    let summary = s.summary.clone().unwrap_or_default();
    let mut stages = SleepStages::default();
    for st in &summary.stages_summary {
        let minutes = non_negative(st.minutes, "negative stage minutes")?;
        let slot = match st.stage.as_str() {
            "AWAKE" | "RESTLESS" => &mut stages.awake,
            "LIGHT" => &mut stages.light,
            "DEEP" => &mut stages.deep,
            "REM" => &mut stages.rem,
            _ => continue,
        };
        *slot = Some(slot.unwrap_or(0).saturating_add(minutes));
    }
    let asleep = summary.minutes_asleep.map(|m| non_negative(m, "negative minutesAsleep")).transpose()?;
    let awake = summary.minutes_awake.map(|m| non_negative(m, "negative minutesAwake")).transpose()?;
    let key = match &point.name {
        Some(name) if !name.is_empty() => format!("sleep/{name}/{}/{:?}", s.interval.end_time.timestamp(), asleep),
        _ => format!("sleep/{}/{}", s.interval.start_time.timestamp(), s.interval.end_time.timestamp()),
    };
    Ok(record(
        account_id,
        key,
        Observation::Sleep {
            start: s.interval.start_time,
            end: s.interval.end_time,
            main_sleep: !s.metadata.as_ref().is_some_and(|m| m.nap),
            minutes_asleep: asleep,
            minutes_awake: awake,
            stages,
        },
    ))
}

/// A weight sample (grams → kg).
pub fn weight(account_id: &str, point: &DataPoint) -> Result<Record, Skipped> {
    let w = point.weight.as_ref().ok_or(Skipped::bad("no weight member"))?;
    let at = w.sample_time.physical_time;
    Ok(record(
        account_id,
        format!("weight/{}", at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        Observation::BodyWeight { kg: w.weight_grams / 1000.0, at, modality: modality(point) },
    ))
}

/// A body-fat sample.
pub fn body_fat(account_id: &str, point: &DataPoint) -> Result<Record, Skipped> {
    let b = point.body_fat.as_ref().ok_or(Skipped::bad("no bodyFat member"))?;
    let at = b.sample_time.physical_time;
    Ok(record(
        account_id,
        format!("body-fat/{}", at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        Observation::BodyFat { percent: b.percentage, at, modality: modality(point) },
    ))
}

/// The family of a paired device: the only device fact that is published.
pub fn device_family(device: &PairedDevice) -> DeviceFamily {
    let model = device.device_version.as_deref().unwrap_or_default().to_ascii_lowercase();
    match device.device_type.as_deref() {
        Some("SCALE") => DeviceFamily::Scale,
        Some("TRACKER") if ["watch", "sense", "versa", "ionic"].iter().any(|w| model.contains(w)) => {
            DeviceFamily::Watch
        }
        Some("TRACKER") => DeviceFamily::Tracker,
        _ => DeviceFamily::Other,
    }
}

/// A paired device's status. The device id and last sync time key the message, so each
/// new sync is a new message and re-reads are not.
pub fn device_status(account_id: &str, device: &PairedDevice) -> Result<Record, Skipped> {
    let battery = device
        .battery_level
        .map(|b| u8::try_from(b).ok().filter(|b| *b <= 100).ok_or(Skipped::bad("batteryLevel out of range")))
        .transpose()?;
    let key = format!("device/{}/{:?}", device.name, device.last_sync_time.map(|t| t.timestamp()));
    Ok(record(
        account_id,
        key,
        Observation::DeviceStatus {
            family: device_family(device),
            battery_percent: battery,
            last_sync: device.last_sync_time,
        },
    ))
}

/// A heart-rate data point → a heart-rate record for `account_id` (the healthUserId).
pub fn heart_rate(account_id: &str, point: &DataPoint) -> Result<Record, Skipped> {
    let hr = point.heart_rate.as_ref().ok_or(Skipped::bad("data point has no heartRate member"))?;
    if !(1..=400).contains(&hr.beats_per_minute) {
        return Err(Skipped::bad("beatsPerMinute out of range"));
    }
    let at = hr.sample_time.physical_time;
    let modality = modality(point);
    // Sample points have no name; the instant identifies them within one account.
    let source_key = match &point.name {
        Some(name) if !name.is_empty() => name.clone(),
        _ => format!("heart-rate/{}", at.to_rfc3339_opts(SecondsFormat::Millis, true)),
    };
    Ok(record(
        account_id,
        source_key,
        Observation::HeartRate { beats_per_minute: hr.beats_per_minute as f64, at, modality },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(text: &str) -> DataPoint {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn offset_times_become_utc() {
        let p = point(
            r#"{"heartRate":{"sampleTime":{"physicalTime":"2026-09-01T04:15:00-04:00","utcOffset":"-14400s"},"beatsPerMinute":"72"}}"#,
        );
        let r = heart_rate("hu1", &p).unwrap();
        assert_eq!(r.observation.source_time().to_rfc3339(), "2026-09-01T08:15:00+00:00");
        assert_eq!(r.source_key, "heart-rate/2026-09-01T08:15:00.000Z");
    }

    #[test]
    fn activity_roll_ups_merge_by_day_and_zero_step_days_get_zero() {
        let points: Vec<Lenient<DailyRollupDataPoint>> = serde_json::from_str(
            r#"[{"civilStartTime":{"date":{"year":2026,"month":11,"day":1}},"steps":{"countSum":"3822"}},
                {"civilStartTime":{"date":{"year":2026,"month":11,"day":1}},"distance":{"millimetersSum":"2900000"}},
                {"civilStartTime":{"date":{"year":2026,"month":11,"day":2}},"totalCalories":{"kcalSum":1650.5}},
                {"civilStartTime":{"date":{"year":2026,"month":11,"day":1}},"activeMinutes":{"activeMinutesRollupByActivityLevel":[
                    {"activityLevel":"LIGHT","activeMinutesSum":"30"},{"activityLevel":"VIGOROUS","activeMinutesSum":"5"}]}}]"#,
        )
        .unwrap();
        let records: Vec<Record> = daily_activity("hu", &points).into_iter().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        match &records[0].observation {
            Observation::DailyActivity { steps, distance_m, active_minutes, kcal, .. } => {
                assert_eq!((*steps, *distance_m, *active_minutes, *kcal), (Some(3822), Some(2900.0), Some(35), None));
            }
            other => panic!("{other:?}"),
        }
        match &records[1].observation {
            Observation::DailyActivity { steps, .. } => assert_eq!(*steps, Some(0)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn device_families() {
        let d = |t: &str, v: &str| PairedDevice {
            name: "x".into(),
            device_type: Some(t.into()),
            device_version: Some(v.into()),
            battery_level: None,
            last_sync_time: None,
        };
        assert_eq!(device_family(&d("TRACKER", "Charge 6")), DeviceFamily::Tracker);
        assert_eq!(device_family(&d("TRACKER", "Pixel Watch 3")), DeviceFamily::Watch);
        assert_eq!(device_family(&d("SCALE", "Aria Air")), DeviceFamily::Scale);
        assert_eq!(device_family(&d("DEVICE_TYPE_UNSPECIFIED", "")), DeviceFamily::Other);
    }

    #[test]
    fn bad_points_are_skipped() {
        assert!(heart_rate("hu1", &point(r#"{}"#)).is_err());
        let p = point(r#"{"heartRate":{"sampleTime":{"physicalTime":"2026-09-01T08:15:00Z"},"beatsPerMinute":"0"}}"#);
        assert!(heart_rate("hu1", &p).is_err());
    }
}
