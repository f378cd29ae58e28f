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

fn utc<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn utc_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => utc(at, s),
        None => s.serialize_none(),
    }
}
