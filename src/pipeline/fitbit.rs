//! The Fitbit (Google Health) sync plan: for each configured dataset, which window to
//! read, which calls to make, and which cursor each batch advances.
//!
//! Instant datasets (heart-rate samples, sleep, body) read `[cursor - lookback, now)`;
//! daily datasets (activity, resting heart rate) read the person's civil days
//! `[cursor - lookback days, today)`, so a day is published once it is over and a late
//! upload re-publishes only if its values changed.

use chrono::{DateTime, Days, NaiveDate, SecondsFormat, TimeDelta, Utc};

use super::{AccountError, Batch, Pipeline};
use crate::config::Dataset;
use crate::normalize::{self, civil::Zone};
use crate::store::{Account, Store};

/// The Google scope each dataset needs (named in the log when it is missing).
pub fn scope_for(dataset: Dataset) -> &'static str {
    match dataset {
        Dataset::Devices => "https://www.googleapis.com/auth/googlehealth.settings.readonly",
        Dataset::Activity => "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly",
        Dataset::HeartRate | Dataset::Body => {
            "https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly"
        }
        Dataset::Sleep => "https://www.googleapis.com/auth/googlehealth.sleep.readonly",
    }
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Per-account facts one pass needs.
pub(super) struct FitbitAccount<'a> {
    pub account: &'a Account,
    pub user_id: &'a str,
    pub now: DateTime<Utc>,
    zone: Option<Zone>,
}

impl<'a> FitbitAccount<'a> {
    pub fn new(account: &'a Account, user_id: &'a str, now: DateTime<Utc>) -> Self {
        Self { account, user_id, now, zone: None }
    }
}

impl Pipeline {
    /// Reads one dataset into batches (each with the cursor it advances).
    pub(super) async fn fitbit_dataset(
        &self,
        a: &mut FitbitAccount<'_>,
        dataset: Dataset,
    ) -> Result<Vec<Batch>, AccountError> {
        let id = a.user_id;
        Ok(match dataset {
            Dataset::Devices => {
                let devices = self.fitbit.paired_devices(a.account).await?;
                let records = devices.iter().map(|d| normalize::fitbit::device_status(id, d)).collect();
                vec![Batch { cursor_key: "devices", cursor: instant(a.now), records }]
            }
            Dataset::HeartRate => {
                let (from, to) = self.instant_window(a, "heart_rate").await?;
                let points = self.fitbit.heart_rate(a.account, from, to).await?;
                let samples = points.iter().map(|p| normalize::fitbit::heart_rate(id, p)).collect();
                let mut batches = vec![Batch { cursor_key: "heart_rate", cursor: instant(to), records: samples }];
                if let Some((from, to)) = self.day_window(a, "heart_rate.resting").await? {
                    let points = self.fitbit.resting_heart_rate(a.account, from, to).await?;
                    let records = points.iter().map(|p| normalize::fitbit::resting_heart_rate(id, p)).collect();
                    batches.push(Batch { cursor_key: "heart_rate.resting", cursor: to.to_string(), records });
                }
                batches
            }
            Dataset::Activity => {
                let Some((from, to)) = self.day_window(a, "activity").await? else { return Ok(Vec::new()) };
                let mut points = Vec::new();
                for data_type in ["steps", "distance", "active-minutes", "total-calories"] {
                    points.extend(self.fitbit.daily_roll_up(a.account, data_type, from, to).await?);
                }
                let records = normalize::fitbit::daily_activity(id, &points);
                vec![Batch { cursor_key: "activity", cursor: to.to_string(), records }]
            }
            Dataset::Sleep => {
                let (from, to) = self.instant_window(a, "sleep").await?;
                let points = self.fitbit.sleep(a.account, from, to).await?;
                let records = points.iter().map(|p| normalize::fitbit::sleep(id, p)).collect();
                vec![Batch { cursor_key: "sleep", cursor: instant(to), records }]
            }
            Dataset::Body => {
                let mut batches = Vec::new();
                let (from, to) = self.instant_window(a, "body.weight").await?;
                let points = self.fitbit.samples(a.account, "weight", from, to).await?;
                let records = points.iter().map(|p| normalize::fitbit::weight(id, p)).collect();
                batches.push(Batch { cursor_key: "body.weight", cursor: instant(to), records });
                let (from, to) = self.instant_window(a, "body.fat").await?;
                let points = self.fitbit.samples(a.account, "body-fat", from, to).await?;
                let records = points.iter().map(|p| normalize::fitbit::body_fat(id, p)).collect();
                batches.push(Batch { cursor_key: "body.fat", cursor: instant(to), records });
                batches
            }
        })
    }

    /// `[cursor - lookback, now)`, or `[sync.start, now)` on a first backfill.
    async fn instant_window(
        &self,
        a: &FitbitAccount<'_>,
        cursor_key: &str,
    ) -> Result<(DateTime<Utc>, DateTime<Utc>), AccountError> {
        let start = self.sync.start.resolve(a.now);
        let lookback = TimeDelta::from_std(self.sync.lookback).unwrap_or(TimeDelta::zero());
        let cursor = self.store.cursor(a.account.id, cursor_key).await?;
        let from = match cursor.and_then(|c| DateTime::parse_from_rfc3339(&c).ok()) {
            Some(c) => (c.with_timezone(&Utc) - lookback).max(start),
            None => start,
        };
        Ok((from, a.now))
    }

    /// The person's civil days still to read, `[first, today)`; `None` when there are none.
    async fn day_window(
        &self,
        a: &mut FitbitAccount<'_>,
        cursor_key: &str,
    ) -> Result<Option<(NaiveDate, NaiveDate)>, AccountError> {
        let zone = match a.zone {
            Some(z) => z,
            None => {
                let settings = self.fitbit.settings(a.account).await?;
                let z = Zone::from_settings(settings.time_zone.as_deref(), settings.utc_offset.as_deref());
                a.zone = Some(z);
                z
            }
        };
        let today = zone.date_of(a.now);
        let lookback_days = self.sync.lookback.as_secs().div_ceil(86_400).max(1);
        let cursor = self.store.cursor(a.account.id, cursor_key).await?;
        let start = zone.date_of(self.sync.start.resolve(a.now));
        let first = match cursor.and_then(|c| c.parse::<NaiveDate>().ok()) {
            Some(c) => (c - Days::new(lookback_days)).max(start),
            None => start,
        };
        Ok((first < today).then_some((first, today)))
    }
}
