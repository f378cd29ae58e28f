//! The `filter` grammar of `dataPoints.list` (AIP-160 subset: `>=`, `<`, `AND`).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// One bound of a time filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bound {
    Physical(DateTime<Utc>),
    Civil(NaiveDateTime),
}

/// A parsed filter: optional lower (inclusive) and upper (exclusive) bounds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TimeFilter {
    pub from: Option<Bound>,
    pub before: Option<Bound>,
}

/// Parses `filter` for a sample data type whose snake_case prefix is `prefix`
/// (e.g. `heart_rate`). Errors are the messages Google would put in INVALID_ARGUMENT.
pub(crate) fn parse(filter: &str, prefix: &str) -> Result<TimeFilter, String> {
    let mut out = TimeFilter::default();
    if filter.trim().is_empty() {
        return Ok(out);
    }
    for clause in filter.split(" AND ") {
        let clause = clause.trim();
        let (field, op, literal) = split_clause(clause).ok_or_else(|| format!("Invalid filter clause: {clause}"))?;
        let physical = format!("{prefix}.sample_time.physical_time");
        let civil = format!("{prefix}.sample_time.civil_time");
        let bound = if field == physical {
            let t = DateTime::parse_from_rfc3339(literal)
                .map_err(|_| format!("Invalid timestamp literal (RFC-3339 expected): {literal}"))?;
            Bound::Physical(t.with_timezone(&Utc))
        } else if field == civil {
            Bound::Civil(parse_civil(literal).ok_or_else(|| format!("Invalid civil time literal: {literal}"))?)
        } else {
            return Err(format!("Unsupported filter field: {field}"));
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
        )
        .unwrap();
        assert!(matches!(f.from, Some(Bound::Physical(_))) && matches!(f.before, Some(Bound::Physical(_))));
        let f = parse(r#"heart_rate.sample_time.civil_time >= "2026-11-01""#, "heart_rate").unwrap();
        assert!(matches!(f.from, Some(Bound::Civil(_))));
        assert!(parse(r#"steps.interval.start_time >= "2026-11-01T00:00:00Z""#, "heart_rate").is_err());
        assert!(parse(r#"heart_rate.sample_time.physical_time > "2026-11-01T00:00:00Z""#, "heart_rate").is_err());
        assert!(parse(r#"heart_rate.sample_time.physical_time >= 2026"#, "heart_rate").is_err());
        assert!(parse(r#"heart_rate.sample_time.physical_time >= "yesterday""#, "heart_rate").is_err());
        assert!(
            parse(r#"heart_rate.sample_time.physical_time >= "2026-11-01T00:00:00Z" OR x < "y""#, "heart_rate")
                .is_err()
        );
    }
}
