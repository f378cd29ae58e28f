//! When each dataset is read (`[sync.schedule.<dataset>]`): an interval, or a local time
//! of day, and how far each read reaches back. The defaults follow when the data can
//! change, so that a person-day costs few upstream requests (see BENCHMARKS.md, "Upstream
//! requests per person-day"): daily data once the day is over, in one morning pass;
//! heart rate and body measures every few hours (push notifications, once enabled, bring
//! changes sooner).

use std::time::Duration;

use chrono::NaiveTime;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Dataset;

/// One dataset's settings as written; unset members take the defaults of
/// [`super::SyncSettings::plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct DatasetSchedule {
    /// Read every this long (from the end of the last read, plus `sync.jitter`).
    #[serde(with = "super::duration::serde_text_opt", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Read once a day when the person's local clock reads this (`"10:00"`).
    #[serde(with = "local_time", skip_serializing_if = "Option::is_none")]
    pub at: Option<NaiveTime>,
    /// How far before the dataset's cursor each read starts, to catch late uploads.
    #[serde(with = "super::duration::serde_text_opt", skip_serializing_if = "Option::is_none")]
    pub lookback: Option<Duration>,
}

/// When a dataset is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// This long after its last read.
    Every(Duration),
    /// Daily at this local time of the person's zone (UTC until the zone is known).
    DailyAt(NaiveTime),
}

/// A dataset's resolved schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub when: When,
    pub lookback: Duration,
}

const HOUR: u64 = 3600;

/// The built-in schedule of `dataset`.
pub(crate) fn default_plan(dataset: Dataset) -> Plan {
    let morning = When::DailyAt(NaiveTime::from_hms_opt(10, 0, 0).unwrap_or(NaiveTime::MIN));
    let hours = |h: u64| Duration::from_secs(h * HOUR);
    match dataset {
        // Devices change rarely; activity is read once its day is over (and the day
        // before once more, for late uploads); last night's sleep is over by then.
        Dataset::Devices => Plan { when: morning, lookback: Duration::ZERO },
        Dataset::Activity => Plan { when: morning, lookback: hours(24) },
        Dataset::Sleep => Plan { when: morning, lookback: hours(12) },
        // One Google Health page holds 10,000 samples: 8 h of 5-second heart rate and
        // the 3 h look-back (7,920) fit one. The look-back catches samples a watch
        // uploads hours late (and holds series windows back until it has passed).
        Dataset::HeartRate => Plan { when: When::Every(hours(8)), lookback: hours(3) },
        Dataset::Body => Plan { when: When::Every(hours(8)), lookback: hours(24) },
    }
}

/// `"HH:MM"` (or `"HH:MM:SS"`) local times.
mod local_time {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<NaiveTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&t.format("%H:%M").to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveTime>, D::Error> {
        let text = String::deserialize(d)?;
        let text = text.trim();
        NaiveTime::parse_from_str(text, "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S"))
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected a local time such as \"10:00\", got {text:?}")))
    }
}
