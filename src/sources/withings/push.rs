//! Withings notifications (`/notify`): Withings probes the callback with a HEAD, then
//! POSTs a form (`userid`, `appli`, `startdate`, `enddate`) for each change and wants an
//! answer within 2 seconds. This module parses that form and keeps an account's
//! subscriptions (`action=list`, `subscribe`, `revoke`).

use chrono::DateTime;

use crate::config::{Dataset, PushSettings};
use crate::sources::push::{Notice, PushError};

/// Parses a notification form. An `appli` wearbridge does not act on gives a notice
/// without datasets (answered, counted as ignored).
pub fn parse(form: &[u8]) -> Result<Notice, PushError> {
    let mut user = None;
    let mut appli = None;
    let (mut from, mut to) = (None, None);
    for (key, value) in url::form_urlencoded::parse(form) {
        let value = value.trim();
        match key.as_ref() {
            "userid" => user = Some(value.to_owned()),
            "appli" => {
                appli = Some(value.parse::<u32>().map_err(|_| PushError::Malformed("appli is not a number".into()))?)
            }
            "startdate" => from = value.parse::<i64>().ok().and_then(|s| DateTime::from_timestamp(s, 0)),
            "enddate" => to = value.parse::<i64>().ok().and_then(|s| DateTime::from_timestamp(s, 0)),
            _ => {}
        }
    }
    let user = user
        .filter(|u| !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_alphanumeric()))
        .ok_or_else(|| PushError::Malformed("no userid".into()))?;
    let appli = appli.ok_or_else(|| PushError::Malformed("no appli".into()))?;
    let datasets: Vec<Dataset> = PushSettings::withings_dataset(appli).into_iter().collect();
    // Body measures and sleep are read by modification time (`lastupdate`), which a
    // notified change always has recent: a hint of its measurement time would only widen
    // the read for nothing. Activity is read by day, where the hint finds the day.
    if datasets.iter().any(|d| matches!(d, Dataset::Body | Dataset::Sleep)) {
        (from, to) = (None, None);
    }
    Ok(Notice { user_id: user, datasets, from, to, delete: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_forms() {
        let n = parse(b"userid=12345&appli=1&startdate=1764500000&enddate=1764500060").unwrap();
        assert_eq!((n.user_id.as_str(), n.datasets.as_slice()), ("12345", &[Dataset::Body][..]));
        assert_eq!(n.from, None, "body is read by modification time: no hint");
        let activity = parse(b"userid=12345&appli=16&startdate=1764500000&enddate=1764500060").unwrap();
        assert_eq!(activity.from.map(|t| t.timestamp()), Some(1_764_500_000));
        assert_eq!(parse(b"userid=1&appli=44").unwrap().datasets, [Dataset::Sleep]);
        assert!(parse(b"userid=1&appli=54").unwrap().datasets.is_empty(), "ECG: not read");
        for bad in [&b""[..], b"appli=1", b"userid=&appli=1", b"userid=1", b"userid=1&appli=x", b"userid=a%20b&appli=1"]
        {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
