//! The simulator against the Google Health API v4 discovery document: every field it
//! serves is declared there with the right type and format, and its quirks (int64 as
//! strings, newest first, pagination, filter grammar, error format) hold.

use crate::common;

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Utc};
use serde_json::Value;
use wearbridge::simulator::{self, Fault};

const DISCOVERY: &str = include_str!("../fixtures/google-health-v4-discovery.subset.json");

/// Checks `value` against discovery schema `schema`; returns every violation.
fn conform(value: &Value, schema: &Value, schemas: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(name) = schema.get("$ref").and_then(Value::as_str) {
        match schemas.get(name) {
            Some(s) => conform(value, s, schemas, path, errors),
            None => errors.push(format!("{path}: unknown schema {name}")),
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    match ty {
        "object" => {
            let Some(map) = value.as_object() else { return errors.push(format!("{path}: expected object")) };
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in map {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => conform(v, s, schemas, &format!("{path}.{k}"), errors),
                    None => errors.push(format!("{path}.{k}: not in the discovery document")),
                }
            }
        }
        "array" => {
            let Some(items) = value.as_array() else { return errors.push(format!("{path}: expected array")) };
            for (i, v) in items.iter().enumerate() {
                conform(v, &schema["items"], schemas, &format!("{path}[{i}]"), errors);
            }
        }
        "string" => {
            let Some(s) = value.as_str() else { return errors.push(format!("{path}: expected string, got {value}")) };
            match schema.get("format").and_then(Value::as_str) {
                Some("int64") if s.parse::<i64>().is_err() => errors.push(format!("{path}: not an int64 string")),
                Some("google-datetime") if DateTime::parse_from_rfc3339(s).is_err() => {
                    errors.push(format!("{path}: not RFC 3339"))
                }
                Some("google-duration") if !(s.ends_with('s') && s[..s.len() - 1].parse::<f64>().is_ok()) => {
                    errors.push(format!("{path}: not a google-duration"))
                }
                _ => {}
            }
            if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
                && !allowed.iter().any(|a| a == value)
            {
                errors.push(format!("{path}: {s} is not one of the enum values"));
            }
        }
        "integer" if !value.is_i64() => errors.push(format!("{path}: expected integer")),
        "boolean" if !value.is_boolean() => errors.push(format!("{path}: expected boolean")),
        _ => {}
    }
}

fn assert_conforms(value: &Value, schema: &str) {
    let doc: Value = serde_json::from_str(DISCOVERY).unwrap();
    let schemas = &doc["schemas"];
    let mut errors = Vec::new();
    conform(value, &serde_json::json!({"$ref": schema}), schemas, schema, &mut errors);
    assert!(errors.is_empty(), "{schema} violations: {errors:#?}");
}

async fn access_token(sim: &simulator::Simulator, person: usize) -> String {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", sim.people()[person].refresh_token.as_str()),
        ("client_id", simulator::CLIENT_ID),
        ("client_secret", simulator::CLIENT_SECRET),
    ];
    let r = crate::common::http().post(sim.google_token_url()).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_i64().unwrap() > 3000);
    assert!(v["scope"].as_str().unwrap().contains("googlehealth.health_metrics_and_measurements.readonly"));
    assert!(v.get("refresh_token").is_none(), "Google does not rotate by default");
    v["access_token"].as_str().unwrap().to_owned()
}

async fn get(sim: &simulator::Simulator, token: &str, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let r = crate::common::http()
        .get(format!("{}/{path}", sim.google_api_base()))
        .query(query)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn hr_filter(from: &str, before: &str) -> String {
    format!(
        "heart_rate.sample_time.physical_time >= \"{from}\" AND heart_rate.sample_time.physical_time < \"{before}\""
    )
}

fn physical_times(v: &Value) -> Vec<DateTime<Utc>> {
    v["dataPoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["heartRate"]["sampleTime"]["physicalTime"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn identity_settings_and_data_points_match_the_discovery_document() {
    let sim = common::simulator(2, 1).await;
    let token = access_token(&sim, 0).await;
    let (status, identity) = get(&sim, &token, "v4/users/me/identity", &[]).await;
    assert_eq!(status, 200);
    assert_conforms(&identity, "Identity");
    assert_eq!(identity["healthUserId"], sim.people()[0].health_user_id.as_str());

    let (status, settings) = get(&sim, &token, "v4/users/me/settings", &[]).await;
    assert_eq!(status, 200);
    assert_conforms(&settings, "Settings");

    let now = common::now();
    let from = (now - chrono::TimeDelta::hours(6)).to_rfc3339();
    let filter = hr_filter(&from, &now.to_rfc3339());
    let (status, page) = get(&sim, &token, "v4/users/me/dataTypes/heart-rate/dataPoints", &[("filter", &filter)]).await;
    assert_eq!(status, 200);
    assert_conforms(&page, "ListDataPointsResponse");
    let points = page["dataPoints"].as_array().unwrap();
    assert_eq!(points.len(), 35, "six hours of ten-minute samples");
    assert!(points.iter().all(|p| p["heartRate"]["beatsPerMinute"].is_string()), "int64 values are strings");
    let times = physical_times(&page);
    assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert!(page.get("nextPageToken").is_none(), "a complete answer has no token");
}

#[tokio::test]
async fn pagination_covers_everything_exactly_once() {
    let sim = common::simulator(1, 2).await;
    let token = access_token(&sim, 0).await;
    let now = common::now();
    let filter = hr_filter(&(now - chrono::TimeDelta::days(1)).to_rfc3339(), &now.to_rfc3339());
    let path = "v4/users/me/dataTypes/heart-rate/dataPoints";
    let (_, whole) = get(&sim, &token, path, &[("filter", &filter), ("pageSize", "10000")]).await;
    let all = physical_times(&whole);

    let mut paged = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let mut q = vec![("filter", filter.as_str()), ("pageSize", "25")];
        if !page_token.is_empty() {
            q.push(("pageToken", page_token.as_str()));
        }
        let (status, page) = get(&sim, &token, path, &q).await;
        assert_eq!(status, 200);
        let times = physical_times(&page);
        assert!(times.len() <= 25);
        paged.extend(times);
        pages += 1;
        match page.get("nextPageToken").and_then(Value::as_str) {
            Some(t) => page_token = t.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, all, "pages concatenate to the whole answer, newest first");
    assert_eq!(pages, all.len().div_ceil(25));
    let unique: BTreeSet<_> = paged.iter().collect();
    assert_eq!(unique.len(), paged.len());

    // A page token belongs to its filter.
    let other = hr_filter(&(now - chrono::TimeDelta::days(2)).to_rfc3339(), &now.to_rfc3339());
    let (_, first) = get(&sim, &token, path, &[("filter", &filter), ("pageSize", "25")]).await;
    let t = first["nextPageToken"].as_str().unwrap();
    let (status, err) = get(&sim, &token, path, &[("filter", &other), ("pageToken", t)]).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
}

#[tokio::test]
async fn filter_grammar_and_error_format() {
    let sim = common::simulator(1, 3).await;
    let token = access_token(&sim, 0).await;
    let path = "v4/users/me/dataTypes/heart-rate/dataPoints";
    for bad in [
        "heart_rate.sample_time.physical_time > \"2026-11-01T00:00:00Z\"",
        "steps.interval.start_time >= \"2026-11-01T00:00:00Z\"",
        "heart_rate.sample_time.physical_time >= \"last tuesday\"",
        "heart_rate.sample_time.physical_time >= \"2026-11-01T00:00:00Z\" OR true",
    ] {
        let (status, err) = get(&sim, &token, path, &[("filter", bad)]).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(err["error"]["code"], 400);
        assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
        assert!(err["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, err) = get(&sim, &token, path, &[("pageSize", "-1")]).await;
    assert_eq!((status, err["error"]["status"].as_str()), (400, Some("INVALID_ARGUMENT")));

    let (status, err) = get(&sim, "not-a-token", "v4/users/me/identity", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(err["error"]["status"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn civil_day_filter_spans_a_dst_change() {
    // Person 0 lives in America/New_York, where clocks fall back on the first Sunday of
    // November (a 25-hour day). Take the latest such day that is over.
    let sim = common::simulator(1, 4).await;
    assert_eq!(sim.people()[0].time_zone.name(), "America/New_York");
    let token = access_token(&sim, 0).await;
    let today = common::now().date_naive();
    let fall_back = |year| {
        let first = chrono::NaiveDate::from_ymd_opt(year, 11, 1).unwrap();
        first + chrono::Days::new(u64::from((7 - first.weekday().num_days_from_sunday()) % 7))
    };
    let day = if fall_back(today.year()) < today { fall_back(today.year()) } else { fall_back(today.year() - 1) };
    let filter = format!(
        "heart_rate.sample_time.civil_time >= \"{day}\" AND heart_rate.sample_time.civil_time < \"{}\"",
        day.succ_opt().unwrap()
    );
    let (status, page) = get(&sim, &token, "v4/users/me/dataTypes/heart-rate/dataPoints", &[("filter", &filter)]).await;
    assert_eq!(status, 200);
    let points = page["dataPoints"].as_array().unwrap();
    assert_eq!(points.len(), 146, "a 25-hour day has more than 144 ten-minute samples: {}", points.len());
    let offsets: BTreeSet<&str> =
        points.iter().map(|p| p["heartRate"]["sampleTime"]["utcOffset"].as_str().unwrap()).collect();
    assert_eq!(offsets, BTreeSet::from(["-14400s", "-18000s"]));
    assert!(points.iter().all(|p| p["heartRate"]["sampleTime"]["civilTime"]["date"]["day"] == day.day()));
}

#[tokio::test]
async fn token_endpoint_errors() {
    let sim = common::simulator(1, 5).await;
    let http = crate::common::http();
    let post = |form: Vec<(&'static str, String)>| http.post(sim.google_token_url()).form(&form).send();
    let r = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", sim.people()[0].refresh_token.clone()),
        ("client_id", "someone-else".into()),
        ("client_secret", "x".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = post(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", "1//forged".into()),
        ("client_id", simulator::CLIENT_ID.into()),
        ("client_secret", simulator::CLIENT_SECRET.into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "Token has been expired or revoked.");

    sim.set_google_rotation(true);
    let form = vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", sim.people()[0].refresh_token.clone()),
        ("client_id", simulator::CLIENT_ID.into()),
        ("client_secret", simulator::CLIENT_SECRET.into()),
    ];
    let body: Value = post(form.clone()).await.unwrap().json().await.unwrap();
    assert!(body["refresh_token"].as_str().is_some(), "rotation hands out a new refresh token");
    assert_eq!(post(form).await.unwrap().status(), 400, "the rotated-away token is dead");
}

#[tokio::test]
async fn faults_and_counters() {
    let sim = common::simulator(1, 6).await;
    let token = access_token(&sim, 0).await;
    let path = "v4/users/me/identity";
    sim.faults().inject("google.identity", Fault::RateLimited { retry_after: Some(7) }, 1);
    sim.faults().inject("google.identity", Fault::Status(503), 1);
    sim.faults().inject("google.identity", Fault::Malformed, 1);
    sim.faults().inject("google.identity", Fault::Truncated, 1);
    let http = crate::common::http();
    let url = format!("{}/{path}", sim.google_api_base());
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["status"], "RESOURCE_EXHAUSTED");
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());
    let (status, _) = get(&sim, &token, path, &[]).await;
    assert_eq!(status, 200, "faults are used up");
    assert_eq!(sim.request_count("google.identity"), 5);
    assert_eq!(sim.request_count("google.token"), 1);
}

#[tokio::test]
async fn every_served_data_type_matches_the_discovery_document() {
    let sim = common::simulator(2, 7).await;
    let token = access_token(&sim, 0).await;
    let now = common::now();
    let from = (now - chrono::TimeDelta::days(10)).to_rfc3339();
    let to = now.to_rfc3339();
    for (data_type, field) in [
        ("sleep", "sleep.interval.end_time"),
        ("weight", "weight.sample_time.physical_time"),
        ("body-fat", "body_fat.sample_time.physical_time"),
    ] {
        let filter = format!("{field} >= \"{from}\" AND {field} < \"{to}\"");
        let path = format!("v4/users/me/dataTypes/{data_type}/dataPoints");
        let (status, page) = get(&sim, &token, &path, &[("filter", &filter)]).await;
        assert_eq!(status, 200, "{data_type}: {page}");
        assert!(!page["dataPoints"].as_array().unwrap().is_empty(), "{data_type}");
        assert_conforms(&page, "ListDataPointsResponse");
    }
    let today = now.date_naive();
    let filter = format!(
        "daily_resting_heart_rate.date >= \"{}\" AND daily_resting_heart_rate.date < \"{today}\"",
        today - chrono::Days::new(7)
    );
    let (status, page) =
        get(&sim, &token, "v4/users/me/dataTypes/daily-resting-heart-rate/dataPoints", &[("filter", &filter)]).await;
    assert_eq!(status, 200);
    assert_conforms(&page, "ListDataPointsResponse");
    assert!(page["dataPoints"][0]["dailyRestingHeartRate"]["beatsPerMinute"].is_string());

    let (status, devices) = get(&sim, &token, "v4/users/me/pairedDevices", &[]).await;
    assert_eq!(status, 200);
    assert_conforms(&devices, "ListPairedDevicesResponse");

    let http = crate::common::http();
    let date =
        |d: chrono::NaiveDate| serde_json::json!({"date": {"year": d.year(), "month": d.month(), "day": d.day()}});
    let roll_up = |data_type: &str, days: u64, window: Option<i64>| {
        let mut body =
            serde_json::json!({"range": {"start": date(today - chrono::Days::new(days)), "end": date(today)}});
        if let Some(w) = window {
            body["windowSizeDays"] = w.into();
        }
        http.post(format!("{}/v4/users/me/dataTypes/{data_type}/dataPoints:dailyRollUp", sim.google_api_base()))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    for data_type in ["steps", "distance", "active-minutes", "total-calories"] {
        let r = roll_up(data_type, 7, Some(1)).await.unwrap();
        assert_eq!(r.status(), 200, "{data_type}");
        let v: Value = r.json().await.unwrap();
        assert_conforms(&v, "DailyRollUpDataPointsResponse");
        assert!(!v["rollupDataPoints"].as_array().unwrap().is_empty());
    }
    assert_eq!(roll_up("steps", 7, None).await.unwrap().status(), 400, "windowSizeDays is required");
    assert_eq!(roll_up("active-minutes", 15, Some(1)).await.unwrap().status(), 400, "14 days at most");
    assert_eq!(roll_up("steps", 90, Some(1)).await.unwrap().status(), 200);
    assert_eq!(roll_up("steps", 91, Some(1)).await.unwrap().status(), 400, "90 days at most");
    assert_eq!(sim.request_count("google.dailyRollUp.steps"), 4);
}
