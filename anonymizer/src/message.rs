//! The published message: a pseudonymous subject, an IEEE 1752.1-style header and an
//! Open mHealth-style body. Only the fields declared here can ever be serialised.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

use crate::{Modality, Provider};

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

/// Message bodies, one variant per message type.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Body {
    HeartRate { heart_rate: UnitValue, effective_time_frame: TimeFrame },
}

impl Body {
    pub(crate) fn heart_rate(bpm: f64, at: DateTime<Utc>) -> Self {
        Body::HeartRate {
            heart_rate: UnitValue { value: bpm, unit: "beats/min" },
            effective_time_frame: TimeFrame::DateTime { date_time: at },
        }
    }
}

/// `{value, unit}` as Open mHealth writes quantities.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitValue {
    pub value: f64,
    pub unit: &'static str,
}

/// Open mHealth `time-frame`: an instant (or, later, an interval).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TimeFrame {
    DateTime {
        #[serde(serialize_with = "utc")]
        date_time: DateTime<Utc>,
    },
}

fn utc<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
}
