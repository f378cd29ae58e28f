//! The canonical record: typed, UTC, still identifying. Produced by `normalize`,
//! consumed only by [`crate::Anonymizer`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a record came from. Published (it is not identifying) so buyers know the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Fitbit,
    Withings,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Fitbit => "fitbit",
            Provider::Withings => "withings",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a value was obtained (IEEE 1752.1 `modality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Modality {
    Sensed,
    SelfReported,
}

/// One upstream reading, normalised but not yet pseudonymised.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub provider: Provider,
    /// The provider's account id (e.g. Google `healthUserId`). Never published.
    pub account_id: String,
    /// A key that identifies the reading upstream (a data point name, or its time);
    /// only used, keyed, for the message id.
    pub source_key: String,
    pub observation: Observation,
}

/// The typed content of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// One heart-rate sample.
    HeartRate { beats_per_minute: f64, at: DateTime<Utc>, modality: Modality },
}

impl Observation {
    /// The published message type (the schema file name without `.json`).
    pub fn schema_name(&self) -> &'static str {
        match self {
            Observation::HeartRate { .. } => "heart-rate",
        }
    }

    /// The exact upstream time, used for the message id before any coarsening.
    pub fn source_time(&self) -> DateTime<Utc> {
        match self {
            Observation::HeartRate { at, .. } => *at,
        }
    }

    pub fn modality(&self) -> Modality {
        match self {
            Observation::HeartRate { modality, .. } => *modality,
        }
    }
}
