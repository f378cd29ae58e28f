//! `[push]`: provider notifications that make an account's dataset due at once, so data
//! arrives minutes after the device syncs and the upstream quota is spent only where
//! something changed; polling stays as the safety net.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{Dataset, duration, redact};

/// The Withings notification categories (`appli`) wearbridge can act on, with the dataset
/// each one makes due: 1 weight and body composition, 4 blood pressure (both body
/// measures), 16 activity, 44 sleep, 50/51 in and out of bed (sleep).
pub const WITHINGS_APPLIS: [(u32, Dataset); 6] = [
    (1, Dataset::Body),
    (4, Dataset::Body),
    (16, Dataset::Activity),
    (44, Dataset::Sleep),
    (50, Dataset::Sleep),
    (51, Dataset::Sleep),
];

/// The datasets push notifications cover (what both providers notify about); devices
/// are not among them and keep their schedule.
pub const COVERED: [Dataset; 4] = [Dataset::Activity, Dataset::HeartRate, Dataset::Sleep, Dataset::Body];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PushSettings {
    /// Serve `/webhooks/fitbit` (Google Health) and `/webhooks/withings/<token>` on
    /// `server.listen`, and keep each Withings account subscribed (callback
    /// `<server.public_url>/webhooks/withings/<token>`, the token derived from the store key).
    pub enabled: bool,
    /// Notifications about one account's dataset within this long of each other are served
    /// by one sync (providers repeat themselves).
    #[serde(with = "duration::serde_text")]
    pub delay: Duration,
    /// With push on and `sync.interval` set, the covered datasets (activity, heart rate,
    /// sleep, body) are polled no more often than this (push brings their changes); the
    /// built-in schedules (every 8 h, daily) are kept. A missed notification is caught at
    /// the dataset's next scheduled read.
    #[serde(with = "duration::serde_text")]
    pub poll_interval: Duration,
    /// The `Authorization` header value the Google Health subscriber was created with,
    /// scheme included (`"Bearer …"`); notifications without it are refused.
    #[serde(serialize_with = "redact", skip_serializing_if = "Option::is_none")]
    pub google_authorization: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub google_authorization_file: Option<PathBuf>,
    /// The Google Health API's public key (PEM, ECDSA P-256): when set, the
    /// `X-HEALTHAPI-SIGNATURE` of every notification is checked against it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub google_public_key_file: Option<PathBuf>,
    /// The Withings notification categories to subscribe each account to.
    pub withings_applis: Vec<u32>,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            delay: Duration::from_secs(2),
            poll_interval: Duration::from_secs(6 * 3600),
            google_authorization: None,
            google_authorization_file: None,
            google_public_key_file: None,
            withings_applis: vec![1, 16, 44],
        }
    }
}

impl PushSettings {
    /// The dataset a Withings `appli` makes due.
    pub fn withings_dataset(appli: u32) -> Option<Dataset> {
        WITHINGS_APPLIS.iter().find(|(a, _)| *a == appli).map(|(_, d)| *d)
    }
}
