//! A person's civil calendar: which day it is where they are. Used to cut daily data by
//! civil day (DST days have 23 or 25 hours); never published.

use chrono::{DateTime, Days, FixedOffset, NaiveDate, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// The person's zone, from their settings: an IANA name when known, else their current
/// offset, else UTC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Named(Tz),
    Fixed(FixedOffset),
}

impl Zone {
    /// Coordinated Universal Time.
    pub const UTC: Zone = Zone::Named(Tz::UTC);

    /// From Google Health settings (`timeZone`, `utcOffset` like `"-18000s"`).
    pub fn from_settings(time_zone: Option<&str>, utc_offset: Option<&str>) -> Self {
        if let Some(tz) = time_zone.and_then(|n| n.parse::<Tz>().ok()) {
            return Zone::Named(tz);
        }
        let offset = utc_offset
            .and_then(|o| o.strip_suffix('s'))
            .and_then(|o| o.parse::<f64>().ok())
            .and_then(|secs| FixedOffset::east_opt(secs as i32));
        Zone::Fixed(offset.unwrap_or(Utc.fix()))
    }

    /// The civil date at `at`.
    pub fn date_of(&self, at: DateTime<Utc>) -> NaiveDate {
        match self {
            Zone::Named(tz) => at.with_timezone(tz).date_naive(),
            Zone::Fixed(offset) => at.with_timezone(offset).date_naive(),
        }
    }

    /// The first instant after `after` at which the local clock reads `time` (a time
    /// that a DST change skips on some day is taken an hour later that day; a repeated
    /// one at its first occurrence).
    pub fn next_at(&self, after: DateTime<Utc>, time: NaiveTime) -> DateTime<Utc> {
        let mut day = self.date_of(after);
        for _ in 0..4 {
            let local = day.and_time(time);
            let at = match self {
                Zone::Named(tz) => tz
                    .from_local_datetime(&local)
                    .earliest()
                    .or_else(|| tz.from_local_datetime(&(local + chrono::TimeDelta::hours(1))).earliest())
                    .map(|t| t.with_timezone(&Utc)),
                Zone::Fixed(offset) => offset.from_local_datetime(&local).earliest().map(|t| t.with_timezone(&Utc)),
            };
            if let Some(at) = at.filter(|at| *at > after) {
                return at;
            }
            day = day.checked_add_days(Days::new(1)).unwrap_or(day);
        }
        after + chrono::TimeDelta::days(1)
    }

    /// The zone as kept in the store (an IANA name, or an offset such as `"-18000s"`),
    /// so a pass knows the person's day without asking the provider every time.
    pub fn to_text(&self) -> String {
        match self {
            Zone::Named(tz) => tz.name().to_owned(),
            Zone::Fixed(offset) => format!("{}s", offset.local_minus_utc()),
        }
    }

    /// Reads [`Zone::to_text`] back; `None` for anything else.
    pub fn from_text(text: &str) -> Option<Self> {
        if let Ok(tz) = text.parse::<Tz>() {
            return Some(Zone::Named(tz));
        }
        let secs = text.strip_suffix('s')?.parse::<i32>().ok()?;
        FixedOffset::east_opt(secs).map(Zone::Fixed)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn named_zone_wins_and_offsets_fall_back() {
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 3, 0, 0).unwrap();
        let ny = Zone::from_settings(Some("America/New_York"), Some("-18000s"));
        assert_eq!(ny.date_of(at), NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        let fixed = Zone::from_settings(Some("Not/AZone"), Some("19800s"));
        assert_eq!(fixed.date_of(at), NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
        assert_eq!(Zone::from_settings(None, None).date_of(at), NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
    }

    #[test]
    fn the_next_local_time_follows_the_zone_and_its_dst_changes() {
        let ten = NaiveTime::from_hms_opt(10, 0, 0).unwrap();
        let ny = Zone::from_settings(Some("America/New_York"), None);
        // 2026-11-01 is the end of DST in New York: 10:00 EST is 15:00 UTC.
        let after = Utc.with_ymd_and_hms(2026, 11, 1, 14, 30, 0).unwrap();
        assert_eq!(ny.next_at(after, ten), Utc.with_ymd_and_hms(2026, 11, 1, 15, 0, 0).unwrap());
        let after = Utc.with_ymd_and_hms(2026, 11, 1, 15, 0, 0).unwrap();
        assert_eq!(ny.next_at(after, ten), Utc.with_ymd_and_hms(2026, 11, 2, 15, 0, 0).unwrap());
        // 02:30 does not exist on 2026-03-08 in New York: taken an hour later.
        let half_two = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 3, 8, 5, 0, 0).unwrap();
        assert_eq!(ny.next_at(after, half_two), Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap());
        let fixed = Zone::from_settings(None, Some("19800s"));
        let after = Utc.with_ymd_and_hms(2026, 11, 2, 3, 0, 0).unwrap();
        assert_eq!(fixed.next_at(after, ten), Utc.with_ymd_and_hms(2026, 11, 2, 4, 30, 0).unwrap());
    }

    #[test]
    fn zones_round_trip_through_their_text() {
        for zone in
            [Zone::from_settings(Some("Asia/Kolkata"), None), Zone::from_settings(None, Some("-18000s")), Zone::UTC]
        {
            assert_eq!(Zone::from_text(&zone.to_text()), Some(zone));
        }
        assert_eq!(Zone::from_text("garbage"), None);
        assert_eq!(Zone::from_text("99999999s"), None);
    }
}
