//! Withings answers → records. Values are `value × 10^unit`; ambiguous-owner groups
//! (attrib 1) and goals (category 2) are never published; systolic and diastolic of one
//! group become one blood-pressure record.

use anonymizer::{DeviceFamily, MeasureKind, Modality, Observation, Record, SleepStages};
use chrono::{DateTime, NaiveDate, Utc};

use crate::normalize::Skipped;
use crate::sources::withings::api::{Activity, Device, MeasureGroup, SleepSummary};

fn record(account_id: &str, source_key: String, observation: Observation) -> Record {
    Record { provider: super::PROVIDER, account_id: account_id.to_owned(), source_key, observation }
}

fn at(unix: i64) -> Result<DateTime<Utc>, Skipped> {
    DateTime::from_timestamp(unix, 0).ok_or(Skipped::bad("timestamp out of range"))
}

/// One measure group → one record per measure type (blood pressure: one for both).
/// The source key holds the group, type and value but not `modified`, so re-reading an
/// unchanged group yields the same message ids and a corrected value a new one.
pub fn measure_group(account_id: &str, group: &MeasureGroup) -> Vec<Result<Record, Skipped>> {
    if group.attrib == 1 {
        return vec![Err(Skipped::by_policy("ambiguous owner (attrib 1)"))];
    }
    if group.category != 1 {
        return vec![Err(Skipped::by_policy("not a real measurement (goal)"))];
    }
    let time = match at(group.date) {
        Ok(t) => t,
        Err(e) => return vec![Err(e)],
    };
    let modality = if matches!(group.attrib, 2 | 4) { Modality::SelfReported } else { Modality::Sensed };
    let key = |kind: &str, parts: &str| format!("withings/meas/{}/{kind}/{parts}", group.grpid);
    let mut out = Vec::new();
    let find = |t: i64| group.measures.iter().find(|m| m.kind == t);
    match (find(10), find(9)) {
        (Some(sys), Some(dia)) => out.push(Ok(record(
            account_id,
            key("bp", &format!("{}e{}/{}e{}", sys.value, sys.unit, dia.value, dia.unit)),
            Observation::BloodPressure { systolic: sys.real(), diastolic: dia.real(), at: time, modality },
        ))),
        (None, None) => {}
        _ => out.push(Err(Skipped::bad("blood pressure without both systolic and diastolic"))),
    }
    for m in &group.measures {
        let value = m.real();
        let observation = match m.kind {
            9 | 10 => continue,
            1 => Observation::BodyWeight { kg: value, at: time, modality },
            6 => Observation::BodyFat { percent: value, at: time, modality },
            11 => Observation::HeartRate { beats_per_minute: value, at: time, modality },
            kind => {
                let kind = match kind {
                    5 => MeasureKind::FatFreeMass,
                    8 => MeasureKind::BodyFatMass,
                    12 | 71 => MeasureKind::BodyTemperature,
                    54 => MeasureKind::OxygenSaturation,
                    73 => MeasureKind::SkinTemperature,
                    76 => MeasureKind::MuscleMass,
                    77 => MeasureKind::BodyWaterMass,
                    88 => MeasureKind::BoneMass,
                    91 => MeasureKind::PulseWaveVelocity,
                    123 => MeasureKind::Vo2Max,
                    _ => {
                        out.push(Err(Skipped::by_policy("measure type not published")));
                        continue;
                    }
                };
                Observation::Measurement { kind, value, at: time, modality }
            }
        };
        out.push(Ok(record(account_id, key(&m.kind.to_string(), &format!("{}e{}", m.value, m.unit)), observation)));
    }
    out
}

/// A daily activity summary.
pub fn activity(account_id: &str, a: &Activity) -> Result<Record, Skipped> {
    let day: NaiveDate = a.date.parse().map_err(|_| Skipped::bad("invalid activity date"))?;
    let non_negative = |v: Option<f64>| v.filter(|x| x.is_finite() && *x >= 0.0);
    let steps = non_negative(a.steps).map(|s| s.round() as u64);
    let active_minutes = non_negative(a.active).map(|s| (s / 60.0).round() as u64);
    let distance_m = non_negative(a.distance);
    let kcal = non_negative(a.totalcalories);
    if steps.is_none() && active_minutes.is_none() && distance_m.is_none() && kcal.is_none() {
        return Err(Skipped::bad("activity day without values"));
    }
    let key = format!(
        "withings/activity/{day}/{:?}/{:?}/{:?}/{:?}",
        steps,
        distance_m.map(|d| d.round() as i64),
        active_minutes,
        kcal.map(|k| k.round() as i64)
    );
    Ok(record(account_id, key, Observation::DailyActivity { day, steps, distance_m, active_minutes, kcal }))
}

/// An intraday heart-rate sample.
pub fn heart_rate(account_id: &str, time: DateTime<Utc>, bpm: f64) -> Record {
    record(
        account_id,
        format!("withings/hr/{}", time.timestamp()),
        Observation::HeartRate { beats_per_minute: bpm, at: time, modality: Modality::Sensed },
    )
}

/// A sleep summary (durations in seconds → minutes).
pub fn sleep(account_id: &str, s: &SleepSummary) -> Result<Record, Skipped> {
    let to_min = |v: Option<i64>| v.filter(|x| *x >= 0).map(|x| (x as f64 / 60.0).round() as u64);
    let d = &s.data;
    let stages = SleepStages {
        awake: to_min(d.wakeupduration),
        light: to_min(d.lightsleepduration),
        deep: to_min(d.deepsleepduration),
        rem: to_min(d.remsleepduration),
    };
    Ok(record(
        account_id,
        format!("withings/sleep/{}/{}/{:?}", s.id, s.enddate, d.total_sleep_time),
        Observation::Sleep {
            start: at(s.startdate)?,
            end: at(s.enddate)?,
            main_sleep: true,
            minutes_asleep: to_min(d.total_sleep_time),
            minutes_awake: to_min(d.wakeupduration),
            stages,
        },
    ))
}

/// The family of a Withings device, from its `type` (and model for trackers).
pub fn device_family(d: &Device) -> DeviceFamily {
    let model = d.model.as_deref().unwrap_or_default().to_ascii_lowercase();
    match d.kind.as_deref() {
        Some("Scale") => DeviceFamily::Scale,
        Some("Blood Pressure Monitor") => DeviceFamily::BloodPressureMonitor,
        Some("Sleep Monitor") => DeviceFamily::SleepSensor,
        Some("Activity Tracker") if model.contains("pulse") || model.contains("go") => DeviceFamily::Tracker,
        Some("Activity Tracker") => DeviceFamily::Watch,
        _ => DeviceFamily::Other,
    }
}

/// A device's status: its family and last session.
pub fn device_status(account_id: &str, d: &Device) -> Result<Record, Skipped> {
    let last_sync = d.last_session_date.map(at).transpose()?;
    let key = format!("withings/device/{:?}/{:?}", d.deviceid, d.last_session_date);
    Ok(record(
        account_id,
        key,
        Observation::DeviceStatus { family: device_family(d), battery_percent: None, last_sync },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::withings::api::MeasureBody;

    fn group(attrib: i64, category: i64, measures: &str) -> MeasureGroup {
        serde_json::from_str(&format!(
            r#"{{"grpid": 77, "attrib": {attrib}, "date": 1700000000, "modified": 1700000000, "category": {category},
                "deviceid": "dev", "hash_deviceid": "dev", "measures": {measures}}}"#
        ))
        .unwrap()
    }

    fn only(records: Vec<Result<Record, Skipped>>) -> Vec<Observation> {
        records.into_iter().map(|r| r.unwrap().observation).collect()
    }

    #[test]
    fn every_measure_type_is_scaled_by_its_unit() {
        let cases: &[(i64, i64, i32, f64)] = &[
            (1, 72_345, -3, 72.345),
            (5, 56_100, -3, 56.1),
            (6, 2_137, -2, 21.37),
            (8, 16_245, -3, 16.245),
            (11, 64, 0, 64.0),
            (12, 3_690, -2, 36.9),
            (54, 97, 0, 97.0),
            (71, 3_710, -2, 37.1),
            (73, 331, -1, 33.1),
            (76, 52_000, -3, 52.0),
            (77, 39_500, -3, 39.5),
            (88, 2_800, -3, 2.8),
            (91, 74, -1, 7.4),
            (123, 41, 0, 41.0),
        ];
        for (t, value, unit, expected) in cases {
            let g = group(0, 1, &format!(r#"[{{"value": {value}, "type": {t}, "unit": {unit}}}]"#));
            let obs = only(measure_group("u", &g));
            assert_eq!(obs.len(), 1, "type {t}");
            let got = match &obs[0] {
                Observation::BodyWeight { kg, .. } => *kg,
                Observation::BodyFat { percent, .. } => *percent,
                Observation::HeartRate { beats_per_minute, .. } => *beats_per_minute,
                Observation::Measurement { value, .. } => *value,
                other => panic!("type {t}: {other:?}"),
            };
            assert!((got - expected).abs() < 1e-9, "type {t}: {got} != {expected}");
        }
    }

    #[test]
    fn blood_pressure_is_one_record_with_both_values() {
        let g = group(
            0,
            1,
            r#"[{"value": 121, "type": 10, "unit": 0}, {"value": 79, "type": 9, "unit": 0}, {"value": 64, "type": 11, "unit": 0}]"#,
        );
        let obs = only(measure_group("u", &g));
        assert_eq!(obs.len(), 2);
        assert!(
            matches!(obs[0], Observation::BloodPressure { systolic, diastolic, .. } if systolic == 121.0 && diastolic == 79.0)
        );
        assert!(matches!(obs[1], Observation::HeartRate { .. }));
        let half = group(0, 1, r#"[{"value": 121, "type": 10, "unit": 0}]"#);
        assert!(measure_group("u", &half)[0].is_err());
    }

    #[test]
    fn ambiguous_groups_and_goals_are_skipped() {
        assert!(measure_group("u", &group(1, 1, r#"[{"value": 70, "type": 1, "unit": 0}]"#))[0].is_err());
        assert!(measure_group("u", &group(0, 2, r#"[{"value": 70, "type": 1, "unit": 0}]"#))[0].is_err());
        let manual = only(measure_group("u", &group(2, 1, r#"[{"value": 70, "type": 1, "unit": 0}]"#)));
        assert!(matches!(manual[0], Observation::BodyWeight { modality: Modality::SelfReported, .. }));
    }

    #[test]
    fn ids_are_stable_across_modified_rereads() {
        let a = group(0, 1, r#"[{"value": 70123, "type": 1, "unit": -3}]"#);
        let mut b = a.clone();
        b.modified = Some(1_800_000_000);
        let ka = measure_group("u", &a).remove(0).unwrap().source_key;
        let kb = measure_group("u", &b).remove(0).unwrap().source_key;
        assert_eq!(ka, kb);
        let mut c = a.clone();
        c.measures[0].value = 70_500;
        assert_ne!(ka, measure_group("u", &c).remove(0).unwrap().source_key);
    }

    #[test]
    fn captured_sample_normalises() {
        let body: MeasureBody =
            serde_json::from_str(include_str!("../../../tests/fixtures/withings/get_meas.json")).unwrap();
        let groups: Vec<&MeasureGroup> = body.measuregrps.iter().filter_map(|g| g.good()).collect();
        assert_eq!(groups.len(), body.measuregrps.len(), "every captured group parses");
        let records: Vec<_> = groups.into_iter().flat_map(|g| measure_group("u", g)).collect();
        assert!(records.iter().any(|r| matches!(r, Ok(Record { observation: Observation::BloodPressure { .. }, .. }))));
    }
}
