//! Google Health API v4 resources: identity, settings and `dataPoints.list`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Offset, SecondsFormat, TimeDelta, TimeZone, Timelike, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::{Person, SimState};
use super::filter::{self, Bound, TimeFilter};
use super::{error, error_for_status, series};

const DEFAULT_PAGE_SIZE: usize = 1440;
const MAX_PAGE_SIZE: usize = 10_000;

/// Why a request was refused before reaching its resource.
enum Denied {
    Missing,
    Invalid,
    Forbidden,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Missing => error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            ),
            Denied::Invalid => error_for_status(StatusCode::UNAUTHORIZED),
            Denied::Forbidden => error_for_status(StatusCode::FORBIDDEN),
        }
    }
}

/// The person behind the bearer token, or the 401/403 Google would answer.
fn authorize<'a>(state: &'a SimState, headers: &HeaderMap, user: &str) -> Result<&'a Person, Denied> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(Denied::Missing)?;
    let index = state.google.person_for_access(token).ok_or(Denied::Invalid)?;
    let person = state.people.get(index).ok_or(Denied::Invalid)?;
    if user != "me" && user != person.health_user_id {
        return Err(Denied::Forbidden);
    }
    Ok(person)
}

/// `"-18000s"`: a google-duration offset.
fn offset_text(person: &Person, at: DateTime<Utc>) -> String {
    let secs = person.time_zone.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc();
    format!("{secs}s")
}

fn civil_time(person: &Person, at: DateTime<Utc>) -> Value {
    let local = at.with_timezone(&person.time_zone);
    json!({
        "date": {"year": local.year(), "month": local.month(), "day": local.day()},
        "time": {"hours": local.hour(), "minutes": local.minute(), "seconds": local.second()},
    })
}

pub(crate) async fn identity(
    State(state): State<Arc<SimState>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let person = match authorize(&state, &headers, &user) {
        Ok(p) => p,
        Err(denied) => return denied.into_response(),
    };
    Json(json!({
        "name": "users/me/identity",
        "healthUserId": person.health_user_id,
        "legacyUserId": person.legacy_user_id,
    }))
    .into_response()
}

pub(crate) async fn settings(
    State(state): State<Arc<SimState>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Response {
    let person = match authorize(&state, &headers, &user) {
        Ok(p) => p,
        Err(denied) => return denied.into_response(),
    };
    Json(json!({
        "name": "users/me/settings",
        "timeZone": person.time_zone.name(),
        "utcOffset": offset_text(person, Utc::now()),
        "distanceUnit": "DISTANCE_UNIT_KILOMETERS",
        "heightUnit": "HEIGHT_UNIT_CENTIMETERS",
        "languageLocale": "en_US",
        "autoStrideEnabled": true,
    }))
    .into_response()
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

/// Page tokens are opaque to clients; they bind the filter and where the next page starts.
fn page_token(filter_text: &str, before: DateTime<Utc>) -> String {
    let digest = Sha256::digest(filter_text.as_bytes());
    hex::encode(format!("v1:{}:{}", hex::encode(&digest[..6]), before.timestamp()))
}

fn read_page_token(token: &str, filter_text: &str) -> Option<DateTime<Utc>> {
    let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let mut parts = text.split(':');
    let (v, sum, before) = (parts.next()?, parts.next()?, parts.next()?);
    let digest = Sha256::digest(filter_text.as_bytes());
    if v != "v1" || sum != hex::encode(&digest[..6]) {
        return None;
    }
    DateTime::from_timestamp(before.parse().ok()?, 0)
}

fn matches(filter: &TimeFilter, person: &Person, at: DateTime<Utc>) -> bool {
    let civil = at.with_timezone(&person.time_zone).naive_local();
    let ge = |b: &Bound| match b {
        Bound::Physical(t) => at >= *t,
        Bound::Civil(t) => civil >= *t,
    };
    let lt = |b: &Bound| match b {
        Bound::Physical(t) => at < *t,
        Bound::Civil(t) => civil < *t,
    };
    filter.from.as_ref().is_none_or(ge) && filter.before.as_ref().is_none_or(lt)
}

/// A physical window that surely contains every match (civil bounds widened by a day).
fn physical_window(filter: &TimeFilter, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = TimeDelta::days(1);
    let from = match filter.from {
        Some(Bound::Physical(t)) => t,
        Some(Bound::Civil(t)) => t.and_utc() - day,
        None => now - TimeDelta::days(series::HISTORY_DAYS),
    };
    let before = match filter.before {
        Some(Bound::Physical(t)) => t,
        Some(Bound::Civil(t)) => t.and_utc() + day,
        None => now + TimeDelta::seconds(1),
    };
    (from, before)
}

pub(crate) async fn list_data_points(
    State(state): State<Arc<SimState>>,
    Path((user, data_type)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let person = match authorize(&state, &headers, &user) {
        Ok(p) => p,
        Err(denied) => return denied.into_response(),
    };
    if data_type != "heart-rate" {
        return invalid(&format!("The simulator does not serve data type '{data_type}' yet."));
    }
    let page_size = match query.get("pageSize").map(|s| s.parse::<i64>()) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(0)) => DEFAULT_PAGE_SIZE,
        Some(Ok(n)) if n > 0 => (n as usize).min(MAX_PAGE_SIZE),
        Some(_) => return invalid("page_size must be a positive integer."),
    };
    let filter_text = query.get("filter").cloned().unwrap_or_default();
    let filter = match filter::parse(&filter_text, "heart_rate") {
        Ok(f) => f,
        Err(message) => return invalid(&message),
    };
    let now = Utc::now();
    let (from, mut before) = physical_window(&filter, now);
    if let Some(token) = query.get("pageToken").filter(|t| !t.is_empty()) {
        match read_page_token(token, &filter_text) {
            Some(t) => before = before.min(t),
            None => return invalid("Invalid page token."),
        }
    }
    let mut page: Vec<(DateTime<Utc>, u32)> = series::heart_rate_newest_first(state.seed, person, from, before, now)
        .filter(|(t, _)| matches(&filter, person, *t))
        .take(page_size + 1)
        .collect();
    let next = if page.len() > page_size {
        page.truncate(page_size);
        page.last().map(|(t, _)| page_token(&filter_text, *t))
    } else {
        None
    };
    let points: Vec<Value> = page
        .iter()
        .map(|(at, bpm)| {
            json!({
                "dataSource": {
                    "recordingMethod": "PASSIVELY_MEASURED",
                    "platform": "FITBIT",
                    "device": {"displayName": person.device_name, "formFactor": person.device_form_factor, "manufacturer": "Google"},
                },
                "heartRate": {
                    "sampleTime": {
                        "physicalTime": at.to_rfc3339_opts(SecondsFormat::Secs, true),
                        "utcOffset": offset_text(person, *at),
                        "civilTime": civil_time(person, *at),
                    },
                    "beatsPerMinute": bpm.to_string(),
                    "metadata": {"motionContext": if *bpm > person.resting_bpm + 20 { "ACTIVE" } else { "SEDENTARY" }, "sensorLocation": "WRIST"},
                },
            })
        })
        .collect();
    state.count_n("points.heart-rate", points.len() as u64);
    let mut body = json!({ "dataPoints": points });
    if let Some(token) = next {
        body["nextPageToken"] = json!(token);
    }
    Json(body).into_response()
}
