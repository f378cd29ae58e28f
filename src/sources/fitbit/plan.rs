//! The Fitbit (Google Health) sync plan: for each dataset, which window to read, which
//! calls to make, and which cursor each batch advances.
//!
//! Instant datasets (heart-rate samples, sleep, body) read `[cursor - lookback, now)`;
//! daily datasets (activity, resting heart rate) read the person's civil days
//! `[cursor - lookback days, today)`, so a day is published once it is over and a late
//! upload re-publishes only if its values changed.

use chrono::NaiveDate;

use super::{FitbitSource, normalize};
use crate::config::Dataset;
use crate::normalize::civil::Zone;
use crate::sources::{AccountPass, Batch, SourceError};

impl FitbitSource {
    /// Reads one dataset into batches (each with the cursor it advances).
    pub(super) async fn read_dataset(
        &self,
        pass: &mut AccountPass<'_>,
        dataset: Dataset,
    ) -> Result<Vec<Batch>, SourceError> {
        let (account, id, now) = (pass.account, pass.user_id, pass.now);
        Ok(match dataset {
            Dataset::Devices => {
                let devices = self.paired_devices(account).await?;
                let records = devices.iter().map(|d| d.then(|d| normalize::device_status(id, d))).collect();
                vec![Batch { cursor_key: "devices", cursor: pass.now_cursor(), records, series: None }]
            }
            Dataset::HeartRate => {
                let from = pass.since_for("heart_rate", "heart-rate").await.map_err(SourceError::transient)?;
                let points = self.heart_rate(account, from, now).await?;
                let samples = points
                    .iter()
                    .map(|p| p.then(|p| normalize::heart_rate(id, p)).and_then(|r| pass.within(r, from)))
                    .collect();
                let mut batches = vec![Batch {
                    cursor_key: "heart_rate",
                    cursor: pass.now_cursor(),
                    records: samples,
                    series: Some("heart-rate"),
                }];
                if let Some((from, to)) = self.day_window(pass, "heart_rate.resting").await? {
                    let points = self.resting_heart_rate(account, from, to).await?;
                    let records = points.iter().map(|p| p.then(|p| normalize::resting_heart_rate(id, p))).collect();
                    batches.push(Batch {
                        cursor_key: "heart_rate.resting",
                        cursor: to.to_string(),
                        records,
                        series: None,
                    });
                }
                batches
            }
            Dataset::Activity => {
                let Some((from, to)) = self.day_window(pass, "activity").await? else { return Ok(Vec::new()) };
                let mut points = Vec::new();
                for data_type in ["steps", "distance", "active-minutes", "total-calories"] {
                    points.extend(self.daily_roll_up(account, data_type, from, to).await?);
                }
                let records = normalize::daily_activity(id, &points);
                vec![Batch { cursor_key: "activity", cursor: to.to_string(), records, series: None }]
            }
            Dataset::Sleep => {
                let from = pass.since("sleep").await.map_err(SourceError::transient)?;
                let points = self.sleep(account, from, now).await?;
                let records = points.iter().map(|p| p.then(|p| normalize::sleep(id, p))).collect();
                vec![Batch { cursor_key: "sleep", cursor: pass.now_cursor(), records, series: None }]
            }
            Dataset::Body => {
                let mut batches = Vec::new();
                let from = pass.since("body.weight").await.map_err(SourceError::transient)?;
                let points = self.samples(account, "weight", from, now).await?;
                let records = points
                    .iter()
                    .map(|p| p.then(|p| normalize::weight(id, p)).and_then(|r| pass.within(r, from)))
                    .collect();
                batches.push(Batch { cursor_key: "body.weight", cursor: pass.now_cursor(), records, series: None });
                let from = pass.since("body.fat").await.map_err(SourceError::transient)?;
                let points = self.samples(account, "body-fat", from, now).await?;
                let records = points
                    .iter()
                    .map(|p| p.then(|p| normalize::body_fat(id, p)).and_then(|r| pass.within(r, from)))
                    .collect();
                batches.push(Batch { cursor_key: "body.fat", cursor: pass.now_cursor(), records, series: None });
                batches
            }
        })
    }

    /// The person's civil days still to read, `[first, today)`; `None` when there are
    /// none (no request then). The zone comes from the person's Google Health settings,
    /// read at most once a civil day and kept in the store between passes.
    async fn day_window(
        &self,
        pass: &mut AccountPass<'_>,
        cursor_key: &str,
    ) -> Result<Option<(NaiveDate, NaiveDate)>, SourceError> {
        let zone = match pass.zone {
            Some(z) => z,
            None => {
                let z = match pass.todays_zone().await.map_err(SourceError::transient)? {
                    Some(z) => z,
                    None => {
                        let settings = self.settings(pass.account).await?;
                        let z = Zone::from_settings(settings.time_zone.as_deref(), settings.utc_offset.as_deref());
                        pass.zone_read = Some(z);
                        z
                    }
                };
                pass.zone = Some(z);
                z
            }
        };
        let today = zone.date_of(pass.now);
        let first = pass.first_day(zone, cursor_key).await.map_err(SourceError::transient)?;
        Ok(first.filter(|first| *first < today).map(|first| (first, today)))
    }
}
