//! The `filter` grammar of `dataPoints.list` (AIP-160 subset: `>=`, `<`, `AND`).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// One bound of a time filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bound {
    /// An instant (sample physical time, or a session's end time).
    Physical(DateTime<Utc>),
    /// A civil date-time in the person's zone.
    Civil(NaiveDateTime),
    /// A civil date (daily summary types).
    Date(NaiveDate),
}

/// Which filter fields a data type accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilterKind {
    /// `{prefix}.sample_time.physical_time` and `{prefix}.sample_time.civil_time`.
    Sample,
    /// `{prefix}.date`.
    Daily,
    /// `sleep.interval.end_time` (RFC 3339).
    SessionEnd,
}

/// A parsed filter: optional lower (inclusive) and upper (exclusive) bounds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TimeFilter {
    pub from: Option<Bound>,
    pub before: Option<Bound>,
}

/// Parses `filter` for a data type whose snake_case prefix is `prefix`. Errors are the
/// messages Google would put in INVALID_ARGUMENT.
pub(crate) fn parse(filter: &str, prefix: &str, kind: FilterKind) -> Result<TimeFilter, String> {
    let mut out = TimeFilter::default();
    if filter.trim().is_empty() {
        return Ok(out);
    }
    for clause in filter.split(" AND ") {
        let clause = clause.trim();
        let (field, op, literal) = split_clause(clause).ok_or_else(|| format!("Invalid filter clause: {clause}"))?;
        let physical = |l: &str| {
            DateTime::parse_from_rfc3339(l)
                .map(|t| Bound::Physical(t.with_timezone(&Utc)))
                .map_err(|_| format!("Invalid timestamp literal (RFC-3339 expected): {l}"))
        };
        let bound = match (kind, field.strip_prefix(prefix).and_then(|f| f.strip_prefix('.'))) {
            (FilterKind::Sample, Some("sample_time.physical_time")) => physical(literal)?,
            (FilterKind::Sample, Some("sample_time.civil_time")) => {
                Bound::Civil(parse_civil(literal).ok_or_else(|| format!("Invalid civil time literal: {literal}"))?)
            }
            (FilterKind::SessionEnd, Some("interval.end_time")) => physical(literal)?,
            (FilterKind::Daily, Some("date")) => Bound::Date(
                NaiveDate::parse_from_str(literal, "%Y-%m-%d")
                    .map_err(|_| format!("Invalid date literal (YYYY-MM-DD expected): {literal}"))?,
            ),
            _ => return Err(format!("Unsupported filter field: {field}")),
        };
        let slot = if op == ">=" { &mut out.from } else { &mut out.before };
        if slot.is_some() {
            return Err(format!("Duplicate {op} condition in filter"));
        }
        *slot = Some(bound);
    }
    Ok(out)
}

fn split_clause(clause: &str) -> Option<(&str, &str, &str)> {
    let (field, rest, op) = if let Some((f, r)) = clause.split_once(">=") {
        (f, r, ">=")
    } else if let Some((f, r)) = clause.split_once('<') {
        (f, r, "<")
    } else {
        return None;
    };
    let literal = rest.trim().strip_prefix('"')?.strip_suffix('"')?;
    Some((field.trim(), op, literal))
}

fn parse_civil(s: &str) -> Option<NaiveDateTime> {
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Some(t);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let f = parse(
            r#"heart_rate.sample_time.physical_time >= "2026-11-01T00:00:00Z" AND heart_rate.sample_time.physical_time < "2026-11-02T00:00:00Z""#,
            "heart_rate",
            FilterKind::Sample,
        )
        .unwrap();
        assert!(matches!(f.from, Some(Bound::Physical(_))) && matches!(f.before, Some(Bound::Physical(_))));
        let f =
            parse(r#"heart_rate.sample_time.civil_time >= "2026-11-01""#, "heart_rate", FilterKind::Sample).unwrap();
        assert!(matches!(f.from, Some(Bound::Civil(_))));
        let f = parse(r#"daily_resting_heart_rate.date < "2026-11-01""#, "daily_resting_heart_rate", FilterKind::Daily);
        assert!(matches!(f.unwrap().before, Some(Bound::Date(_))));
        let f = parse(r#"sleep.interval.end_time >= "2026-11-01T00:00:00Z""#, "sleep", FilterKind::SessionEnd);
        assert!(f.is_ok());
        let hr = |s: &str| parse(s, "heart_rate", FilterKind::Sample);
        assert!(hr(r#"steps.interval.start_time >= "2026-11-01T00:00:00Z""#).is_err());
        assert!(hr(r#"heart_rate.sample_time.physical_time > "2026-11-01T00:00:00Z""#).is_err());
        assert!(hr(r#"heart_rate.sample_time.physical_time >= 2026"#).is_err());
        assert!(hr(r#"heart_rate.sample_time.physical_time >= "yesterday""#).is_err());
        assert!(hr(r#"heart_rate.sample_time.physical_time >= "2026-11-01T00:00:00Z" OR x < "y""#).is_err());
        assert!(
            parse(r#"sleep.interval.start_time >= "2026-11-01T00:00:00Z""#, "sleep", FilterKind::SessionEnd).is_err()
        );
    }
}
