//! The Withings sync plan. Body measures and sleep are read with `lastupdate` (Withings'
//! own change cursor, so edits come back), heart rate in windows of at most 24 hours,
//! activity by date, published only for days that are over in the entry's time zone.

use chrono::{Days, NaiveDate};
use chrono_tz::Tz;

use super::{WithingsSource, normalize};
use crate::config::Dataset;
use crate::normalize::Skipped;
use crate::normalize::civil::Zone;
use crate::sources::{AccountPass, Batch, SourceError};

impl WithingsSource {
    /// Reads one Withings dataset into batches.
    pub(super) async fn read_dataset(
        &self,
        pass: &mut AccountPass<'_>,
        dataset: Dataset,
    ) -> Result<Vec<Batch>, SourceError> {
        let (account, user_id, now) = (pass.account, pass.user_id, pass.now);
        let since = async |key: &str| pass.since(key).await.map_err(SourceError::transient);
        let since_series = async |key: &str, message_type: &str| {
            pass.since_for(key, message_type).await.map_err(SourceError::transient)
        };
        Ok(match dataset {
            Dataset::Devices => {
                let devices = self.devices(account).await?;
                let records = devices.iter().map(|d| d.then(|d| normalize::device_status(user_id, d))).collect();
                vec![Batch { cursor_key: "devices", cursor: pass.now_cursor(), records, series: None }]
            }
            Dataset::Body => {
                let groups = self.measures(account, since("body").await?.timestamp()).await?;
                let records = groups
                    .iter()
                    .flat_map(|g| match g.good() {
                        Some(g) => normalize::measure_group(user_id, g),
                        None => vec![Err(Skipped::bad("a malformed measure group"))],
                    })
                    .collect();
                vec![Batch { cursor_key: "body", cursor: pass.now_cursor(), records, series: None }]
            }
            Dataset::Sleep => {
                let series = self.sleep(account, since("sleep").await?.timestamp()).await?;
                let records = series.iter().map(|s| s.then(|s| normalize::sleep(user_id, s))).collect();
                vec![Batch { cursor_key: "sleep", cursor: pass.now_cursor(), records, series: None }]
            }
            Dataset::HeartRate => {
                let samples =
                    self.intraday_heart_rate(account, since_series("heart_rate", "heart-rate").await?, now).await?;
                let records =
                    samples.iter().map(|s| s.clone().map(|(t, bpm)| normalize::heart_rate(user_id, t, bpm))).collect();
                vec![Batch { cursor_key: "heart_rate", cursor: pass.now_cursor(), records, series: Some("heart-rate") }]
            }
            Dataset::Activity => {
                let Some(first) = pass.first_day(Zone::UTC, "activity").await.map_err(SourceError::transient)? else {
                    return Ok(Vec::new());
                };
                let last = now.date_naive() + Days::new(1);
                let days = self.activity(account, first, last).await?;
                // A day is published once it is over where the person is. A day beyond
                // tomorrow is no day in progress but a garbled date: it goes on, to be
                // counted as implausible.
                let over = |date: &str, zone: Option<&str>| {
                    let tz = zone.and_then(|z| z.parse::<Tz>().ok()).unwrap_or(Tz::UTC);
                    let today = now.with_timezone(&tz).date_naive();
                    date.parse::<NaiveDate>().is_ok_and(|d| d < today || d > today + Days::new(1))
                };
                let records = days
                    .iter()
                    .filter(|a| a.good().is_none_or(|a| over(&a.date, a.timezone.as_deref())))
                    .map(|a| a.then(|a| normalize::activity(user_id, a)))
                    .collect();
                // The person's zone, as their newest day names it, schedules their
                // morning pass.
                let newest = days.iter().filter_map(|a| a.good()).max_by(|a, b| a.date.cmp(&b.date));
                if let Some(zone) = newest.and_then(|a| a.timezone.as_deref()).and_then(Zone::from_text) {
                    pass.zone_read = Some(zone);
                }
                // The earliest "today" on Earth is yesterday in UTC: start there next time.
                let cursor = (now.date_naive() - Days::new(1)).to_string();
                vec![Batch { cursor_key: "activity", cursor, records, series: None }]
            }
        })
    }
}
