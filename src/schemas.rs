//! The published JSON Schemas (`schemas/*.json`), embedded in the binary, and the check
//! every message passes before it may leave the process.

use std::collections::BTreeMap;

use jsonschema::Validator;
use serde_json::Value;

/// Every schema file: the envelope and one per message type.
const FILES: &[(&str, &str)] = &[
    ("envelope", include_str!("../schemas/envelope.json")),
    ("heart-rate", include_str!("../schemas/heart-rate.json")),
    ("heart-rate-series", include_str!("../schemas/heart-rate-series.json")),
    ("resting-heart-rate", include_str!("../schemas/resting-heart-rate.json")),
    ("daily-activity", include_str!("../schemas/daily-activity.json")),
    ("sleep-episode", include_str!("../schemas/sleep-episode.json")),
    ("body-weight", include_str!("../schemas/body-weight.json")),
    ("body-fat-percentage", include_str!("../schemas/body-fat-percentage.json")),
    ("device-status", include_str!("../schemas/device-status.json")),
    ("blood-pressure", include_str!("../schemas/blood-pressure.json")),
    ("body-fat-mass", include_str!("../schemas/body-fat-mass.json")),
    ("fat-free-mass", include_str!("../schemas/fat-free-mass.json")),
    ("muscle-mass", include_str!("../schemas/muscle-mass.json")),
    ("bone-mass", include_str!("../schemas/bone-mass.json")),
    ("body-water-mass", include_str!("../schemas/body-water-mass.json")),
    ("body-temperature", include_str!("../schemas/body-temperature.json")),
    ("skin-temperature", include_str!("../schemas/skin-temperature.json")),
    ("oxygen-saturation", include_str!("../schemas/oxygen-saturation.json")),
    ("pulse-wave-velocity", include_str!("../schemas/pulse-wave-velocity.json")),
    ("vo2-max", include_str!("../schemas/vo2-max.json")),
];

/// A schema file that does not compile (a build defect, caught by tests).
#[derive(Debug, thiserror::Error)]
#[error("schema {name} is invalid: {message}")]
pub struct SchemaError {
    pub name: &'static str,
    pub message: String,
}

/// A message that failed its schema. Kept out of every sink.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message {message_id} does not match schema {schema}: {}", errors.join("; "))]
pub struct SchemaViolation {
    pub message_id: String,
    pub schema: String,
    pub errors: Vec<String>,
}

/// Compiled validators for the envelope and each message type.
pub struct Schemas {
    envelope: Validator,
    types: BTreeMap<&'static str, Validator>,
}

impl Schemas {
    /// Compiles every embedded schema (format assertions on).
    pub fn load() -> Result<Self, SchemaError> {
        let mut envelope = None;
        let mut types = BTreeMap::new();
        for (name, text) in FILES {
            let value: Value = serde_json::from_str(text).map_err(|e| SchemaError { name, message: e.to_string() })?;
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&value)
                .map_err(|e| SchemaError { name, message: e.to_string() })?;
            if *name == "envelope" {
                envelope = Some(validator);
            } else {
                types.insert(*name, validator);
            }
        }
        let envelope = envelope.ok_or(SchemaError { name: "envelope", message: "missing".into() })?;
        Ok(Self { envelope, types })
    }

    /// Names of all schemas (`envelope` and the message types).
    pub fn names() -> impl Iterator<Item = &'static str> {
        FILES.iter().map(|(name, _)| *name)
    }

    /// The JSON text of one schema, as published.
    pub fn text(name: &str) -> Option<&'static str> {
        let name = name.strip_suffix(".json").unwrap_or(name);
        FILES.iter().find(|(n, _)| *n == name).map(|(_, text)| *text)
    }

    /// Checks `message` against the envelope and its own type's schema. The common case
    /// (valid) takes the fast boolean path; errors are collected only on failure.
    pub fn validate(&self, message: &Value) -> Result<(), SchemaViolation> {
        let schema = message.pointer("/header/schema_id/name").and_then(Value::as_str).unwrap_or("?");
        let typed = self.types.get(schema);
        if typed.is_some_and(|v| v.is_valid(message)) && self.envelope.is_valid(message) {
            return Ok(());
        }
        let message_id = message.pointer("/header/uuid").and_then(Value::as_str).unwrap_or("?").to_owned();
        let mut errors: Vec<String> =
            self.envelope.iter_errors(message).map(|e| format!("{}: {e}", e.instance_path())).collect();
        match typed {
            Some(v) => errors.extend(v.iter_errors(message).map(|e| format!("{}: {e}", e.instance_path()))),
            None => errors.push(format!("no schema for message type {schema:?}")),
        }
        Err(SchemaViolation { message_id, schema: schema.to_owned(), errors })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn good() -> Value {
        json!({
            "subject": "0123456789abcdef0123456789abcdef",
            "key_epoch": "1",
            "header": {
                "uuid": "01234567-89ab-8def-8123-456789abcdef",
                "schema_id": {"namespace": "wearbridge", "name": "heart-rate", "version": "1.0"},
                "source_creation_date_time": "2026-11-01T10:00:00Z",
                "modality": "sensed",
                "source_provider": "fitbit"
            },
            "body": {"heart_rate": {"value": 61.0, "unit": "beats/min"}, "effective_time_frame": {"date_time": "2026-11-01T10:00:00Z"}}
        })
    }

    #[test]
    fn every_message_type_has_a_schema() {
        for t in anonymizer::KNOWN_TYPES {
            assert!(Schemas::text(t).is_some(), "no schema for {t}");
        }
        assert_eq!(Schemas::names().count(), anonymizer::KNOWN_TYPES.len() + 1);
    }

    #[test]
    fn all_schemas_compile_and_are_listed() {
        Schemas::load().unwrap();
        assert!(Schemas::names().any(|n| n == "heart-rate"));
        assert!(Schemas::text("heart-rate.json").is_some());
        assert!(Schemas::text("nope").is_none());
    }

    #[test]
    fn a_message_of_every_type_validates() {
        use anonymizer::*;
        use chrono::{NaiveDate, TimeZone, Utc};
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 7, 31, 12).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let observations = vec![
            Observation::HeartRate { beats_per_minute: 61.0, at, modality: Modality::Sensed },
            Observation::RestingHeartRate { beats_per_minute: 55.0, day },
            Observation::DailyActivity {
                day,
                steps: Some(3822),
                distance_m: Some(2900.4),
                active_minutes: Some(31),
                kcal: Some(2100.7),
            },
            Observation::DailyActivity { day, steps: None, distance_m: None, active_minutes: Some(3), kcal: None },
            Observation::Sleep {
                start: at,
                end: at + chrono::TimeDelta::hours(7),
                main_sleep: true,
                minutes_asleep: Some(390),
                minutes_awake: Some(30),
                stages: SleepStages { awake: Some(30), light: Some(200), deep: Some(90), rem: Some(100) },
            },
            Observation::BodyWeight { kg: 72.43, at, modality: Modality::SelfReported },
            Observation::BodyFat { percent: 21.37, at, modality: Modality::Sensed },
            Observation::DeviceStatus { family: DeviceFamily::Watch, battery_percent: Some(83), last_sync: Some(at) },
            Observation::DeviceStatus { family: DeviceFamily::Scale, battery_percent: None, last_sync: None },
            Observation::BloodPressure { systolic: 121.0, diastolic: 79.0, at, modality: Modality::Sensed },
        ];
        let mut observations = observations;
        for kind in MeasureKind::ALL {
            let value = match kind {
                MeasureKind::BodyTemperature => 36.9,
                MeasureKind::SkinTemperature => 33.1,
                MeasureKind::OxygenSaturation => 97.0,
                MeasureKind::PulseWaveVelocity => 7.4,
                MeasureKind::Vo2Max => 41.0,
                _ => 12.34,
            };
            observations.push(Observation::Measurement { kind, value, at, modality: Modality::Sensed });
        }
        let a = Anonymizer::new(PseudonymKey::new("t", [1; 32]).unwrap(), Policy::default());
        let schemas = Schemas::load().unwrap();
        for observation in observations {
            let record = Record {
                provider: crate::sources::fitbit::PROVIDER,
                account_id: "acc".into(),
                source_key: "k".into(),
                observation,
            };
            let message = a.anonymize(&record).unwrap();
            let value = serde_json::to_value(&message).unwrap();
            schemas.validate(&value).unwrap_or_else(|e| panic!("{e}: {value}"));
        }
        let mut empty_activity = serde_json::to_value(
            a.anonymize(&Record {
                provider: crate::sources::fitbit::PROVIDER,
                account_id: "acc".into(),
                source_key: "k".into(),
                observation: Observation::DailyActivity {
                    day,
                    steps: Some(1),
                    distance_m: None,
                    active_minutes: None,
                    kcal: None,
                },
            })
            .unwrap(),
        )
        .unwrap();
        empty_activity["body"].as_object_mut().unwrap().remove("step_count");
        assert!(schemas.validate(&empty_activity).is_err(), "a day with no member is refused");
    }

    #[test]
    fn good_message_passes_and_bad_ones_fail() {
        let s = Schemas::load().unwrap();
        s.validate(&good()).unwrap();
        let mut extra = good();
        extra["body"]["device_serial"] = json!("X");
        assert!(s.validate(&extra).is_err(), "additional properties are refused");
        let mut extra_top = good();
        extra_top["healthUserId"] = json!("X");
        assert!(s.validate(&extra_top).is_err());
        let mut offset = good();
        offset["body"]["effective_time_frame"]["date_time"] = json!("2026-11-01T10:00:00-05:00");
        assert!(s.validate(&offset).is_err(), "only UTC times");
        let mut unit = good();
        unit["body"]["heart_rate"]["unit"] = json!("bpm");
        let err = s.validate(&unit).unwrap_err();
        assert_eq!(err.message_id, "01234567-89ab-8def-8123-456789abcdef");
        let mut unknown = good();
        unknown["header"]["schema_id"]["name"] = json!("mystery");
        assert!(s.validate(&unknown).is_err());
    }
}
