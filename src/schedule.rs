//! Which of an account's datasets are due, and when each is due next
//! (`[sync.schedule.<dataset>]`, see [`crate::config::SyncSettings::plan`]).
//!
//! Upstream requests are the scarce resource (Withings allows 120 a minute for the
//! whole application), so a dataset is read when its data can have changed: daily data
//! in one morning pass in the person's zone, frequent data at an interval. A pass that
//! reads a daily dataset reads the interval datasets too: one token refresh serves them
//! all, and the interval datasets' later passes fall into step with the morning.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{Dataset, SyncSettings, When};
use crate::normalize::civil::Zone;
use crate::store::Scheduled;

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

/// The datasets of `sync.datasets` to read now, given when each is due (`schedule`: a
/// dataset without a row was never read and is due). A daily dataset due by its own
/// schedule brings the interval datasets along; one due only because a notification
/// said it changed does not (push spends requests only where something changed).
pub fn due(sync: &SyncSettings, schedule: &[Scheduled], now_ms: i64) -> Vec<Dataset> {
    let row = |d: Dataset| schedule.iter().find(|r| r.dataset == d.as_str());
    let is_due = |d: Dataset| row(d).is_none_or(|r| r.next_due <= now_ms);
    let pushed = |d: Dataset| row(d).is_some_and(|r| r.pushed_at.is_some());
    let daily_due =
        sync.datasets.iter().any(|d| is_due(*d) && !pushed(*d) && matches!(sync.plan(*d).when, When::DailyAt(_)));
    sync.datasets
        .iter()
        .copied()
        .filter(|d| is_due(*d) || (daily_due && matches!(sync.plan(*d).when, When::Every(_))))
        .collect()
}

/// The earliest changed instant notifications told of, per dataset, for the datasets
/// this sync reads: a read reaches back to it (within the source's limits) even when it
/// lies before the dataset's cursor and look-back.
pub fn push_hints(schedule: &[Scheduled], datasets: &[Dataset]) -> BTreeMap<Dataset, DateTime<Utc>> {
    datasets
        .iter()
        .filter_map(|d| {
            let from = schedule.iter().find(|r| r.dataset == d.as_str())?.push_from?;
            Some((*d, DateTime::from_timestamp_millis(from)?))
        })
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

    fn row(dataset: &str, next_due: i64) -> Scheduled {
        Scheduled { dataset: dataset.to_owned(), next_due, pushed_at: None, push_from: None }
    }

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
                row("heart_rate", hr),
                row("body", now + 2 * hour),
                row("devices", daily),
                row("activity", daily),
                row("sleep", daily),
            ]
        };
        assert_eq!(due(&sync, &rows(now, now + hour), now), [Dataset::HeartRate]);
        // The morning pass: every daily dataset, and the interval ones come along.
        assert_eq!(due(&sync, &rows(now + hour, now), now).len(), 5);
        assert!(due(&sync, &rows(now + hour, now + hour), now).is_empty());
        // Never read: due.
        assert_eq!(due(&sync, &[], now).len(), 5);
        // A daily dataset due only because a notification said it changed: alone.
        let mut pushed = rows(now + hour, now + hour);
        pushed[3] = Scheduled { pushed_at: Some(now - 1), push_from: Some(now - hour), ..row("activity", now) };
        assert_eq!(due(&sync, &pushed, now), [Dataset::Activity]);
        let hints = push_hints(&pushed, &[Dataset::Activity]);
        assert_eq!(hints.get(&Dataset::Activity).map(|t| t.timestamp_millis()), Some(now - hour));
    }

    #[test]
    fn sync_interval_when_set_makes_every_dataset_an_interval_one() {
        let sync = SyncSettings { interval: Some(std::time::Duration::from_secs(900)), ..SyncSettings::default() };
        assert_eq!(next_due(&sync, Dataset::Activity, at(12, 0), None), at(12, 15));
        let rows = vec![row("activity", 0)];
        let later = at(13, 0).timestamp_millis();
        let only: Vec<Scheduled> =
            Dataset::ALL.iter().filter(|d| **d != Dataset::Activity).map(|d| row(d.as_str(), later)).collect();
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
