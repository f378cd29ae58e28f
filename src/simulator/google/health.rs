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
use super::filter::{self, Bound, FilterKind, TimeFilter};
use super::series::Reading;
use super::{error, error_for_status, series};

const DEFAULT_PAGE_SIZE: usize = 1440;
const MAX_PAGE_SIZE: usize = 10_000;

/// Why a request was refused before reaching its resource.
enum Denied {
    Missing,
    Invalid,
    Forbidden,
    Scope,
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
            Denied::Scope => {
                let body = json!({"error": {
                    "code": 403,
                    "message": "Request had insufficient authentication scopes.",
                    "status": "PERMISSION_DENIED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com"}]
                }});
                (StatusCode::FORBIDDEN, Json(body)).into_response()
            }
        }
    }
}

/// The scope (suffix after `googlehealth.`) a data type needs.
fn scope_of(data_type: &str) -> &'static str {
    match data_type {
        "steps" | "distance" | "active-minutes" | "total-calories" => "activity_and_fitness.readonly",
        "sleep" => "sleep.readonly",
        "paired-devices" | "settings" => "settings.readonly",
        _ => "health_metrics_and_measurements.readonly",
    }
}

/// Like [`authorize`], and the person must have granted the scope `data_type` needs.
fn authorize_for<'a>(
    state: &'a SimState,
    headers: &HeaderMap,
    user: &str,
    data_type: &str,
) -> Result<&'a Person, Denied> {
    let person = authorize(state, headers, user)?;
    if !state.google.has_scope(person.index, scope_of(data_type)) {
        return Err(Denied::Scope);
    }
    Ok(person)
}

/// The person behind the bearer token, or the 401/403 Google would answer.
fn authorize<'a>(state: &'a SimState, headers: &HeaderMap, user: &str) -> Result<&'a Person, Denied> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(Denied::Missing)?;
    let index = state.google.person_for_access(token, state.clock.now()).ok_or(Denied::Invalid)?;
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
    // Per person (not an endpoint label): tests see when each person's zone was read.
    state.note(format!("settings-by/{}", person.name));
    Json(json!({
        "name": "users/me/settings",
        "timeZone": person.time_zone.name(),
        "utcOffset": offset_text(person, state.clock.now()),
        "distanceUnit": "DISTANCE_UNIT_KILOMETERS",
        "heightUnit": "HEIGHT_UNIT_CENTIMETERS",
        "languageLocale": person.mark("locale", "en_US".into()),
        "autoStrideEnabled": true,
    }))
    .into_response()
}

fn invalid(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

/// Page tokens are opaque to clients; they bind the query and where the next page starts.
fn page_token(query_text: &str, before: DateTime<Utc>) -> String {
    let digest = Sha256::digest(query_text.as_bytes());
    hex::encode(format!("v1:{}:{}", hex::encode(&digest[..6]), before.timestamp()))
}

fn read_page_token(token: &str, query_text: &str) -> Option<DateTime<Utc>> {
    let text = String::from_utf8(hex::decode(token).ok()?).ok()?;
    let mut parts = text.split(':');
    let (v, sum, before) = (parts.next()?, parts.next()?, parts.next()?);
    let digest = Sha256::digest(query_text.as_bytes());
    if v != "v1" || sum != hex::encode(&digest[..6]) {
        return None;
    }
    DateTime::from_timestamp(before.parse().ok()?, 0)
}

/// Does `reading` satisfy the filter? Physical bounds test the reading's key instant,
/// civil bounds its civil time, date bounds its day.
fn matches(filter: &TimeFilter, person: &Person, reading: &Reading) -> bool {
    let key = reading.key();
    let civil = key.with_timezone(&person.time_zone).naive_local();
    let day = match reading {
        Reading::RestingHeartRate { day, .. } => *day,
        _ => civil.date(),
    };
    let test = |b: &Bound, lower: bool| {
        let ord = match b {
            Bound::Physical(t) => key.cmp(t),
            Bound::Civil(t) => civil.cmp(t),
            Bound::Date(d) => day.cmp(d),
        };
        if lower { ord.is_ge() } else { ord.is_lt() }
    };
    filter.from.as_ref().is_none_or(|b| test(b, true)) && filter.before.as_ref().is_none_or(|b| test(b, false))
}

/// A physical window that surely contains every match (civil bounds widened by a day).
fn physical_window(filter: &TimeFilter, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let day = TimeDelta::days(1);
    let midnight = |d: &chrono::NaiveDate| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let from = match &filter.from {
        Some(Bound::Physical(t)) => *t,
        Some(Bound::Civil(t)) => t.and_utc() - day,
        Some(Bound::Date(d)) => midnight(d) - day,
        None => series::earliest(now),
    };
    let before = match &filter.before {
        Some(Bound::Physical(t)) => *t,
        Some(Bound::Civil(t)) => t.and_utc() + day,
        Some(Bound::Date(d)) => midnight(d) + day,
        None => now + TimeDelta::seconds(1),
    };
    (from, before)
}

fn sample_time(person: &Person, at: DateTime<Utc>) -> Value {
    json!({
        "physicalTime": at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "utcOffset": offset_text(person, at),
        "civilTime": civil_time(person, at),
    })
}

fn data_source(person: &Person) -> Value {
    json!({
        "recordingMethod": "PASSIVELY_MEASURED",
        "platform": "FITBIT",
        "device": {"displayName": person.device_name, "formFactor": person.device_form_factor, "manufacturer": person.mark("manufacturer", "Google".into())},
    })
}

fn date_json(d: chrono::NaiveDate) -> Value {
    json!({"year": d.year(), "month": d.month(), "day": d.day()})
}

/// A reading as the API renders it.
fn render(person: &Person, reading: &Reading) -> Value {
    match reading {
        Reading::HeartRate { at, bpm } => json!({
            "dataSource": data_source(person),
            "heartRate": {
                "sampleTime": sample_time(person, *at),
                "beatsPerMinute": bpm.to_string(),
                "metadata": {"motionContext": if *bpm > person.resting_bpm + 20 { "ACTIVE" } else { "SEDENTARY" }, "sensorLocation": "WRIST"},
            },
        }),
        Reading::RestingHeartRate { day, bpm } => json!({
            "dataSource": data_source(person),
            "dailyRestingHeartRate": {
                "date": date_json(*day),
                "beatsPerMinute": bpm.to_string(),
                "dailyRestingHeartRateMetadata": {"calculationMethod": "WITH_SLEEP"},
            },
        }),
        Reading::Sleep { id, start, end, nap, stages } => {
            let [awake, light, deep, rem] = *stages;
            let mut stage_list = Vec::new();
            let mut t = *start;
            for (kind, minutes) in
                [("LIGHT", light / 2), ("DEEP", deep), ("REM", rem), ("AWAKE", awake), ("LIGHT", light - light / 2)]
            {
                if minutes == 0 {
                    continue;
                }
                let next = t + TimeDelta::minutes(i64::from(minutes));
                stage_list.push(json!({
                    "startTime": t.to_rfc3339_opts(SecondsFormat::Secs, true),
                    "startUtcOffset": offset_text(person, t),
                    "endTime": next.to_rfc3339_opts(SecondsFormat::Secs, true),
                    "endUtcOffset": offset_text(person, next),
                    "type": kind,
                }));
                t = next;
            }
            let summary =
                |kind: &str, minutes: u32| json!({"type": kind, "minutes": minutes.to_string(), "count": "1"});
            json!({
                "name": format!("users/{}/dataTypes/sleep/dataPoints/{id}", person.health_user_id),
                "dataSource": data_source(person),
                "sleep": {
                    "type": "STAGES",
                    "interval": {
                        "startTime": start.to_rfc3339_opts(SecondsFormat::Secs, true),
                        "startUtcOffset": offset_text(person, *start),
                        "endTime": end.to_rfc3339_opts(SecondsFormat::Secs, true),
                        "endUtcOffset": offset_text(person, *end),
                        "civilStartTime": civil_time(person, *start),
                        "civilEndTime": civil_time(person, *end),
                    },
                    "stages": stage_list,
                    "metadata": {"nap": nap, "processed": true, "manuallyEdited": false},
                    "summary": {
                        "minutesAsleep": (light + deep + rem).to_string(),
                        "minutesAwake": awake.to_string(),
                        "minutesInSleepPeriod": (light + deep + rem + awake).to_string(),
                        "minutesToFallAsleep": "0",
                        "minutesAfterWakeUp": "0",
                        "stagesSummary": [summary("AWAKE", awake), summary("LIGHT", light), summary("DEEP", deep), summary("REM", rem)],
                    },
                    "createTime": end.to_rfc3339_opts(SecondsFormat::Secs, true),
                    "updateTime": end.to_rfc3339_opts(SecondsFormat::Secs, true),
                },
            })
        }
        Reading::Weight { at, grams } => json!({
            "dataSource": {"recordingMethod": "ACTIVELY_MEASURED", "platform": "FITBIT", "device": {"displayName": "Aria Air", "formFactor": "SCALE", "manufacturer": "Google"}},
            "weight": {"sampleTime": sample_time(person, *at), "weightGrams": grams},
        }),
        Reading::BodyFat { at, percent } => json!({
            "dataSource": {"recordingMethod": "ACTIVELY_MEASURED", "platform": "FITBIT", "device": {"displayName": "Aria Air", "formFactor": "SCALE", "manufacturer": "Google"}},
            "bodyFat": {"sampleTime": sample_time(person, *at), "percentage": percent},
        }),
    }
}

/// Per data type: filter prefix, filter kind, default and maximum page size.
fn data_type_info(data_type: &str) -> Option<(&'static str, FilterKind, usize, usize)> {
    Some(match data_type {
        "heart-rate" => ("heart_rate", FilterKind::Sample, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        "daily-resting-heart-rate" => ("daily_resting_heart_rate", FilterKind::Daily, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        "sleep" => ("sleep", FilterKind::SessionEnd, 25, 25),
        "weight" => ("weight", FilterKind::Sample, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        "body-fat" => ("body_fat", FilterKind::Sample, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        _ => return None,
    })
}

/// `pageSize`: absent or 0 means the default, larger than the maximum is coerced.
fn page_size(query: &HashMap<String, String>, default: usize, max: usize) -> Option<usize> {
    match query.get("pageSize").map(|s| s.parse::<i64>()) {
        None | Some(Ok(0)) => Some(default),
        Some(Ok(n)) if n > 0 => Some((n as usize).min(max)),
        Some(_) => None,
    }
}

pub(crate) async fn list_data_points(
    State(state): State<Arc<SimState>>,
    Path((user, data_type)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let person = match authorize_for(&state, &headers, &user, &data_type) {
        Ok(p) => p,
        Err(denied) => return denied.into_response(),
    };
    if data_type == "heart-rate" && !query.contains_key("pageToken") {
        // Per person: a heart-rate read begins (tests see when each account was synced).
        state.note(format!("heart-rate-by/{}", person.name));
    }
    let Some((prefix, kind, default_size, max_size)) = data_type_info(&data_type) else {
        return invalid(&format!("The simulator does not serve data type '{data_type}'."));
    };
    let Some(page_size) = page_size(&query, default_size, max_size) else {
        return invalid("page_size must be a positive integer.");
    };
    let filter_text = query.get("filter").cloned().unwrap_or_default();
    let filter = match filter::parse(&filter_text, prefix, kind) {
        Ok(f) => f,
        Err(message) => return invalid(&message),
    };
    let now = state.clock.now();
    let (from, mut before) = physical_window(&filter, now);
    let token_scope = format!("{data_type}|{filter_text}");
    if let Some(token) = query.get("pageToken").filter(|t| !t.is_empty()) {
        match read_page_token(token, &token_scope) {
            Some(t) => before = before.min(t),
            None => return invalid("Invalid page token."),
        }
    }
    let seed = state.seed;
    let readings: Box<dyn Iterator<Item = Reading>> = match data_type.as_str() {
        "heart-rate" => Box::new(
            series::heart_rate(seed, person, state.hr_step, from, before, now)
                .into_iter()
                .filter(|r| !state.is_held_back(person.index, r.key())),
        ),
        "daily-resting-heart-rate" => Box::new(series::resting(seed, person, from, before, now).into_iter()),
        "sleep" => Box::new(series::sleep(seed, person, from, before, now).into_iter()),
        "weight" => {
            // Generated weigh-ins and those added at run time, newest first.
            let mut all = series::weight(seed, person, from, before, now);
            all.extend(
                state
                    .push
                    .weights(person.index, false, from, before, now)
                    .into_iter()
                    .map(|a| Reading::Weight { at: a.at, grams: a.grams }),
            );
            all.sort_by_key(|r| std::cmp::Reverse(r.key()));
            Box::new(all.into_iter())
        }
        _ => Box::new(series::body_fat(seed, person, from, before, now).into_iter().rev()),
    };
    let mut page: Vec<Reading> =
        readings.filter(|r| r.key() < before && matches(&filter, person, r)).take(page_size + 1).collect();
    let next = if page.len() > page_size {
        page.truncate(page_size);
        page.last().map(|r| page_token(&token_scope, r.key()))
    } else {
        None
    };
    state.count_n(&format!("points.{data_type}"), page.len() as u64);
    let points: Vec<Value> = page.iter().map(|r| render(person, r)).collect();
    let mut body = json!({ "dataPoints": points });
    if let Some(token) = next {
        body["nextPageToken"] = json!(token);
    }
    Json(body).into_response()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RollUpRequest {
    range: Option<RollUpRange>,
    window_size_days: Option<i64>,
}

#[derive(serde::Deserialize)]
struct RollUpRange {
    start: CivilDateTimeIn,
    end: CivilDateTimeIn,
}

#[derive(serde::Deserialize)]
struct CivilDateTimeIn {
    date: DateIn,
}

#[derive(serde::Deserialize)]
struct DateIn {
    year: i32,
    month: u32,
    day: u32,
}

/// `POST v4/users/{user}/dataTypes/{type}/dataPoints:dailyRollUp`.
pub(crate) async fn daily_roll_up(
    State(state): State<Arc<SimState>>,
    Path((user, data_type)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let person = match authorize_for(&state, &headers, &user, &data_type) {
        Ok(p) => p,
        Err(denied) => return denied.into_response(),
    };
    let max_days = match data_type.as_str() {
        "steps" | "distance" => 90,
        "active-minutes" | "total-calories" => 14,
        _ => return invalid(&format!("The simulator does not roll up data type '{data_type}'.")),
    };
    let Ok(request) = serde_json::from_slice::<RollUpRequest>(&body) else {
        return invalid("Invalid JSON payload received.");
    };
    let Some(range) = request.range else { return invalid("range is required.") };
    if request.window_size_days != Some(1) {
        return invalid("window_size_days must be set (only 1 is supported).");
    }
    let date = |d: &DateIn| chrono::NaiveDate::from_ymd_opt(d.year, d.month, d.day);
    let (Some(start), Some(end)) = (date(&range.start.date), date(&range.end.date)) else {
        return invalid("range contains an invalid date.");
    };
    let days = (end - start).num_days();
    if days <= 0 {
        return invalid("range.end must be after range.start.");
    }
    if days > max_days {
        return invalid(&format!("The range for {data_type} may span at most {max_days} days."));
    }
    let now = state.clock.now();
    let today = series::civil_date(person, now);
    let first = series::civil_date(person, series::earliest(now));
    let mut points = Vec::new();
    for day in start.iter_days().take_while(|d| *d < end) {
        if day < first || day > today {
            continue;
        }
        let Some(a) = series::activity(state.seed, person, day) else {
            continue; // zero-step days are omitted
        };
        let mut point = json!({
            "civilStartTime": {"date": date_json(day)},
            "civilEndTime": {"date": date_json(day.succ_opt().unwrap_or(day))},
        });
        point[camel(&data_type)] = match data_type.as_str() {
            "steps" => json!({"countSum": a.steps.to_string()}),
            "distance" => json!({"millimetersSum": a.distance_mm.to_string()}),
            "active-minutes" => json!({"activeMinutesRollupByActivityLevel": [
                {"activityLevel": "LIGHT", "activeMinutesSum": a.active_minutes[0].to_string()},
                {"activityLevel": "MODERATE", "activeMinutesSum": a.active_minutes[1].to_string()},
                {"activityLevel": "VIGOROUS", "activeMinutesSum": a.active_minutes[2].to_string()},
            ]}),
            _ => json!({"kcalSum": a.kcal}),
        };
        points.push(point);
    }
    state.count_n(&format!("points.rollup.{data_type}"), points.len() as u64);
    Json(json!({ "rollupDataPoints": points })).into_response()
}

fn camel(kebab: &str) -> &'static str {
    match kebab {
        "steps" => "steps",
        "distance" => "distance",
        "active-minutes" => "activeMinutes",
        _ => "totalCalories",
    }
}

/// `GET v4/users/{user}/pairedDevices`: default page 5, at most 100.
pub(crate) async fn paired_devices(
    State(state): State<Arc<SimState>>,
    Path(user): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let person = match authorize_for(&state, &headers, &user, "paired-devices") {
        Ok(p) => p,
        Err(denied) => return denied.into_response(),
    };
    let Some(size) = page_size(&query, 5, 100) else {
        return invalid("page_size must be a positive integer.");
    };
    let skip: usize = match query.get("pageToken").filter(|t| !t.is_empty()) {
        Some(t) => match t.strip_prefix("dev-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return invalid("Invalid page token."),
        },
        None => 0,
    };
    // Devices sync every quarter hour: the last sync time is stable within one.
    let now = state.clock.now();
    let now = DateTime::from_timestamp(now.timestamp() / 900 * 900, 0).unwrap_or(now);
    let x = super::super::people::mix_all(&[state.seed, person.index as u64, 0xDE71]);
    let mut devices = vec![json!({
        "name": person.mark("paired-device-name", format!("users/me/pairedDevices/{}", 100_000 + x % 900_000)),
        "deviceType": "TRACKER",
        "deviceVersion": person.device_name,
        "batteryStatus": "High",
        "batteryLevel": 40 + x % 60,
        "lastSyncTime": (now - TimeDelta::minutes((x % 50) as i64 + 1)).to_rfc3339_opts(SecondsFormat::Secs, true),
        "macAddress": person.mark("mac", format!("{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}", x & 0xff, (x >> 8) & 0xff, (x >> 16) & 0xff, (x >> 24) & 0xff, (x >> 32) & 0xff, (x >> 40) & 0xff)),
        "features": ["STEPS", "HEART_RATE", "SLEEP"],
    })];
    if x % 2 == 0 {
        devices.push(json!({
            "name": person.mark("paired-scale-name", format!("users/me/pairedDevices/{}", 100_000 + (x >> 20) % 900_000)),
            "deviceType": "SCALE",
            "deviceVersion": person.mark("scale-version", "Aria Air".into()),
            "batteryStatus": "Medium",
            "lastSyncTime": (now - TimeDelta::hours(20)).to_rfc3339_opts(SecondsFormat::Secs, true),
            "macAddress": person.mark("scale-mac", format!("{:02X}:00:5E:00:53:{:02X}", (x >> 48) & 0xff, (x >> 56) & 0xff)),
            "features": ["WEIGHT"],
        }));
    }
    let page: Vec<Value> = devices.iter().skip(skip).take(size).cloned().collect();
    let mut body = json!({ "pairedDevices": page });
    if skip + size < devices.len() {
        body["nextPageToken"] = json!(format!("dev-{}", skip + size));
    }
    Json(body).into_response()
}
