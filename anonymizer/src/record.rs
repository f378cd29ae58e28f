//! The canonical record: typed, UTC, still identifying. Produced by `normalize`,
//! consumed only by [`crate::Anonymizer`].

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Where a record came from: the name a source registered under (`fitbit`, `withings`,
/// ...). Published (it is not identifying) so buyers know the source. A name, not an enum,
/// so that adding a source never touches this crate; it is 1–32 characters of lowercase
/// ASCII letters, digits and `-`, checked when the source declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Provider(&'static str);

impl Provider {
    /// Declares a provider name; panics (at compile time when used in a `const`) when
    /// the name is not 1–32 characters of `[a-z0-9-]`.
    pub const fn new(name: &'static str) -> Self {
        assert!(Self::valid(name), "a provider name is 1-32 characters of [a-z0-9-]");
        Self(name)
    }

    /// Whether `name` may name a provider.
    pub const fn valid(name: &str) -> bool {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > 32 {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit() || b[i] == b'-') {
                return false;
            }
            i += 1;
        }
        true
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// How a value was obtained (IEEE 1752.1 `modality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Modality {
    Sensed,
    SelfReported,
}

/// What kind of device produced data: the only device fact that is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceFamily {
    Tracker,
    Watch,
    Scale,
    BloodPressureMonitor,
    SleepSensor,
    Other,
}

/// Single-valued body measurements (mostly from Withings scales, thermometers, watches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeasureKind {
    BodyFatMass,
    FatFreeMass,
    MuscleMass,
    BoneMass,
    BodyWaterMass,
    BodyTemperature,
    SkinTemperature,
    OxygenSaturation,
    PulseWaveVelocity,
    Vo2Max,
}

impl MeasureKind {
    pub const ALL: [MeasureKind; 10] = [
        MeasureKind::BodyFatMass,
        MeasureKind::FatFreeMass,
        MeasureKind::MuscleMass,
        MeasureKind::BoneMass,
        MeasureKind::BodyWaterMass,
        MeasureKind::BodyTemperature,
        MeasureKind::SkinTemperature,
        MeasureKind::OxygenSaturation,
        MeasureKind::PulseWaveVelocity,
        MeasureKind::Vo2Max,
    ];

    /// (message type, body field, unit, lowest, highest, generalisation step)
    pub(crate) fn spec(self) -> (&'static str, &'static str, &'static str, f64, f64, f64) {
        match self {
            MeasureKind::BodyFatMass => ("body-fat-mass", "body_fat_mass", "kg", 0.0, 400.0, 0.1),
            MeasureKind::FatFreeMass => ("fat-free-mass", "fat_free_mass", "kg", 0.0, 400.0, 0.1),
            MeasureKind::MuscleMass => ("muscle-mass", "muscle_mass", "kg", 0.0, 300.0, 0.1),
            MeasureKind::BoneMass => ("bone-mass", "bone_mass", "kg", 0.0, 50.0, 0.1),
            MeasureKind::BodyWaterMass => ("body-water-mass", "body_water_mass", "kg", 0.0, 300.0, 0.1),
            MeasureKind::BodyTemperature => ("body-temperature", "body_temperature", "C", 25.0, 45.0, 0.1),
            MeasureKind::SkinTemperature => ("skin-temperature", "skin_temperature", "C", 10.0, 45.0, 0.1),
            MeasureKind::OxygenSaturation => ("oxygen-saturation", "oxygen_saturation", "%", 50.0, 100.0, 1.0),
            MeasureKind::PulseWaveVelocity => ("pulse-wave-velocity", "pulse_wave_velocity", "m/s", 1.0, 30.0, 0.1),
            MeasureKind::Vo2Max => ("vo2-max", "vo2_max", "mL/kg/min", 5.0, 100.0, 1.0),
        }
    }

    /// The published message type.
    pub fn schema_name(self) -> &'static str {
        self.spec().0
    }
}

/// Minutes per sleep stage, where the provider reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SleepStages {
    pub awake: Option<u64>,
    pub light: Option<u64>,
    pub deep: Option<u64>,
    pub rem: Option<u64>,
}

/// One upstream reading, normalised but not yet pseudonymised.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub provider: Provider,
    /// The provider's account id (e.g. Google `healthUserId`). Never published.
    pub account_id: String,
    /// A key that identifies the reading upstream (a data point name, or its time, plus
    /// anything whose change makes it a new version); only used, keyed, for the message id.
    pub source_key: String,
    pub observation: Observation,
}

/// The typed content of a record. Days are the person's civil days; instants are UTC.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// One heart-rate sample.
    HeartRate {
        beats_per_minute: f64,
        at: DateTime<Utc>,
        modality: Modality,
    },
    /// The day's resting heart rate.
    RestingHeartRate {
        beats_per_minute: f64,
        day: NaiveDate,
    },
    /// The day's activity totals; a missing member was not reported.
    DailyActivity {
        day: NaiveDate,
        steps: Option<u64>,
        distance_m: Option<f64>,
        active_minutes: Option<u64>,
        kcal: Option<f64>,
    },
    /// One sleep session.
    Sleep {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        main_sleep: bool,
        minutes_asleep: Option<u64>,
        minutes_awake: Option<u64>,
        stages: SleepStages,
    },
    BodyWeight {
        kg: f64,
        at: DateTime<Utc>,
        modality: Modality,
    },
    BodyFat {
        percent: f64,
        at: DateTime<Utc>,
        modality: Modality,
    },
    /// A single-valued body measurement.
    Measurement {
        kind: MeasureKind,
        value: f64,
        at: DateTime<Utc>,
        modality: Modality,
    },
    /// One blood-pressure reading: systolic and diastolic together, in mmHg.
    BloodPressure {
        systolic: f64,
        diastolic: f64,
        at: DateTime<Utc>,
        modality: Modality,
    },
    /// One subject's heart-rate samples in `[start, end)`, published as per-step
    /// aggregates (a closed window; `revision` counts republications after late data).
    HeartRateSeries {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        samples: Vec<(DateTime<Utc>, f64)>,
        revision: u32,
    },
    /// A paired device's state.
    DeviceStatus {
        family: DeviceFamily,
        battery_percent: Option<u8>,
        last_sync: Option<DateTime<Utc>>,
    },
}

impl Observation {
    /// The published message type (the schema file name without `.json`).
    pub fn schema_name(&self) -> &'static str {
        match self {
            Observation::HeartRate { .. } => "heart-rate",
            Observation::HeartRateSeries { .. } => "heart-rate-series",
            Observation::RestingHeartRate { .. } => "resting-heart-rate",
            Observation::DailyActivity { .. } => "daily-activity",
            Observation::Sleep { .. } => "sleep-episode",
            Observation::BodyWeight { .. } => "body-weight",
            Observation::BodyFat { .. } => "body-fat-percentage",
            Observation::DeviceStatus { .. } => "device-status",
            Observation::Measurement { kind, .. } => kind.schema_name(),
            Observation::BloodPressure { .. } => "blood-pressure",
        }
    }

    /// The exact upstream time, used for the message id before any coarsening.
    pub fn source_time(&self) -> DateTime<Utc> {
        let midnight = |d: &NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default();
        match self {
            Observation::HeartRate { at, .. }
            | Observation::BodyWeight { at, .. }
            | Observation::BodyFat { at, .. }
            | Observation::Measurement { at, .. }
            | Observation::BloodPressure { at, .. } => *at,
            Observation::RestingHeartRate { day, .. } | Observation::DailyActivity { day, .. } => midnight(day),
            Observation::Sleep { start, .. } | Observation::HeartRateSeries { start, .. } => *start,
            Observation::DeviceStatus { last_sync, .. } => last_sync.unwrap_or_default(),
        }
    }

    pub fn modality(&self) -> Modality {
        match self {
            Observation::HeartRate { modality, .. }
            | Observation::BodyWeight { modality, .. }
            | Observation::BodyFat { modality, .. }
            | Observation::Measurement { modality, .. }
            | Observation::BloodPressure { modality, .. } => *modality,
            _ => Modality::Sensed,
        }
    }
}
