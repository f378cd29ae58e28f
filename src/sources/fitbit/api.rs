//! Response types of the Google Health API v4, after the discovery document.
//!
//! Only fields wearbridge uses are declared; everything else in a response (device
//! names, MAC addresses, ids) is never even parsed. int64 values arrive as JSON strings
//! but plain numbers are accepted too.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::normalize::Lenient;

/// `GET v4/users/me/identity`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub health_user_id: String,
}

/// `GET v4/users/me/settings` (only what time handling needs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub utc_offset: Option<String>,
}

/// `GET v4/users/me/dataTypes/{type}/dataPoints`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDataPointsResponse {
    #[serde(default)]
    pub data_points: Vec<Lenient<DataPoint>>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// One data point; only the members wearbridge reads are declared.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataPoint {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub data_source: Option<DataSource>,
    #[serde(default)]
    pub heart_rate: Option<HeartRate>,
    #[serde(default)]
    pub daily_resting_heart_rate: Option<DailyRestingHeartRate>,
    #[serde(default)]
    pub sleep: Option<Sleep>,
    #[serde(default)]
    pub weight: Option<Weight>,
    #[serde(default)]
    pub body_fat: Option<BodyFat>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyRestingHeartRate {
    pub date: Date,
    #[serde(deserialize_with = "int64")]
    pub beats_per_minute: i64,
}

/// `google.type.Date`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    pub fn to_naive(self) -> Option<chrono::NaiveDate> {
        chrono::NaiveDate::from_ymd_opt(self.year, self.month, self.day)
    }
}

/// `CivilDateTime` (only the date is used).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct CivilDateTime {
    pub date: Date,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sleep {
    pub interval: SessionTimeInterval,
    #[serde(default)]
    pub metadata: Option<SleepMetadata>,
    #[serde(default)]
    pub summary: Option<SleepSummary>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionTimeInterval {
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SleepMetadata {
    #[serde(default)]
    pub nap: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SleepSummary {
    #[serde(default, deserialize_with = "opt_int64")]
    pub minutes_asleep: Option<i64>,
    #[serde(default, deserialize_with = "opt_int64")]
    pub minutes_awake: Option<i64>,
    #[serde(default)]
    pub stages_summary: Vec<StageSummary>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageSummary {
    #[serde(rename = "type")]
    pub stage: String,
    #[serde(deserialize_with = "int64")]
    pub minutes: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Weight {
    pub sample_time: ObservationSampleTime,
    pub weight_grams: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BodyFat {
    pub sample_time: ObservationSampleTime,
    pub percentage: f64,
}

/// `POST .../dataPoints:dailyRollUp`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyRollUpResponse {
    #[serde(default)]
    pub rollup_data_points: Vec<Lenient<DailyRollupDataPoint>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyRollupDataPoint {
    pub civil_start_time: CivilDateTime,
    #[serde(default)]
    pub steps: Option<StepsRollup>,
    #[serde(default)]
    pub distance: Option<DistanceRollup>,
    #[serde(default)]
    pub active_minutes: Option<ActiveMinutesRollup>,
    #[serde(default)]
    pub total_calories: Option<TotalCaloriesRollup>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepsRollup {
    #[serde(deserialize_with = "int64")]
    pub count_sum: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DistanceRollup {
    #[serde(deserialize_with = "int64")]
    pub millimeters_sum: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveMinutesRollup {
    #[serde(default)]
    pub active_minutes_rollup_by_activity_level: Vec<ActiveMinutesByLevel>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveMinutesByLevel {
    #[serde(default)]
    pub activity_level: Option<String>,
    #[serde(deserialize_with = "int64")]
    pub active_minutes_sum: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TotalCaloriesRollup {
    pub kcal_sum: f64,
}

/// `GET v4/users/me/pairedDevices`. Only harmless facts are declared: the device `name`
/// (an id) is read only to key the message id, `macAddress` is never parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPairedDevicesResponse {
    #[serde(default)]
    pub paired_devices: Vec<Lenient<PairedDevice>>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub device_version: Option<String>,
    #[serde(default)]
    pub battery_level: Option<i64>,
    #[serde(default)]
    pub last_sync_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    #[serde(default)]
    pub recording_method: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartRate {
    pub sample_time: ObservationSampleTime,
    #[serde(deserialize_with = "int64")]
    pub beats_per_minute: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationSampleTime {
    pub physical_time: DateTime<Utc>,
    #[serde(default)]
    pub utc_offset: Option<String>,
}

/// Google's error body: `{"error":{"code","message","status"}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub details: Vec<ErrorInfo>,
}

/// One entry of `error.details` (only `ErrorInfo.reason` is used).
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorInfo {
    #[serde(default)]
    pub reason: Option<String>,
}

/// int64 as Google writes it (a string), or as a plain number.
pub fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Text(String),
        Number(i64),
    }
    match Int64::deserialize(d)? {
        Int64::Number(n) => Ok(n),
        Int64::Text(s) => {
            s.trim().parse().map_err(|_| serde::de::Error::custom("expected an int64 (as a string or number)"))
        }
    }
}

/// An optional int64 (string or number).
pub fn opt_int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    int64(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_as_string_or_number() {
        let a: HeartRate =
            serde_json::from_str(r#"{"sampleTime":{"physicalTime":"2026-09-01T08:15:00Z"},"beatsPerMinute":"72"}"#)
                .unwrap();
        let b: HeartRate =
            serde_json::from_str(r#"{"sampleTime":{"physicalTime":"2026-09-01T08:15:00Z"},"beatsPerMinute":72}"#)
                .unwrap();
        assert_eq!(a.beats_per_minute, 72);
        assert_eq!(b.beats_per_minute, 72);
        assert!(
            serde_json::from_str::<HeartRate>(
                r#"{"sampleTime":{"physicalTime":"2026-09-01T08:15:00Z"},"beatsPerMinute":"x"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn live_shape_parses() {
        let text = r#"{"dataPoints":[{"dataSource":{"recordingMethod":"PASSIVELY_MEASURED","platform":"FITBIT",
          "device":{"displayName":"Pixel Watch 3","formFactor":"WATCH","manufacturer":"Google"}},
          "heartRate":{"sampleTime":{"physicalTime":"2026-09-01T08:15:00Z","utcOffset":"-14400s",
           "civilTime":{"date":{"year":2026,"month":9,"day":1},"time":{"hours":4,"minutes":15}}},
           "beatsPerMinute":"72","metadata":{"motionContext":"SEDENTARY","sensorLocation":"WRIST"}}}],
         "nextPageToken":"CiAK"}"#;
        let r: ListDataPointsResponse = serde_json::from_str(text).unwrap();
        assert_eq!(r.data_points.len(), 1);
        assert_eq!(r.next_page_token.as_deref(), Some("CiAK"));
    }
}
