//! Human durations (`90s`, `15m`, `3h`, `7d`) and the `sync.start` value.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses `<number><unit>` with unit `s`, `m`, `h` or `d` (several parts may follow one
/// another, e.g. `1h30m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("expected a duration such as 90s, 15m, 3h or 7d, got {text:?}");
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

pub(crate) mod serde_text {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

pub(crate) mod serde_text_opt {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
    }
}

pub(crate) mod serde_text_map {
    use std::collections::BTreeMap;

    use super::*;

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, Duration>, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            map.serialize_entry(k, &format_duration(*v))?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Duration>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter().map(|(k, v)| parse_duration(&v).map(|d| (k, d)).map_err(serde::de::Error::custom)).collect()
    }
}

/// Where the first backfill of a dataset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStart {
    /// A calendar date, read as midnight UTC.
    Date(NaiveDate),
    /// A duration back from the moment of the sync.
    Ago(Duration),
}

impl SyncStart {
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            SyncStart::Date(d) => d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(now),
            // Validated to at most 100 years; saturate rather than overflow regardless.
            SyncStart::Ago(d) => {
                TimeDelta::from_std(d).ok().and_then(|d| now.checked_sub_signed(d)).unwrap_or(DateTime::<Utc>::MIN_UTC)
            }
        }
    }
}

impl std::str::FromStr for SyncStart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(date) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
            return Ok(SyncStart::Date(date));
        }
        parse_duration(s)
            .map(SyncStart::Ago)
            .map_err(|_| format!("expected a date (2026-11-01) or a duration back from now (7d), got {s:?}"))
    }
}

impl Serialize for SyncStart {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SyncStart::Date(d) => s.serialize_str(&d.format("%Y-%m-%d").to_string()),
            SyncStart::Ago(d) => s.serialize_str(&format_duration(*d)),
        }
    }
}

impl<'de> Deserialize<'de> for SyncStart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "90m");
    }

    #[test]
    fn sync_start() {
        assert_eq!("2026-11-01".parse::<SyncStart>().map(|s| matches!(s, SyncStart::Date(_))), Ok(true));
        assert_eq!("7d".parse::<SyncStart>(), Ok(SyncStart::Ago(Duration::from_secs(604_800))));
        assert!("yesterday".parse::<SyncStart>().is_err());
    }
}
