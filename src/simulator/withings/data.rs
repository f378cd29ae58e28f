//! Withings data actions: `getmeas`, `getactivity`, `getintradayactivity`, sleep
//! `getsummary`, `getdevice`. Readings are pure functions of (seed, person, day), like the
//! Google fake's.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Datelike, Days, NaiveDate, TimeDelta, Utc};
use serde_json::{Value, json};

use super::super::google::series::{civil_date, local_to_utc};
use super::super::people::mix_all;
use super::super::{Person, SimState};
use super::{Reject, authorize, ok, status};
use axum::response::IntoResponse;

/// Days of history a simulated person has.
const HISTORY_DAYS: u64 = 400;
const MEAS_PAGE: usize = 50;
const LIST_PAGE: usize = 30;

type Params = HashMap<String, String>;

fn h(seed: u64, person: &Person, parts: &[u64]) -> u64 {
    let mut all = vec![seed, person.index as u64, 0x5749];
    all.extend_from_slice(parts);
    mix_all(&all)
}

fn day_no(d: NaiveDate) -> u64 {
    d.num_days_from_ce() as u64
}

fn invalid(key: &str) -> Reject {
    Reject(503, format!("Invalid Params: invalid {key}"))
}

fn unix(p: &Params, key: &str) -> Result<Option<i64>, Reject> {
    p.get(key).map(|v| v.parse().map_err(|_| invalid(key))).transpose()
}

fn ymd(p: &Params, key: &str) -> Result<Option<NaiveDate>, Reject> {
    p.get(key).map(|v| v.parse().map_err(|_| invalid(key))).transpose()
}

fn offset(p: &Params) -> Result<usize, Reject> {
    p.get("offset").map(|v| v.parse().map_err(|_| invalid("offset"))).transpose().map(Option::unwrap_or_default)
}

/// Days with data: from the start of the history to today (the person's civil date).
fn days(person: &Person, now: DateTime<Utc>) -> impl Iterator<Item = NaiveDate> {
    let today = civil_date(person, now);
    let first = today - Days::new(HISTORY_DAYS);
    first.iter_days().take_while(move |d| *d <= today)
}

/// `(startdateymd, enddateymd, lastupdate, offset)` of a list action.
type ListParams = (Option<NaiveDate>, Option<NaiveDate>, Option<i64>, usize);

/// `startdateymd`/`enddateymd` or `lastupdate`, and `offset`, of a list action.
fn list_params(p: &Params) -> Result<ListParams, Reject> {
    let (from, to, last) = (ymd(p, "startdateymd")?, ymd(p, "enddateymd")?, unix(p, "lastupdate")?);
    if last.is_none() && (from.is_none() || to.is_none()) {
        return Err(Reject(503, "Invalid Params: startdateymd and enddateymd, or lastupdate, are required".into()));
    }
    Ok((from, to, last, offset(p)?))
}

/// One `more`/`offset` page of `all` under `key`, counted as `points.withings.<action>`.
fn list_page(state: &SimState, action: &str, key: &str, all: Vec<Value>, offset: usize, size: usize) -> Value {
    let total = all.len();
    let page: Vec<Value> = all.into_iter().skip(offset).take(size).collect();
    let more = offset + page.len() < total;
    state.count_n(&format!("points.withings.{action}"), page.len() as u64);
    json!({ key: page, "more": more, "offset": if more { offset + size } else { 0 } })
}

fn device_id(seed: u64, person: &Person, kind: u64) -> String {
    if person.canary {
        return format!("CANARYdevice{kind}x{}", person.index);
    }
    format!(
        "{:016x}{:016x}{:08x}",
        h(seed, person, &[kind, 1]),
        h(seed, person, &[kind, 2]),
        h(seed, person, &[kind, 3]) as u32
    )
}

/// One measure group before filtering.
struct Group {
    grpid: u64,
    attrib: u8,
    category: u8,
    date: i64,
    modified: i64,
    device: u64,
    /// (type, value, unit)
    measures: Vec<(u32, i64, i32)>,
}

fn groups(seed: u64, person: &Person, now: DateTime<Utc>) -> Vec<Group> {
    let mut out = Vec::new();
    let at = |day: NaiveDate, hour: u32, x: u64| {
        local_to_utc(person, day.and_hms_opt(hour, 0, 0).unwrap_or_default() + TimeDelta::seconds((x % 3000) as i64))
    };
    for day in days(person, now) {
        let x = h(seed, person, &[day_no(day)]);
        let mut push = |kind: u64, attrib: u8, date: DateTime<Utc>, device: u64, measures: Vec<(u32, i64, i32)>| {
            if date > now {
                return;
            }
            let created = date.timestamp() + 60;
            let edited = h(seed, person, &[day_no(day), kind, 9]) % 5 == 0;
            let modified = if edited { (created + 172_800).min(now.timestamp()) } else { created };
            out.push(Group {
                grpid: if person.canary { super::super::CANARY_ID_BASE } else { 4_000_000_000 }
                    + h(seed, person, &[day_no(day), kind]) % 999_999_999,
                attrib,
                category: 1,
                date: date.timestamp(),
                modified,
                device,
                measures,
            });
        };
        let kg = 60.0 + (person.resting_bpm as f64 - 52.0) + ((x >> 8) % 1500) as f64 / 1000.0;
        if x % 4 != 0 {
            let fat_ratio = 18.0 + ((x >> 20) % 80) as f64 / 10.0;
            let fat_mass = kg * fat_ratio / 100.0;
            push(
                1,
                0,
                at(day, 7, x),
                1,
                vec![
                    (1, (kg * 1000.0).round() as i64, -3),
                    (6, (fat_ratio * 100.0).round() as i64, -2),
                    (8, (fat_mass * 1000.0).round() as i64, -3),
                    (5, ((kg - fat_mass) * 1000.0).round() as i64, -3),
                    (76, ((kg - fat_mass) * 0.93 * 1000.0).round() as i64, -3),
                    (77, ((kg - fat_mass) * 0.7 * 1000.0).round() as i64, -3),
                    (88, ((kg - fat_mass) * 0.05 * 1000.0).round() as i64, -3),
                    (11, i64::from(person.resting_bpm + 8), 0),
                    (91, 60 + (x >> 32) as i64 % 40, -1),
                ],
            );
        }
        if (x >> 4) % 3 == 0 {
            let sys = 110 + (x >> 36) % 30;
            push(
                2,
                0,
                at(day, 20, x >> 3),
                2,
                vec![(10, sys as i64, 0), (9, (sys * 2 / 3) as i64, 0), (11, i64::from(person.resting_bpm + 5), 0)],
            );
        }
        if (x >> 6) % 7 == 0 {
            push(3, 2, at(day, 8, x >> 5), 0, vec![(71, 3660 + (x >> 40) as i64 % 60, -2)]);
        }
        push(
            4,
            0,
            at(day, 3, x >> 7),
            3,
            vec![(54, 95 + (x >> 44) as i64 % 5, 0), (73, 330 + (x >> 48) as i64 % 20, -1)],
        );
        if day.weekday() == chrono::Weekday::Mon {
            push(5, 0, at(day, 9, x >> 9), 3, vec![(123, 38 + (x >> 50) as i64 % 8, 0)]);
        }
        if (x >> 10) % 10 == 0 {
            // Somebody else stepped on the scale: ambiguous owner.
            push(6, 1, at(day, 18, x >> 11), 1, vec![(1, 81_250, -3)]);
        }
    }
    out
}

pub(crate) async fn measure(State(state): State<Arc<SimState>>, headers: HeaderMap, Form(p): Form<Params>) -> Response {
    if p.get("action").map(String::as_str) != Some("getmeas") {
        return status(2554, "Unknown action");
    }
    let person = match authorize(&state, &headers) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let (start, end, last) = match (unix(&p, "startdate"), unix(&p, "enddate"), unix(&p, "lastupdate")) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(r), ..) | (_, Err(r), _) | (.., Err(r)) => return r.into_response(),
    };
    let offset = match offset(&p) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let category: u8 = p.get("category").and_then(|c| c.parse().ok()).unwrap_or(1);
    let types: Option<Vec<u32>> = p
        .get("meastypes")
        .or_else(|| p.get("meastype"))
        .map(|t| t.split(',').filter_map(|x| x.trim().parse().ok()).collect());
    let now = state.clock.now();
    let mut all: Vec<Value> = Vec::new();
    let mut grps = groups(state.seed, person, now);
    // Weigh-ins added at run time (a scale that just synced).
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    for added in state.push.weights(person.index, true, epoch, now + TimeDelta::seconds(1), now) {
        grps.push(Group {
            grpid: 5_000_000_000 + added.at.timestamp().unsigned_abs() % 999_999_999,
            attrib: 0,
            category: 1,
            date: added.at.timestamp(),
            modified: added.added_at.timestamp().max(added.at.timestamp()),
            device: 1,
            measures: vec![(1, added.grams.round() as i64, -3)],
        });
    }
    if category == 2 {
        // A weight goal.
        grps = vec![Group {
            grpid: 1,
            attrib: 0,
            category: 2,
            date: now.timestamp() - 86_400 * 30,
            modified: now.timestamp() - 86_400 * 30,
            device: 0,
            measures: vec![(1, 70_000, -3)],
        }];
    }
    grps.sort_by_key(|g| std::cmp::Reverse(g.date));
    for g in grps {
        if last.is_some_and(|l| g.modified < l) || start.is_some_and(|s| g.date < s) || end.is_some_and(|e| g.date > e)
        {
            continue;
        }
        let measures: Vec<Value> = g
            .measures
            .iter()
            .filter(|(t, _, _)| types.as_ref().is_none_or(|ts| ts.contains(t)))
            .map(|(t, v, u)| json!({"value": v, "type": t, "unit": u, "algo": 0, "fm": 131}))
            .collect();
        if measures.is_empty() {
            continue;
        }
        let device = (g.device > 0).then(|| device_id(state.seed, person, g.device));
        all.push(json!({
            "grpid": g.grpid,
            "attrib": g.attrib,
            "date": g.date,
            "created": g.date + 60,
            "modified": g.modified,
            "category": g.category,
            "deviceid": device,
            "hash_deviceid": device,
            "measures": measures,
            "modelid": if g.device == 1 { 5 } else { 44 },
            "model": person.mark("model", if g.device == 1 { "Body+" } else { "BPM Connect" }.into()),
            "comment": if person.canary { json!(person.mark("comment", String::new())) } else { Value::Null },
            "timezone": person.time_zone.name(),
        }));
    }
    let mut body = list_page(&state, "getmeas", "measuregrps", all, offset, MEAS_PAGE);
    // getmeas writes `more` as 0/1 where the v2 actions write a boolean.
    body["more"] = json!(i32::from(body["more"] == true));
    body["updatetime"] = json!(now.timestamp());
    body["timezone"] = json!(person.time_zone.name());
    ok(body)
}

fn activity(seed: u64, person: &Person, day: NaiveDate, now: DateTime<Utc>) -> Value {
    let x = h(seed, person, &[day_no(day), 20]);
    let today = civil_date(person, now);
    let fraction = if day == today {
        let midnight = local_to_utc(person, day.and_hms_opt(0, 0, 0).unwrap_or_default());
        ((now - midnight).num_seconds() as f64 / 86_400.0).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let steps = ((3_000 + (x >> 8) % 11_000) as f64 * fraction).round() as u64;
    let moderate = ((x >> 24) % 2_400) as f64 * fraction;
    let intense = ((x >> 32) % 1_200) as f64 * fraction;
    let modified = if day == today {
        now.timestamp()
    } else {
        local_to_utc(person, day.and_hms_opt(23, 50, 0).unwrap_or_default()).timestamp() + 3_600
    };
    json!({
        "date": day.to_string(),
        "timezone": person.time_zone.name(),
        "deviceid": device_id(seed, person, 4),
        "hash_deviceid": device_id(seed, person, 4),
        "brand": 18,
        "is_tracker": true,
        "steps": steps,
        "distance": steps as f64 * 0.74,
        "elevation": (x >> 40) % 12,
        "soft": (((x >> 44) % 9_000) as f64 * fraction).round(),
        "moderate": moderate.round(),
        "intense": intense.round(),
        "active": (moderate + intense).round(),
        "calories": (steps as f64 * 0.04 * 10.0).round() / 10.0,
        "totalcalories": 1_550.0 + steps as f64 * 0.045,
        "hr_average": person.resting_bpm + 18,
        "hr_min": person.resting_bpm - 3,
        "hr_max": person.resting_bpm + 90,
        "modified": modified,
        "model": person.mark("activity-model", "ScanWatch".into()),
        "modelid": 93,
    })
}

pub(crate) async fn measure_v2(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Form(p): Form<Params>,
) -> Response {
    let action = p.get("action").cloned().unwrap_or_default();
    if action != "getactivity" && action != "getintradayactivity" {
        return status(2554, "Unknown action");
    }
    let person = match authorize(&state, &headers) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let now = state.clock.now();
    if action == "getintradayactivity" {
        let (Ok(start), Ok(end)) = (unix(&p, "startdate"), unix(&p, "enddate")) else {
            return status(503, "Invalid Params: invalid startdate or enddate");
        };
        let start = start.unwrap_or(now.timestamp() - 86_400);
        // Only the first 24 hours of a longer range are served.
        let end = end.unwrap_or(now.timestamp()).min(start + 86_400).min(now.timestamp());
        let mut series = serde_json::Map::new();
        let mut slot = start.div_euclid(600) * 600;
        while slot <= end {
            let x = h(state.seed, person, &[slot as u64, 30]);
            let t = slot + (x % 60) as i64;
            if t >= start && t <= end && x % 50 != 0 {
                series.insert(
                    t.to_string(),
                    json!({
                        "deviceid": device_id(state.seed, person, 4),
                        "model": "ScanWatch",
                        "model_id": 93,
                        "heart_rate": person.resting_bpm + 5 + ((x >> 8) % 30) as u32,
                    }),
                );
            }
            slot += 600;
        }
        state.count_n("points.withings.getintradayactivity", series.len() as u64);
        return ok(json!({ "series": series }));
    }
    let (from, to, last, offset) = match list_params(&p) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let all: Vec<Value> = days(person, now)
        .filter(|d| from.is_none_or(|f| *d >= f) && to.is_none_or(|t| *d <= t))
        .map(|d| activity(state.seed, person, d, now))
        .filter(|a| last.is_none_or(|l| a["modified"].as_i64().unwrap_or(0) >= l))
        .collect();
    ok(list_page(&state, "getactivity", "activities", all, offset, LIST_PAGE))
}

pub(crate) async fn sleep(State(state): State<Arc<SimState>>, headers: HeaderMap, Form(p): Form<Params>) -> Response {
    if p.get("action").map(String::as_str) != Some("getsummary") {
        return status(2554, "Unknown action");
    }
    let person = match authorize(&state, &headers) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let (from, to, last, offset) = match list_params(&p) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let now = state.clock.now();
    let mut all = Vec::new();
    for evening in days(person, now) {
        let x = h(state.seed, person, &[day_no(evening), 40]);
        let start = local_to_utc(
            person,
            evening.and_hms_opt(22, 45, 0).unwrap_or_default() + TimeDelta::minutes((x % 80) as i64),
        );
        let end = start + TimeDelta::minutes(330 + ((x >> 8) % 180) as i64);
        let modified = end.timestamp() + 600;
        if modified > now.timestamp() {
            continue;
        }
        let woke = civil_date(person, end);
        if from.is_some_and(|f| woke < f) || to.is_some_and(|t| woke > t) || last.is_some_and(|l| modified < l) {
            continue;
        }
        let total = (end - start).num_seconds();
        let wake = 600 + ((x >> 16) % 2_400) as i64;
        let asleep = total - wake;
        let deep = asleep / 5;
        let rem = asleep / 5;
        all.push(json!({
            "id": if person.canary { super::super::CANARY_ID_BASE } else { 2_000_000_000 } + x % 999_999_999,
            "timezone": person.time_zone.name(),
            "model": 32,
            "model_id": 63,
            "hash_deviceid": device_id(state.seed, person, 5),
            "startdate": start.timestamp(),
            "enddate": end.timestamp(),
            "date": woke.to_string(),
            "created": modified,
            "modified": modified,
            "completed": true,
            "data": {
                "wakeupduration": wake,
                "wakeupcount": 1 + (x >> 24) % 4,
                "durationtosleep": 300 + (x >> 28) % 900,
                "total_sleep_time": asleep,
                "sleep_efficiency": (asleep as f64 / total as f64 * 100.0).round() / 100.0,
                "deepsleepduration": deep,
                "remsleepduration": rem,
                "lightsleepduration": asleep - deep - rem,
                "hr_average": person.resting_bpm + 2,
                "hr_min": person.resting_bpm - 4,
                "hr_max": person.resting_bpm + 25,
                "rr_average": 14,
                "sleep_score": 60 + (x >> 32) % 35,
            },
        }));
    }
    ok(list_page(&state, "getsummary", "series", all, offset, LIST_PAGE))
}

pub(crate) async fn user(State(state): State<Arc<SimState>>, headers: HeaderMap, Form(p): Form<Params>) -> Response {
    if p.get("action").map(String::as_str) != Some("getdevice") {
        return status(2554, "Unknown action");
    }
    let person = match authorize(&state, &headers) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    // Devices connect every quarter hour: the last session is stable within one.
    let now = state.clock.now().timestamp() / 900 * 900;
    let seed = state.seed;
    let device = |kind: u64, ty: &str, model: &str, model_id: u32, battery: &str| {
        json!({
            "type": ty,
            "battery": battery,
            "model": person.mark("device-model", model.into()),
            "model_id": model_id,
            "timezone": person.time_zone.name(),
            "first_session_date": now - 86_400 * 500,
            "last_session_date": now - (h(seed, person, &[kind, 60]) % 40) as i64 * 60,
            "deviceid": device_id(seed, person, kind),
            "hash_deviceid": device_id(seed, person, kind),
        })
    };
    let mut devices =
        vec![device(4, "Activity Tracker", "ScanWatch", 93, "high"), device(1, "Scale", "Body+", 5, "medium")];
    if person.index % 2 == 0 {
        devices.push(device(2, "Blood Pressure Monitor", "BPM Connect", 44, "low"));
        devices.push(device(5, "Sleep Monitor", "Sleep Analyzer", 63, "high"));
    }
    ok(json!({ "devices": devices }))
}
