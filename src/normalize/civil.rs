//! A person's civil calendar: which day it is where they are. Used to cut daily data by
//! civil day (DST days have 23 or 25 hours); never published.

use chrono::{DateTime, FixedOffset, NaiveDate, Offset, Utc};
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
}
