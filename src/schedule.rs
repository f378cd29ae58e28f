//! Which of an account's datasets are due, and when each is due next
//! (`[sync.schedule.<dataset>]`, see [`crate::config::SyncSettings::plan`]).
//!
//! Upstream requests are the scarce resource (Withings allows 120 a minute for the
//! whole application), so a dataset is read when its data can have changed: daily data
//! in one morning pass in the person's zone, frequent data at an interval. A pass that
//! reads a daily dataset reads the interval datasets too: one token refresh serves them
//! all, and the interval datasets' later passes fall into step with the morning.

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{Dataset, SyncSettings, When};
use crate::normalize::civil::Zone;

/// The cursor under which a source keeps the person's zone (`<date read>|<zone>`), so
/// neither the schedule nor a pass needs to ask the provider for it more than daily.
pub const ZONE_CURSOR: &str = "zone";

/// The stored zone and the civil date it was read on (in that zone).
pub fn stored_zone(cursor: &str) -> Option<(chrono::NaiveDate, Zone)> {
    let (date, zone) = cursor.split_once('|')?;
    Some((date.parse().ok()?, Zone::from_text(zone)?))
}

/// The cursor text for `zone` read at `now`.
pub fn zone_cursor(zone: Zone, now: DateTime<Utc>) -> String {
    format!("{}|{}", zone.date_of(now), zone.to_text())
}

/// The datasets of `sync.datasets` to read now, given when each is due (`schedule`: Unix
/// ms by dataset name; a dataset without a row was never read and is due).
pub fn due(sync: &SyncSettings, schedule: &[(String, i64)], now_ms: i64) -> Vec<Dataset> {
    let is_due = |d: Dataset| schedule.iter().find(|(name, _)| name == d.as_str()).is_none_or(|(_, at)| *at <= now_ms);
    let daily_due = sync.datasets.iter().any(|d| is_due(*d) && matches!(sync.plan(*d).when, When::DailyAt(_)));
    sync.datasets
        .iter()
        .copied()
        .filter(|d| is_due(*d) || (daily_due && matches!(sync.plan(*d).when, When::Every(_))))
        .collect()
}

/// When `dataset` is due next after a read at `now` (before jitter): its interval later,
/// or the next time its local time comes round in `zone` (UTC until the zone is known).
pub fn next_due(sync: &SyncSettings, dataset: Dataset, now: DateTime<Utc>, zone: Option<Zone>) -> DateTime<Utc> {
    match sync.plan(dataset).when {
        When::Every(every) => now + TimeDelta::from_std(every).unwrap_or(TimeDelta::days(1)),
        When::DailyAt(at) => zone.unwrap_or(Zone::UTC).next_at(now, at),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, h, m, 0).unwrap()
    }

    #[test]
    fn the_defaults_read_daily_data_in_one_morning_pass_with_the_rest() {
        let sync = SyncSettings::default();
        let now = at(12, 0).timestamp_millis();
        let hour = 3_600_000;
        // Heart rate due, daily data not: only heart rate.
        let rows = |hr: i64, daily: i64| {
            vec![
                ("heart_rate".to_owned(), hr),
                ("body".to_owned(), now + 2 * hour),
                ("devices".to_owned(), daily),
                ("activity".to_owned(), daily),
                ("sleep".to_owned(), daily),
            ]
        };
        assert_eq!(due(&sync, &rows(now, now + hour), now), [Dataset::HeartRate]);
        // The morning pass: every daily dataset, and the interval ones come along.
        assert_eq!(due(&sync, &rows(now + hour, now), now).len(), 5);
        assert!(due(&sync, &rows(now + hour, now + hour), now).is_empty());
        // Never read: due.
        assert_eq!(due(&sync, &[], now).len(), 5);
    }

    #[test]
    fn sync_interval_when_set_makes_every_dataset_an_interval_one() {
        let sync = SyncSettings { interval: Some(std::time::Duration::from_secs(900)), ..SyncSettings::default() };
        assert_eq!(next_due(&sync, Dataset::Activity, at(12, 0), None), at(12, 15));
        let rows = vec![("activity".to_owned(), 0)];
        let later = at(13, 0).timestamp_millis();
        let only: Vec<(String, i64)> =
            Dataset::ALL.iter().filter(|d| **d != Dataset::Activity).map(|d| (d.as_str().to_owned(), later)).collect();
        assert_eq!(due(&sync, &[rows, only].concat(), at(12, 0).timestamp_millis()), [Dataset::Activity]);
    }

    #[test]
    fn daily_datasets_follow_the_persons_zone() {
        let sync = SyncSettings::default();
        let tokyo = Zone::from_text("Asia/Tokyo");
        // 10:00 in Tokyo is 01:00 UTC.
        assert_eq!(
            next_due(&sync, Dataset::Sleep, at(12, 0), tokyo),
            Utc.with_ymd_and_hms(2026, 12, 1, 1, 0, 0).unwrap()
        );
        assert_eq!(next_due(&sync, Dataset::Sleep, at(9, 0), None), at(10, 0));
        assert_eq!(next_due(&sync, Dataset::HeartRate, at(9, 0), tokyo), at(17, 0));
    }

    #[test]
    fn the_zone_cursor_round_trips_and_refuses_garbage() {
        let zone = Zone::from_text("Europe/Amsterdam").unwrap();
        let text = zone_cursor(zone, at(23, 30));
        assert_eq!(text, "2026-12-01|Europe/Amsterdam");
        assert_eq!(stored_zone(&text), Some((chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(), zone)));
        for bad in ["", "|", "2026-12-01", "x|Europe/Amsterdam", "2026-12-01|Mars/Base"] {
            assert_eq!(stored_zone(bad), None, "{bad}");
        }
    }
}
