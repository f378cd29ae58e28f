//! The Withings WBS01 Wi-Fi scale's conversation with `scalews.withings.net`
//! (`shared/reference/local-scales.md` §2): form POSTs to `/cgi-bin/once`,
//! `/cgi-bin/session` (new, delete) and `/cgi-bin/measure` (`action=store`), answered with
//! `{"status":0,...}` JSON. Facts the sheet marks as single-source or unknown (which
//! measure types a WBS01 sends for fat, the WS-50's `measuregrps` variant) are parsed
//! leniently: what is not understood is reported by name, never by value.

use serde_json::{Value, json};

/// One measure of a stored reading: quantity = value × 10^unit, at `time` (Unix seconds
/// by the scale's clock: its group's `meastime`, or the request's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    pub kind: u32,
    pub value: i64,
    pub unit: i32,
    pub time: i64,
}

impl Measure {
    /// value × 10^unit, when it is a finite number.
    pub fn quantity(&self) -> Option<f64> {
        let q = self.value as f64 * 10f64.powi(self.unit.clamp(-20, 20));
        q.is_finite().then_some(q)
    }
}

/// A `/cgi-bin/measure` `action=store` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    pub session: String,
    /// The scale's MAC (its identity); never published.
    pub mac: String,
    /// The user slot (a Withings user id); 0 or absent: nobody the scale knew.
    pub user: u64,
    pub measures: Vec<Measure>,
    /// Names of fields or measure items that were not understood (for the log).
    pub not_understood: Vec<String>,
}

/// Why a request is refused; never carries request values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Wbs01Error {
    #[error("missing or malformed field `{0}`")]
    Field(&'static str),
    #[error("unknown action")]
    Action,
}

/// Form fields by name (last one wins).
pub fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// A normalised MAC address (`00:24:e4:…`, lower case), if the text is one.
pub fn mac(text: &str) -> Option<String> {
    let hex: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let separators_ok = text.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '-');
    (hex.len() == 12 && separators_ok).then(|| {
        hex.to_ascii_lowercase()
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":")
    })
}

fn measure_items(items: &[Value], time: i64, out: &mut Vec<Measure>, not_understood: &mut Vec<String>) {
    for item in items {
        let number = |k: &str| item.get(k).and_then(|v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()));
        // The WS-50's v2 shape: {"data":{"mantissa","exponent"},"type"}.
        let (value, unit) = match (number("value"), number("unit")) {
            (Some(v), Some(u)) => (Some(v), Some(u)),
            _ => {
                let data = item.get("data");
                let field = |k: &str| data.and_then(|d| d.get(k)).and_then(Value::as_i64);
                (field("mantissa"), field("exponent"))
            }
        };
        match (number("type"), value, unit.and_then(|u| i32::try_from(u).ok())) {
            (Some(kind), Some(value), Some(unit)) if kind >= 0 => {
                out.push(Measure { kind: u32::try_from(kind).unwrap_or(u32::MAX), value, unit, time })
            }
            _ => not_understood.push("a measure item without type, value and unit".into()),
        }
    }
}

/// Parses `action=store`.
pub fn parse_store(fields: &std::collections::HashMap<String, String>) -> Result<Store, Wbs01Error> {
    if fields.get("action").map(String::as_str) != Some("store") {
        return Err(Wbs01Error::Action);
    }
    let session =
        fields.get("sessionid").filter(|s| !s.is_empty() && s.len() <= 64).ok_or(Wbs01Error::Field("sessionid"))?;
    let mac = fields.get("macaddress").and_then(|m| mac(m)).ok_or(Wbs01Error::Field("macaddress"))?;
    let user = match fields.get("userid").map(|u| u.trim()) {
        None | Some("") => 0,
        Some(u) => u.parse().map_err(|_| Wbs01Error::Field("userid"))?,
    };
    let time = fields.get("meastime").and_then(|t| t.trim().parse::<i64>().ok());
    let mut measures = Vec::new();
    let mut not_understood = Vec::new();
    let text = fields.get("measures").or_else(|| fields.get("measuregrps")).ok_or(Wbs01Error::Field("measures"))?;
    let value: Value = serde_json::from_str(text).map_err(|_| Wbs01Error::Field("measures"))?;
    if let Some(items) = value.get("measures").and_then(Value::as_array) {
        measure_items(items, time.ok_or(Wbs01Error::Field("meastime"))?, &mut measures, &mut not_understood);
    } else if let Some(groups) = value.get("measuregrps").and_then(Value::as_array) {
        // The WS-50 shape: each group carries its own time.
        for g in groups {
            let Some(at) = g.get("meastime").and_then(Value::as_i64).or(time) else {
                not_understood.push("a measure group without a time".into());
                continue;
            };
            let items = g.get("measures").and_then(Value::as_array).map_or(&[][..], |v| v);
            measure_items(items, at, &mut measures, &mut not_understood);
        }
    } else {
        return Err(Wbs01Error::Field("measures"));
    }
    const KNOWN: [&str; 9] = [
        "action",
        "sessionid",
        "macaddress",
        "userid",
        "meastime",
        "measures",
        "measuregrps",
        "devtype",
        "attribstatus",
    ];
    for name in fields.keys() {
        if !KNOWN.contains(&name.as_str()) {
            not_understood.push(format!(
                "field `{}`",
                name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(32).collect::<String>()
            ));
        }
    }
    Ok(Store { session: session.clone(), mac, user, measures, not_understood })
}

/// `/cgi-bin/once`: a nonce the scale hashes with its secret.
pub fn once_answer(nonce: u64) -> Value {
    json!({"status": 0, "body": {"once": format!("{:08x}-{:08x}", nonce >> 32, nonce & 0xffff_ffff)}})
}

/// A user the scale should show (`sp.users[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionUser {
    pub id: u64,
    /// Three letters for the display.
    pub short_name: String,
    /// Last weight (kg), by which the scale tells users apart.
    pub weight_kg: f64,
}

/// `/cgi-bin/session` `action=new`: a session id, the users, the server's clock; no
/// firmware URL (`syp.blc` would push an update).
pub fn session_answer(session: &str, users: &[SessionUser], now: i64) -> Value {
    let users: Vec<Value> = users
        .iter()
        .map(|u| json!({"id": u.id, "sn": u.short_name, "wt": u.weight_kg, "ht": 0, "agt": 0, "sx": 0, "fm": 131, "cr": now, "att": 0}))
        .collect();
    json!({
        "status": 0,
        "body": {
            "sessionid": session,
            "sp": {"users": users},
            "ind": {"lg": "en_GB", "imt": 1, "stp": 1, "f": 0, "g": 98_000},
            "syp": {"utc": now},
            "ctp": {"goff": 0, "dst": 0, "ngoff": 0},
        }
    })
}

/// `{"status":0}`, and the measure ack's `updatetime`.
pub fn ok_answer(updatetime: Option<i64>) -> Value {
    match updatetime {
        Some(t) => json!({"status": 0, "body": {"updatetime": t}}),
        None => json!({"status": 0}),
    }
}

/// What a bad request gets (as pigsty answers; the scale's reaction is unknown).
pub fn error_answer() -> Value {
    json!({"status": 255})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_form(measures: &str) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("action", "store")
            .append_pair("sessionid", "4079-f5f75535-2f5ea8eb")
            .append_pair("macaddress", "00:24:E4:01:02:03")
            .append_pair("userid", "1234")
            .append_pair("meastime", "1764500000")
            .append_pair("devtype", "1")
            .append_pair("attribstatus", "0")
            .append_pair("measures", measures)
            .finish()
            .into_bytes()
    }

    #[test]
    fn a_weight_is_value_times_ten_to_the_unit() {
        let s = parse_store(&form(&store_form(r#"{"measures":[{"value":66850,"type":1,"unit":-3}]}"#))).unwrap();
        assert_eq!((s.mac.as_str(), s.user, s.measures[0].time), ("00:24:e4:01:02:03", 1234, 1_764_500_000));
        assert_eq!(s.measures[0].kind, 1);
        assert!((s.measures[0].quantity().unwrap() - 66.85).abs() < 1e-9);
        assert!(s.not_understood.is_empty());
    }

    #[test]
    fn the_ws50_shapes_are_tolerated_and_the_unknown_is_named() {
        let groups = r#"{"measuregrps":[{"meastime":1,"measures":[{"value":70000,"type":1,"unit":-3},{"type":16}]}]}"#;
        let s = parse_store(&form(&store_form(groups))).unwrap();
        assert_eq!(s.measures.len(), 1);
        assert_eq!(s.measures[0].time, 1, "the group's own time");
        assert_eq!(s.not_understood, ["a measure item without type, value and unit"]);
        let v2 = r#"{"measures":[{"data":{"mantissa":701,"exponent":-1},"type":1}]}"#;
        assert!((parse_store(&form(&store_form(v2))).unwrap().measures[0].quantity().unwrap() - 70.1).abs() < 1e-9);
    }

    #[test]
    fn bad_requests_name_the_field() {
        assert_eq!(parse_store(&form(b"action=get")), Err(Wbs01Error::Action));
        let no_mac = String::from_utf8(store_form("{}")).unwrap().replace("macaddress", "mac");
        assert_eq!(parse_store(&form(no_mac.as_bytes())), Err(Wbs01Error::Field("macaddress")));
        assert_eq!(parse_store(&form(&store_form("not json"))), Err(Wbs01Error::Field("measures")));
        assert_eq!(mac("00-24-e4-01-02-03").as_deref(), Some("00:24:e4:01:02:03"));
        assert_eq!(mac("00:24:e4"), None);
        assert_eq!(mac("zz:24:e4:01:02:03:04"), None);
    }

    #[test]
    fn answers_have_the_documented_shapes() {
        assert_eq!(once_answer(0x0123_4567_89ab_cdef)["body"]["once"], "01234567-89abcdef");
        let s =
            session_answer("1-2-3", &[SessionUser { id: 9, short_name: "ANN".into(), weight_kg: 70.0 }], 1_764_500_000);
        assert_eq!((s["status"].as_i64(), s["body"]["sp"]["users"][0]["sn"].as_str()), (Some(0), Some("ANN")));
        assert!(s["body"]["syp"].get("blc").is_none(), "no firmware push");
        assert_eq!(ok_answer(None), json!({"status": 0}));
    }
}
