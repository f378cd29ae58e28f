//! Withings response types, after `specs/withings-openapi.yml`. Only fields wearbridge
//! uses are declared: device ids, MAC addresses, comments and models are never parsed.
//! Withings is loose with types (`userid` and ids as numbers or strings, `more` as a
//! boolean or 0/1), so those fields are read leniently.

use serde::{Deserialize, Deserializer};

use crate::normalize::Lenient;

/// The envelope of every answer: `{"status": 0, "body": {...}}`, errors included.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    pub status: i64,
    #[serde(default = "Option::default")]
    pub body: Option<T>,
    #[serde(default)]
    pub error: Option<String>,
}

/// An id written as a number or a string.
pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
        Null,
    }
    Ok(match Option::<Id>::deserialize(d)? {
        Some(Id::Text(s)) => Some(s),
        Some(Id::Number(n)) => Some(n.to_string()),
        Some(Id::Null) | None => None,
    })
}

/// `more` as `true`/`false` or `1`/`0`.
pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Number(i64),
        Null,
    }
    Ok(match Option::<Flag>::deserialize(d)? {
        Some(Flag::Bool(b)) => b,
        Some(Flag::Number(n)) => n != 0,
        Some(Flag::Null) | None => false,
    })
}

/// `body.wait_seconds` of a 601.
#[derive(Debug, Default, Deserialize)]
pub struct Throttle {
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

/// `getmeas`.
#[derive(Debug, Deserialize)]
pub struct MeasureBody {
    #[serde(default)]
    pub measuregrps: Vec<Lenient<MeasureGroup>>,
    #[serde(default, deserialize_with = "flag")]
    pub more: bool,
    #[serde(default)]
    pub offset: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MeasureGroup {
    #[serde(deserialize_with = "id")]
    pub grpid: String,
    #[serde(default)]
    pub attrib: i64,
    pub date: i64,
    #[serde(default)]
    pub modified: Option<i64>,
    #[serde(default = "one")]
    pub category: i64,
    #[serde(default)]
    pub measures: Vec<Measure>,
}

fn one() -> i64 {
    1
}

fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_id(d)?.ok_or_else(|| serde::de::Error::custom("missing id"))
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Measure {
    pub value: i64,
    #[serde(rename = "type")]
    pub kind: i64,
    pub unit: i32,
}

impl Measure {
    /// `value × 10^unit`.
    pub fn real(&self) -> f64 {
        self.value as f64 * 10f64.powi(self.unit)
    }
}

/// `getactivity`.
#[derive(Debug, Deserialize)]
pub struct ActivityBody {
    #[serde(default)]
    pub activities: Vec<Lenient<Activity>>,
    #[serde(default, deserialize_with = "flag")]
    pub more: bool,
    #[serde(default)]
    pub offset: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Activity {
    pub date: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub steps: Option<f64>,
    #[serde(default)]
    pub distance: Option<f64>,
    /// Seconds of moderate plus intense activity.
    #[serde(default)]
    pub active: Option<f64>,
    #[serde(default)]
    pub totalcalories: Option<f64>,
}

/// `getintradayactivity`: `series` keyed by unix time as a string.
#[derive(Debug, Deserialize)]
pub struct IntradayBody {
    #[serde(default)]
    pub series: std::collections::BTreeMap<String, Lenient<IntradaySample>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IntradaySample {
    #[serde(default)]
    pub heart_rate: Option<f64>,
}

/// Sleep `getsummary`.
#[derive(Debug, Deserialize)]
pub struct SleepBody {
    #[serde(default)]
    pub series: Vec<Lenient<SleepSummary>>,
    #[serde(default, deserialize_with = "flag")]
    pub more: bool,
    #[serde(default)]
    pub offset: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SleepSummary {
    #[serde(deserialize_with = "id")]
    pub id: String,
    pub startdate: i64,
    pub enddate: i64,
    #[serde(default)]
    pub modified: Option<i64>,
    #[serde(default)]
    pub data: SleepData,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SleepData {
    #[serde(default)]
    pub total_sleep_time: Option<i64>,
    #[serde(default)]
    pub wakeupduration: Option<i64>,
    #[serde(default)]
    pub deepsleepduration: Option<i64>,
    #[serde(default)]
    pub lightsleepduration: Option<i64>,
    #[serde(default)]
    pub remsleepduration: Option<i64>,
}

/// `/notify` `action=list`: the account's notification subscriptions.
#[derive(Debug, Deserialize)]
pub struct NotifyBody {
    #[serde(default)]
    pub profiles: Vec<Lenient<NotifyProfile>>,
}

/// One subscription: which category, to which callback.
#[derive(Debug, Clone, Deserialize)]
pub struct NotifyProfile {
    #[serde(default, deserialize_with = "opt_u32")]
    pub appli: Option<u32>,
    #[serde(default)]
    pub callbackurl: String,
}

/// A number or a numeric string (Withings writes both).
fn opt_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// `getdevice`.
#[derive(Debug, Deserialize)]
pub struct DeviceBody {
    #[serde(default)]
    pub devices: Vec<Lenient<Device>>,
}

/// Only the device's kind and last session are read; its id is used, keyed, for the
/// message id and never published.
#[derive(Debug, Clone, Deserialize)]
pub struct Device {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    pub deviceid: Option<String>,
    #[serde(default)]
    pub last_session_date: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_samples_parse() {
        let meas: MeasureBody =
            serde_json::from_str(include_str!("../../../tests/fixtures/withings/get_meas.json")).unwrap();
        assert!(!meas.measuregrps.is_empty());
        assert!(meas.measuregrps.iter().all(|g| g.good().is_some()), "every captured group parses");
        let sleep: SleepBody =
            serde_json::from_str(include_str!("../../../tests/fixtures/withings/get_sleep.json")).unwrap();
        assert!(!sleep.series.is_empty() && sleep.series.iter().all(|s| s.good().is_some()));
        let devices: DeviceBody =
            serde_json::from_str(include_str!("../../../tests/fixtures/withings/get_device.json")).unwrap();
        assert_eq!(devices.devices[0].good().and_then(|d| d.kind.as_deref()), Some("Scale"));
        let activities: Vec<Activity> =
            serde_json::from_str(include_str!("../../../tests/fixtures/withings/activity.json")).unwrap();
        assert!(activities[0].steps.is_some());
    }

    #[test]
    fn lenient_ids_and_flags() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "opt_id")]
            a: Option<String>,
            #[serde(deserialize_with = "flag")]
            b: bool,
        }
        let t: T = serde_json::from_str(r#"{"a": 363, "b": 1}"#).unwrap();
        assert_eq!((t.a.as_deref(), t.b), (Some("363"), true));
        let t: T = serde_json::from_str(r#"{"a": "363", "b": false}"#).unwrap();
        assert_eq!((t.a.as_deref(), t.b), (Some("363"), false));
        let m = Measure { value: 118_003, kind: 1, unit: -3 };
        assert!((m.real() - 118.003).abs() < 1e-9);
    }
}
