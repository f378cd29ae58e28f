//! The Withings sync plan. Body measures and sleep are read with `lastupdate` (Withings'
//! own change cursor, so edits come back), heart rate in windows of at most 24 hours,
//! activity by date, published only for days that are over in the entry's time zone.

use chrono::{DateTime, Days, NaiveDate, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;

use super::{AccountError, Batch, Pipeline};
use crate::config::Dataset;
use crate::normalize;
use crate::store::{Account, Store};

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Pipeline {
    /// Reads one Withings dataset into batches.
    pub(super) async fn withings_dataset(
        &self,
        account: &Account,
        user_id: &str,
        dataset: Dataset,
        now: DateTime<Utc>,
    ) -> Result<Vec<Batch>, AccountError> {
        let src = &self.withings;
        Ok(match dataset {
            Dataset::Devices => {
                let devices = src.devices(account).await?;
                let records = devices.iter().map(|d| normalize::withings::device_status(user_id, d)).collect();
                vec![Batch { cursor_key: "devices", cursor: instant(now), records }]
            }
            Dataset::Body => {
                let since = self.since(account, "body", now).await?;
                let groups = src.measures(account, since.timestamp()).await?;
                let records = groups.iter().flat_map(|g| normalize::withings::measure_group(user_id, g)).collect();
                vec![Batch { cursor_key: "body", cursor: instant(now), records }]
            }
            Dataset::Sleep => {
                let since = self.since(account, "sleep", now).await?;
                let series = src.sleep(account, since.timestamp()).await?;
                let records = series.iter().map(|s| normalize::withings::sleep(user_id, s)).collect();
                vec![Batch { cursor_key: "sleep", cursor: instant(now), records }]
            }
            Dataset::HeartRate => {
                let since = self.since(account, "heart_rate", now).await?;
                let samples = src.intraday_heart_rate(account, since, now).await?;
                let records =
                    samples.iter().map(|(t, bpm)| Ok(normalize::withings::heart_rate(user_id, *t, *bpm))).collect();
                vec![Batch { cursor_key: "heart_rate", cursor: instant(now), records }]
            }
            Dataset::Activity => {
                let lookback_days = self.sync.lookback.as_secs().div_ceil(86_400).max(1);
                let cursor = self.store.cursor(account.id, "activity").await?;
                let start = self.sync.start.resolve(now).date_naive();
                let first = match cursor.and_then(|c| c.parse::<NaiveDate>().ok()) {
                    Some(c) => (c - Days::new(lookback_days)).max(start),
                    None => start,
                };
                let last = now.date_naive() + Days::new(1);
                let days = src.activity(account, first, last).await?;
                // A day is published once it is over where the person is.
                let over = |date: &str, zone: Option<&str>| {
                    let tz = zone.and_then(|z| z.parse::<Tz>().ok()).unwrap_or(Tz::UTC);
                    date.parse::<NaiveDate>().is_ok_and(|d| d < now.with_timezone(&tz).date_naive())
                };
                let records = days
                    .iter()
                    .filter(|a| over(&a.date, a.timezone.as_deref()))
                    .map(|a| normalize::withings::activity(user_id, a))
                    .collect();
                // The earliest "today" on Earth is yesterday in UTC: start there next time.
                let cursor = (now.date_naive() - Days::new(1)).to_string();
                vec![Batch { cursor_key: "activity", cursor, records }]
            }
        })
    }

    /// `cursor - lookback`, or `sync.start` on a first backfill.
    async fn since(
        &self,
        account: &Account,
        cursor_key: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, AccountError> {
        let start = self.sync.start.resolve(now);
        let lookback = TimeDelta::from_std(self.sync.lookback).unwrap_or(TimeDelta::zero());
        let cursor = self.store.cursor(account.id, cursor_key).await?;
        Ok(match cursor.and_then(|c| DateTime::parse_from_rfc3339(&c).ok()) {
            Some(c) => (c.with_timezone(&Utc) - lookback).max(start),
            None => start,
        })
    }
}
