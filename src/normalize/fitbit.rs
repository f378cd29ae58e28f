//! Google Health data points → records.

use anonymizer::{Modality, Observation, Provider, Record};
use chrono::SecondsFormat;

use super::Skipped;
use crate::sources::fitbit::api::DataPoint;

/// A heart-rate data point → a heart-rate record for `account_id` (the healthUserId).
pub fn heart_rate(account_id: &str, point: &DataPoint) -> Result<Record, Skipped> {
    let hr = point.heart_rate.as_ref().ok_or(Skipped { reason: "data point has no heartRate member" })?;
    if !(1..=400).contains(&hr.beats_per_minute) {
        return Err(Skipped { reason: "beatsPerMinute out of range" });
    }
    let at = hr.sample_time.physical_time;
    let modality = match point.data_source.as_ref().and_then(|s| s.recording_method.as_deref()) {
        Some("MANUAL") => Modality::SelfReported,
        _ => Modality::Sensed,
    };
    // Sample points have no name; the instant identifies them within one account.
    let source_key = match &point.name {
        Some(name) if !name.is_empty() => name.clone(),
        _ => format!("heart-rate/{}", at.to_rfc3339_opts(SecondsFormat::Millis, true)),
    };
    Ok(Record {
        provider: Provider::Fitbit,
        account_id: account_id.to_owned(),
        source_key,
        observation: Observation::HeartRate { beats_per_minute: hr.beats_per_minute as f64, at, modality },
    })
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
    fn bad_points_are_skipped() {
        assert!(heart_rate("hu1", &point(r#"{}"#)).is_err());
        let p = point(r#"{"heartRate":{"sampleTime":{"physicalTime":"2026-09-01T08:15:00Z"},"beatsPerMinute":"0"}}"#);
        assert!(heart_rate("hu1", &p).is_err());
    }
}
