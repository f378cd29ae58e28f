//! The operator's privacy policy: which message types may leave, how coarse time is,
//! and whether dates are shifted per subject.

use std::collections::{BTreeMap, BTreeSet};

use chrono::TimeDelta;

use crate::{PseudonymKey, pseudonym};

/// Every message type this crate can build. A policy can only narrow this list.
pub const KNOWN_TYPES: &[&str] = &[
    "heart-rate",
    "heart-rate-series",
    "resting-heart-rate",
    "daily-activity",
    "sleep-episode",
    "body-weight",
    "body-fat-percentage",
    "device-status",
    "blood-pressure",
    "body-fat-mass",
    "fat-free-mass",
    "muscle-mass",
    "bone-mass",
    "body-water-mass",
    "body-temperature",
    "skin-temperature",
    "oxygen-saturation",
    "pulse-wave-velocity",
    "vo2-max",
];

/// Default time granularity per message type: fine where the signal needs it, coarse
/// where exact times only identify (when someone weighed themselves, when a device synced).
const DEFAULT_GRANULARITY_SECS: &[(&str, i64)] = &[
    ("heart-rate", 60),
    ("heart-rate-series", 60),
    ("sleep-episode", 300),
    ("body-weight", 3600),
    ("body-fat-percentage", 3600),
    ("device-status", 3600),
    ("blood-pressure", 300),
    ("body-fat-mass", 3600),
    ("fat-free-mass", 3600),
    ("muscle-mass", 3600),
    ("bone-mass", 3600),
    ("body-water-mass", 3600),
    ("body-temperature", 300),
    ("skin-temperature", 300),
    ("oxygen-saturation", 300),
    ("pulse-wave-velocity", 3600),
    ("vo2-max", 3600),
];

/// What may be published and how coarsely.
#[derive(Debug, Clone)]
pub struct Policy {
    allowed: BTreeSet<&'static str>,
    granularity: BTreeMap<&'static str, TimeDelta>,
    default_granularity: TimeDelta,
    date_shift_days: u32,
    mass_step_kg: f64,
    top_code_kg: Option<f64>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allowed: KNOWN_TYPES.iter().copied().collect(),
            granularity: DEFAULT_GRANULARITY_SECS.iter().map(|(t, s)| (*t, TimeDelta::seconds(*s))).collect(),
            default_granularity: TimeDelta::minutes(1),
            date_shift_days: 0,
            mass_step_kg: 0.1,
            top_code_kg: None,
        }
    }
}

impl Policy {
    /// Restricts publication to the given message types; unknown names are ignored
    /// (fail closed: they could never be built anyway).
    pub fn allow_only<'a>(mut self, types: impl IntoIterator<Item = &'a str>) -> Self {
        let wanted: BTreeSet<&str> = types.into_iter().collect();
        self.allowed.retain(|t| wanted.contains(t));
        self
    }

    /// Sets the time granularity for one message type.
    pub fn with_granularity(mut self, message_type: &str, granularity: TimeDelta) -> Self {
        if let Some(known) = KNOWN_TYPES.iter().find(|t| **t == message_type) {
            self.granularity.insert(known, granularity);
        }
        self
    }

    /// Shifts every subject's dates by a constant, secret number of days in
    /// `[-days, 0]`; intervals within one subject are preserved.
    pub fn with_date_shift_days(mut self, days: u32) -> Self {
        self.date_shift_days = days;
        self
    }

    /// Rounds body weight and every body mass to multiples of `step` kg (default 0.1).
    pub fn with_mass_step_kg(mut self, step: f64) -> Self {
        if step.is_finite() && step > 0.0 {
            self.mass_step_kg = step;
        }
        self
    }

    /// Publishes body weights above `kg` as `kg` (top-coding of rare extremes).
    pub fn with_weight_top_code_kg(mut self, kg: Option<f64>) -> Self {
        self.top_code_kg = kg.filter(|k| k.is_finite() && *k > 0.0);
        self
    }

    pub(crate) fn mass_step_kg(&self) -> f64 {
        self.mass_step_kg
    }

    pub(crate) fn top_code_kg(&self) -> Option<f64> {
        self.top_code_kg
    }

    /// Whether `name` is a message type this crate can build.
    pub fn is_known_type(name: &str) -> bool {
        KNOWN_TYPES.contains(&name)
    }

    pub fn allows(&self, message_type: &str) -> bool {
        self.allowed.contains(message_type)
    }

    /// The time granularity `message_type` is published at.
    pub fn granularity(&self, message_type: &str) -> TimeDelta {
        self.granularity.get(message_type).copied().unwrap_or(self.default_granularity)
    }

    pub(crate) fn date_shift(&self, key: &PseudonymKey, subject: &str) -> TimeDelta {
        let span = u64::from(self.date_shift_days) + 1;
        let days = pseudonym::subject_offset(key, subject, span) as i64;
        TimeDelta::days(-days)
    }
}
