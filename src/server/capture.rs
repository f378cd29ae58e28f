//! The local capture listener (`capture.listen`): what a Wi-Fi scale's vendor server
//! answered, for scales whose host name points here (`shared/reference/local-scales.md`).
//! Its own listener: it never serves `/metrics` or the consent pages.
//!
//! - Fitbit Aria (`www.fitbit.com`): `GET /scale/register` (200, empty),
//!   `GET /scale/validate` (`T`), `POST /scale/upload` (the raw binary body, never
//!   form-decoded; answered with the clock and the scale's users).
//! - Withings WBS01 (`scalews.withings.net`): `/cgi-bin/once`, `/cgi-bin/session`
//!   (`new`, `delete`), `/cgi-bin/measure` (`action=store`; also as `/cgi-bin/v2/measure`,
//!   the WS-50's variant), `/cgi-bin/maint`.
//!
//! Readings of enrolled scales whose slot is assigned to a person are committed to the
//! outbox **before** the scale gets its success answer: a crash in between means the
//! scale resends, and the readings' keys make the resend publish nothing twice. Unknown
//! scales are refused (and counted); guests and unassigned slots are kept out of
//! publication (counted). Nothing that identifies the scale (MAC, auth code, serial, Wi-Fi
//! name, hash, session) is logged, stored or published.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, TimeDelta, Utc};
use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::normalize::Skipped;
use crate::pipeline::Pipeline;
use crate::sources::local::{self, aria, normalize, wbs01};
use crate::store::{Account, AccountStatus, SqlStore, Store};

/// How long a WBS01 session lives.
const SESSION_FOR: Duration = Duration::from_secs(600);
/// At most this many WBS01 sessions at once (anonymous posts cannot grow the memory).
const MAX_SESSIONS: usize = 1000;
/// The weight window a slot with no weight yet gets (g).
const ANY_WEIGHT: (u32, u32) = (5_000, 250_000);

/// What the capture handlers share.
pub struct Capture {
    pub store: Arc<SqlStore>,
    pub pipeline: Arc<Pipeline>,
    pub clock: Clock,
    /// WBS01 sessions: id → (scale id, started).
    sessions: Mutex<HashMap<String, (i64, Instant)>>,
}

impl Capture {
    pub fn new(store: Arc<SqlStore>, pipeline: Arc<Pipeline>, clock: Clock) -> Self {
        Self { store, pipeline, clock, sessions: Mutex::new(HashMap::new()) }
    }
}

/// Binds `listen` (an error names `capture.listen`) and serves until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    capture: Capture,
    shutdown: crate::retry::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, std::io::Error> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen} (capture.listen): {e}")))?;
    tracing::info!(address = %listener.local_addr()?, "capturing Wi-Fi scale uploads");
    let app = router(Arc::new(capture));
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "capture server failed");
        }
    }))
}

/// The routes (public for tests that serve it on a listener of their own).
pub fn router(capture: Arc<Capture>) -> Router {
    Router::new()
        .route("/scale/register", get(|| async { StatusCode::OK }))
        .route("/scale/validate", get(|| async { "T" }))
        .route("/scale/upload", post(aria_upload))
        .route("/cgi-bin/once", post(wbs01_once))
        .route("/cgi-bin/session", post(wbs01_session))
        .route("/cgi-bin/measure", post(wbs01_measure))
        // The WS-50's variant of the same call (grouped, mantissa/exponent items), which
        // the parser takes as well.
        .route("/cgi-bin/v2/measure", post(wbs01_measure))
        .route("/cgi-bin/maint", post(|| async { json(wbs01::ok_answer(None)) }))
        .layer(axum::extract::DefaultBodyLimit::max(aria::MAX_BODY.max(64 * 1024)))
        .with_state(capture)
}

fn count_upload(kind: &'static str, result: &'static str) {
    metrics::counter!("wearbridge_capture_uploads_total", "scale" => kind, "result" => result).increment(1);
}

fn count_readings(result: &'static str, n: u64) {
    metrics::counter!("wearbridge_capture_readings_total", "result" => result).increment(n);
}

fn json(value: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], value.to_string()).into_response()
}

/// A MAC address as 6 raw bytes → `aa:bb:cc:dd:ee:ff`.
fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Answers 503 (the scale keeps its readings and sends them again), counted and logged.
fn unavailable(kind: &'static str, error: &dyn std::fmt::Display) -> Response {
    count_upload(kind, "store_error");
    tracing::warn!(%error, scale = kind, "upload not taken: the store failed; the scale keeps its readings");
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

/// A scale's slots whose person has an active `local` account, with that account (a
/// slot of someone who left is as good as unassigned), by slot. Read once per upload.
async fn live_slots(capture: &Capture, scale_id: i64) -> Result<HashMap<i64, Account>, crate::store::StoreError> {
    let slots = capture.store.scale_slots(scale_id).await?;
    let accounts = capture.store.accounts().await?;
    Ok(slots
        .into_iter()
        .filter_map(|(slot, person)| {
            let account = accounts
                .iter()
                .find(|a| a.person == person && a.provider == local::PROVIDER && a.status == AccountStatus::Active)?;
            Some((slot, account.clone()))
        })
        .collect())
}

/// A reading as a record, or why it is not one.
type Read = Result<anonymizer::Record, Skipped>;

/// One reading bound for a person: slot, record (or why not), grams and the scale's time
/// of the reading.
type Bound = (i64, Read, i64, i64);

/// Commits each person's records (their `local` account, from `slots`), then remembers
/// each slot's last weight. `Err`: nothing may be acknowledged (the scale keeps its
/// readings).
async fn commit(
    capture: &Capture,
    scale_id: i64,
    slots: &HashMap<i64, Account>,
    bound: Vec<Bound>,
    now: DateTime<Utc>,
) -> Result<u64, String> {
    let mut by_account: BTreeMap<i64, (&Account, Vec<Read>)> = BTreeMap::new();
    // Each slot's newest weight (a cache is sent oldest first, after the newest).
    let mut last: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (slot, record, grams, time) in bound {
        let Some(account) = slots.get(&slot) else { continue };
        if record.is_ok() && last.get(&slot).is_none_or(|(t, _)| *t < time) {
            last.insert(slot, (time, grams));
        }
        by_account.entry(account.id).or_insert_with(|| (account, Vec::new())).1.push(record);
    }
    let mut published = 0;
    let cursor = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (account, records) in by_account.into_values() {
        published +=
            capture.pipeline.deliver_captured(account, records, cursor.clone()).await.map_err(|e| e.to_string())?;
    }
    for (slot, (_, grams)) in last {
        capture.store.set_scale_weight(scale_id, slot, grams).await.map_err(|e| e.to_string())?;
    }
    Ok(published)
}

/// The scale's users: each assigned slot, with a window around its last weight.
async fn aria_users(
    capture: &Capture,
    scale_id: i64,
    slots: &HashMap<i64, Account>,
) -> Result<Vec<aria::ScaleUser>, crate::store::StoreError> {
    let weights: HashMap<i64, i64> = capture.store.scale_weights(scale_id).await?.into_iter().collect();
    let mut slots: Vec<(i64, String)> = slots.iter().map(|(slot, a)| (*slot, a.person.clone())).collect();
    slots.sort();
    Ok(slots
        .into_iter()
        .filter_map(|(slot, person)| {
            let id = u32::try_from(slot).ok()?;
            let (min_grams, max_grams) = match weights.get(&slot).and_then(|g| u32::try_from(*g).ok()) {
                Some(g) => (g.saturating_sub(4_000), g.saturating_add(4_000)),
                None => ANY_WEIGHT,
            };
            Some(aria::ScaleUser { id, name: person, min_grams, max_grams })
        })
        .collect())
}

/// `POST /scale/upload`: the Aria's binary upload.
async fn aria_upload(State(capture): State<Arc<Capture>>, body: Bytes) -> Response {
    const KIND: &str = "aria";
    let upload = match aria::parse(&body) {
        Ok(u) => u,
        Err(error) => {
            count_upload(KIND, "malformed");
            tracing::warn!(%error, "Aria upload refused");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    let now = capture.clock.now();
    let scale = match capture.store.scale_by_mac(KIND, &mac_text(&upload.mac)).await {
        Ok(Some(scale)) => scale,
        Ok(None) => {
            count_upload(KIND, "unknown_scale");
            tracing::warn!("an upload from a scale nobody enrolled (wearbridge scales add); refused");
            return StatusCode::FORBIDDEN.into_response();
        }
        Err(error) => {
            count_upload(KIND, "store_error");
            tracing::warn!(%error, "Aria upload not taken: the store failed; the scale keeps its readings");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    // The MAC is broadcast over the air; the auth code the scale was set up with is not.
    match capture.store.check_scale_auth(scale.id, &upload.auth).await {
        Ok(true) => {}
        Ok(false) => {
            count_upload(KIND, "auth_mismatch");
            tracing::warn!(scale = %scale.name, "an upload with another auth code than the scale's first; refused");
            return StatusCode::FORBIDDEN.into_response();
        }
        Err(error) => return unavailable(KIND, &error),
    }
    let slots = match live_slots(&capture, scale.id).await {
        Ok(s) => s,
        Err(error) => return unavailable(KIND, &error),
    };
    let scale_now = DateTime::from_timestamp(i64::from(upload.scale_time), 0).unwrap_or(now);
    let kept = TimeDelta::seconds(scale.correction_s);
    let correction = normalize::clock_correction(kept, scale_now, now);
    if correction != kept {
        tracing::warn!(scale = %scale.name, minutes = correction.num_minutes(), "the scale's clock is off: its readings are corrected");
        if let Err(error) = capture.store.set_scale_correction(scale.id, correction.num_seconds()).await {
            return unavailable(KIND, &error);
        }
    }
    let scale = scale.id;
    let mut bound = Vec::new();
    let (mut guests, mut unassigned) = (0u64, 0u64);
    for r in &upload.readings {
        if r.user == 0 {
            guests += 1;
            continue;
        }
        let Some(account) = slots.get(&i64::from(r.user)) else {
            unassigned += 1;
            continue;
        };
        let at = DateTime::from_timestamp(i64::from(r.time), 0).map(|t| t + correction).unwrap_or(now);
        let kg = f64::from(r.weight_grams) / 1000.0;
        let record = normalize::weight(&account.person, normalize::aria_key(r), kg, at, now);
        bound.push((i64::from(r.user), record, i64::from(r.weight_grams), i64::from(r.time)));
    }
    count_readings("guest", guests);
    count_readings("unassigned", unassigned);
    let taken = bound.iter().filter(|b| b.1.is_ok()).count() as u64;
    count_readings("skipped", bound.len() as u64 - taken);
    if let Err(error) = commit(&capture, scale, &slots, bound, now).await {
        count_upload(KIND, "store_error");
        tracing::warn!(%error, "Aria upload not taken; the scale keeps its readings and sends them again");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    count_readings("taken", taken);
    count_upload(KIND, if upload.readings.is_empty() { "settings" } else { "ok" });
    let users = match aria_users(&capture, scale, &slots).await {
        Ok(u) => u,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let server_time = u32::try_from(now.timestamp()).unwrap_or(u32::MAX);
    ([(header::CONTENT_TYPE, "application/octet-stream;charset=UTF-8")], aria::response(server_time, &users))
        .into_response()
}

/// A random `u64`.
fn random() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// `POST /cgi-bin/once`.
async fn wbs01_once() -> Response {
    json(wbs01::once_answer(random()))
}

/// `POST /cgi-bin/session`: `action=new` (the scale by its MAC in `auth`) or `delete`.
async fn wbs01_session(State(capture): State<Arc<Capture>>, body: Bytes) -> Response {
    const KIND: &str = "wbs01";
    let fields = wbs01::form(&body);
    match fields.get("action").map(String::as_str) {
        Some("delete") => {
            if let (Some(id), Ok(mut live)) = (fields.get("sessionid"), capture.sessions.lock()) {
                live.remove(id);
            }
            json(wbs01::ok_answer(None))
        }
        Some("new") => {
            let Some(mac) = fields.get("auth").and_then(|a| wbs01::mac(a)) else {
                count_upload(KIND, "malformed");
                return (StatusCode::BAD_REQUEST, json(wbs01::error_answer())).into_response();
            };
            let scale = match capture.store.scale_by_mac(KIND, &mac).await {
                Ok(Some(scale)) => scale.id,
                Ok(None) => {
                    count_upload(KIND, "unknown_scale");
                    tracing::warn!("a session from a scale nobody enrolled (wearbridge scales add); refused");
                    return (StatusCode::FORBIDDEN, json(wbs01::error_answer())).into_response();
                }
                Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
            };
            let slots = match live_slots(&capture, scale).await {
                Ok(s) => s,
                Err(error) => return unavailable(KIND, &error),
            };
            let weights: HashMap<i64, i64> = match capture.store.scale_weights(scale).await {
                Ok(w) => w.into_iter().collect(),
                Err(error) => return unavailable(KIND, &error),
            };
            let mut slots: Vec<(i64, String)> = slots.into_iter().map(|(slot, a)| (slot, a.person)).collect();
            slots.sort();
            let users: Vec<wbs01::SessionUser> = slots
                .into_iter()
                .filter_map(|(slot, person)| {
                    Some(wbs01::SessionUser {
                        id: u64::try_from(slot).ok()?,
                        short_name: person
                            .chars()
                            .filter(char::is_ascii_alphanumeric)
                            .take(3)
                            .collect::<String>()
                            .to_uppercase(),
                        weight_kg: weights.get(&slot).map_or(0.0, |g| *g as f64 / 1000.0),
                    })
                })
                .collect();
            let (r, s) = (random(), random());
            let id = format!("{}-{:08x}-{:08x}", r % 10_000, r >> 32, s >> 32);
            {
                let Ok(mut sessions) = capture.sessions.lock() else {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                };
                sessions.retain(|_, (_, at)| at.elapsed() < SESSION_FOR);
                if sessions.len() >= MAX_SESSIONS {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                sessions.insert(id.clone(), (scale, Instant::now()));
            }
            json(wbs01::session_answer(&id, &users, capture.clock.now().timestamp()))
        }
        _ => {
            count_upload(KIND, "malformed");
            (StatusCode::BAD_REQUEST, json(wbs01::error_answer())).into_response()
        }
    }
}

/// `POST /cgi-bin/measure` `action=store`: one reading of one user.
async fn wbs01_measure(State(capture): State<Arc<Capture>>, body: Bytes) -> Response {
    const KIND: &str = "wbs01";
    let stored = match wbs01::parse_store(&wbs01::form(&body)) {
        Ok(s) => s,
        Err(error) => {
            count_upload(KIND, "malformed");
            tracing::warn!(%error, "WBS01 measure refused");
            return (StatusCode::BAD_REQUEST, json(wbs01::error_answer())).into_response();
        }
    };
    let scale = match capture.store.scale_by_mac(KIND, &stored.mac).await {
        Ok(Some(scale)) => scale.id,
        Ok(None) => {
            count_upload(KIND, "unknown_scale");
            return (StatusCode::FORBIDDEN, json(wbs01::error_answer())).into_response();
        }
        Err(error) => return unavailable(KIND, &error),
    };
    // The MAC is broadcast over the air: a measure must come in a session this scale
    // opened (sessions live in this process; a restart in between loses that reading).
    let in_session = capture
        .sessions
        .lock()
        .is_ok_and(|s| s.get(&stored.session).is_some_and(|(id, at)| *id == scale && at.elapsed() < SESSION_FOR));
    if !in_session {
        count_upload(KIND, "unknown_session");
        return (StatusCode::FORBIDDEN, json(wbs01::error_answer())).into_response();
    }
    if !stored.not_understood.is_empty() {
        let named: Vec<&String> = stored.not_understood.iter().take(10).collect();
        tracing::info!(not_understood = ?named, "WBS01 measure: parts not understood (no values logged)");
    }
    let now = capture.clock.now();
    let slots = match live_slots(&capture, scale).await {
        Ok(s) => s,
        Err(error) => return unavailable(KIND, &error),
    };
    let slot = i64::try_from(stored.user).unwrap_or(-1);
    let Some(account) = slots.get(&slot).filter(|_| stored.user != 0) else {
        count_readings(if stored.user == 0 { "guest" } else { "unassigned" }, 1);
        return json(wbs01::ok_answer(Some(now.timestamp())));
    };
    let mut bound = Vec::new();
    for m in stored.measures.iter().filter(|m| m.kind == 1) {
        let at = DateTime::from_timestamp(m.time, 0).unwrap_or(now);
        let kg = m.quantity().unwrap_or(f64::NAN);
        let grams = if kg.is_finite() { (kg * 1000.0).round() as i64 } else { 0 };
        let record = normalize::weight(&account.person, normalize::wbs01_key(stored.user, m.time, m), kg, at, now);
        bound.push((slot, record, grams, m.time));
    }
    let taken = bound.iter().filter(|b| b.1.is_ok()).count() as u64;
    count_readings("skipped", bound.len() as u64 - taken);
    if let Err(error) = commit(&capture, scale, &slots, bound, now).await {
        count_upload(KIND, "store_error");
        tracing::warn!(%error, "WBS01 measure not taken");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    count_readings("taken", taken);
    count_upload(KIND, "ok");
    json(wbs01::ok_answer(Some(now.timestamp())))
}
