//! The published message: a pseudonymous subject, an IEEE 1752.1-style header and an
//! Open mHealth-style body. Only the fields declared here can ever be serialised.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crate::{DeviceFamily, Modality, Provider};

/// One publishable message. Its JSON form is what `schemas/<type>.json` describes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Keyed pseudonym of the person; Streamr partitions by it.
    pub subject: String,
    /// The public id of the key epoch that produced `subject` and `header.uuid`.
    pub key_epoch: String,
    pub header: Header,
    pub body: Body,
}

impl Message {
    /// The message type, as in the schema file name.
    pub fn message_type(&self) -> &'static str {
        self.header.schema_id.name
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Header {
    /// Deterministic id: the same upstream record always yields the same id.
    pub uuid: String,
    pub schema_id: SchemaId,
    #[serde(serialize_with = "utc")]
    pub source_creation_date_time: DateTime<Utc>,
    pub modality: Modality,
    /// Which provider the reading came from (not identifying).
    #[serde(rename = "source_provider")]
    pub provider: Provider,
}

/// `{namespace, name, version}` as in IEEE 1752.1 / Open mHealth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaId {
    pub namespace: &'static str,
    pub name: &'static str,
    pub version: &'static str,
}

impl SchemaId {
    pub(crate) fn wearbridge(name: &'static str) -> Self {
        Self { namespace: "wearbridge", name, version: "1.0" }
    }
}

/// Message bodies, one variant per message type (field names after Open mHealth).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Body {
    HeartRate {
        heart_rate: UnitValue,
        effective_time_frame: TimeFrame,
    },
    RestingHeartRate {
        heart_rate: UnitValue,
        effective_time_frame: TimeFrame,
    },
    DailyActivity {
        #[serde(skip_serializing_if = "Option::is_none")]
        step_count: Option<UnitValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        distance: Option<UnitValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        active_duration: Option<UnitValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        kcal_burned: Option<UnitValue>,
        effective_time_frame: TimeFrame,
    },
    SleepEpisode {
        is_main_sleep: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        total_sleep_time: Option<UnitValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        awake_time: Option<UnitValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        sleep_stages: Option<StageMinutes>,
        effective_time_frame: TimeFrame,
    },
    BodyWeight {
        body_weight: UnitValue,
        effective_time_frame: TimeFrame,
    },
    BodyFatPercentage {
        body_fat_percentage: UnitValue,
        effective_time_frame: TimeFrame,
    },
    /// `{<field>: {value, unit}, effective_time_frame}` for the single-valued measures.
    Measurement(Measurement),
    BloodPressure {
        systolic_blood_pressure: UnitValue,
        diastolic_blood_pressure: UnitValue,
        effective_time_frame: TimeFrame,
    },
    /// Heart rate over a closed window: one aggregate per step with samples.
    HeartRateSeries {
        heart_rate: SeriesValues,
        revision: u32,
        effective_time_frame: TimeFrame,
    },
    DeviceStatus {
        device_family: DeviceFamily,
        #[serde(skip_serializing_if = "Option::is_none")]
        battery_level: Option<UnitValue>,
        #[serde(skip_serializing_if = "Option::is_none", serialize_with = "utc_opt")]
        last_sync_date_time: Option<DateTime<Utc>>,
    },
}

/// Per-step aggregates of a series: `points[i]` covers `[start + offset·step,
/// start + (offset+1)·step)` of the window; steps without samples are left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesValues {
    pub unit: &'static str,
    /// The step, in seconds (the message type's time granularity).
    pub step_seconds: u32,
    pub points: Vec<SeriesPoint>,
}

/// One step's aggregate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Steps since the window's start.
    pub offset: u32,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub count: u32,
}

/// A single-valued measurement whose field name depends on its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub field: &'static str,
    pub value: UnitValue,
    pub effective_time_frame: TimeFrame,
}

impl Serialize for Measurement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry(self.field, &self.value)?;
        map.serialize_entry("effective_time_frame", &self.effective_time_frame)?;
        map.end()
    }
}

/// Minutes per sleep stage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageMinutes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awake: Option<UnitValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub light: Option<UnitValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deep: Option<UnitValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rem: Option<UnitValue>,
}

/// `{value, unit}` as Open mHealth writes quantities.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitValue {
    pub value: f64,
    pub unit: &'static str,
}

impl UnitValue {
    pub(crate) fn new(value: f64, unit: &'static str) -> Self {
        Self { value, unit }
    }
}

/// Open mHealth `time-frame`: an instant, an interval of instants, or a civil day.
/// A day is published as a date without a time zone on purpose: its UTC bounds would
/// reveal the person's offset.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFrame {
    #[serde(serialize_with = "utc")]
    DateTime(DateTime<Utc>),
    TimeInterval(Interval),
}

/// Either both instants or one civil date.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Interval {
    Instants {
        #[serde(serialize_with = "utc")]
        start_date_time: DateTime<Utc>,
        #[serde(serialize_with = "utc")]
        end_date_time: DateTime<Utc>,
    },
    Day {
        date: NaiveDate,
    },
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as `to_rfc3339_opts(Secs, true)` writes it, without allocating
/// for the years 0 to 9999 (every message has two or three of these).
fn utc<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    use chrono::{Datelike, Timelike};
    let at = at.naive_utc();
    let year = at.year();
    if !(0..=9999).contains(&year) || at.nanosecond() >= 1_000_000_000 {
        return s.serialize_str(&at.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true));
    }
    let mut text = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, value: u32, width: usize| {
        let mut value = value;
        for i in (0..width).rev() {
            text[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, year.unsigned_abs(), 4);
    put(5, at.month(), 2);
    put(8, at.day(), 2);
    put(11, at.hour(), 2);
    put(14, at.minute(), 2);
    put(17, at.second(), 2);
    match std::str::from_utf8(&text) {
        Ok(text) => s.serialize_str(text),
        Err(_) => s.serialize_str(&at.and_utc().to_rfc3339_opts(SecondsFormat::Secs, true)),
    }
}

fn utc_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => utc(at, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, SecondsFormat, Utc};

    /// The allocation-free writer gives chrono's text for every instant, in and out of
    /// the years it writes itself (a stride through all of them, and the edges).
    #[test]
    fn utc_text_is_chronos() {
        #[derive(serde::Serialize)]
        struct At(#[serde(serialize_with = "super::utc")] DateTime<Utc>);
        let mut seconds = -62_200_000_000_i64; // before year 0
        let mut checked = 0;
        while seconds < 254_000_000_000 {
            for nanos in [0, 999_999_999, 1_000_000_000] {
                let Some(at) = DateTime::from_timestamp(seconds, nanos) else { continue };
                let ours = serde_json::to_string(&At(at)).unwrap();
                assert_eq!(ours, format!("\"{}\"", at.to_rfc3339_opts(SecondsFormat::Secs, true)), "{seconds}");
                checked += 1;
            }
            seconds += 7_777_777; // about 90 days, landing on every hour, minute and second
        }
        assert!(checked > 80_000, "{checked}");
    }
}
