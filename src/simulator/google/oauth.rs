//! `POST /oauth2/token`: the refresh-token grant, with optional rotation and revocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::super::{CLIENT_ID, CLIENT_SECRET, Person, SimState};
use super::invalid_grant;

/// Scopes a simulated person granted.
pub(crate) const GRANTED_SCOPES: &str = "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly \
https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly \
https://www.googleapis.com/auth/googlehealth.sleep.readonly \
https://www.googleapis.com/auth/googlehealth.settings.readonly";

const ACCESS_LIFETIME_SECS: i64 = 3599;

/// Which tokens are valid, and for whom.
pub(crate) struct OAuthState {
    refresh: Mutex<HashMap<String, usize>>,
    access: Mutex<HashMap<String, (usize, DateTime<Utc>)>>,
    issued: AtomicU64,
    rotate: AtomicBool,
    /// (person, scope suffix) pairs the person did not grant.
    denied: Mutex<std::collections::HashSet<(usize, String)>>,
}

impl OAuthState {
    pub(crate) fn new(refresh: HashMap<String, usize>) -> Self {
        Self {
            refresh: Mutex::new(refresh),
            access: Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
            rotate: AtomicBool::new(false),
            denied: Mutex::default(),
        }
    }

    pub(crate) fn enrol(&self, people: &[Person]) {
        if let Ok(mut r) = self.refresh.lock() {
            for p in people {
                r.insert(p.refresh_token.clone(), p.index);
            }
        }
    }

    pub(crate) fn revoke(&self, person: usize) {
        if let Ok(mut r) = self.refresh.lock() {
            r.retain(|_, p| *p != person);
        }
        if let Ok(mut a) = self.access.lock() {
            a.retain(|_, (p, _)| *p != person);
        }
    }

    /// Withholds a scope (suffix after `googlehealth.`, e.g. `sleep.readonly`) from a person.
    pub(crate) fn deny_scope(&self, person: usize, scope: &str) {
        if let Ok(mut d) = self.denied.lock() {
            d.insert((person, scope.to_owned()));
        }
    }

    pub(crate) fn has_scope(&self, person: usize, scope: &str) -> bool {
        self.denied.lock().map(|d| !d.contains(&(person, scope.to_owned()))).unwrap_or(true)
    }

    pub(crate) fn set_rotation(&self, rotate: bool) {
        self.rotate.store(rotate, Ordering::SeqCst);
    }

    /// The person an access token belongs to, if it is valid now.
    pub(crate) fn person_for_access(&self, token: &str, now: DateTime<Utc>) -> Option<usize> {
        let a = self.access.lock().ok()?;
        let (person, expires) = a.get(token)?;
        (*expires > now).then_some(*person)
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({"error": error, "error_description": description}))).into_response()
}

pub(crate) async fn token(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Expected a form body.");
    }
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "The OAuth client was not found.");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {}
        Some("authorization_code") => return exchange_code(&state, &form),
        Some(_) => {
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type.");
        }
        None => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: grant_type");
        }
    }
    let Some(refresh_token) = form.get("refresh_token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: refresh_token");
    };
    let google = &state.google;
    let person = match google.refresh.lock() {
        Ok(r) => r.get(refresh_token).copied(),
        Err(_) => None,
    };
    let Some(person) = person else {
        return invalid_grant();
    };
    let n = google.issued.fetch_add(1, Ordering::SeqCst);
    let access_token = format!("ya29.sim-{person}-{n}");
    if let Ok(mut a) = google.access.lock() {
        a.insert(access_token.clone(), (person, state.clock.now() + TimeDelta::seconds(ACCESS_LIFETIME_SECS)));
    }
    let mut body = json!({
        "access_token": access_token,
        "expires_in": ACCESS_LIFETIME_SECS,
        "scope": GRANTED_SCOPES,
        "token_type": "Bearer",
    });
    if google.rotate.load(Ordering::SeqCst) {
        let new_refresh = format!("1//sim-rotated-{person}-{n}");
        if let Ok(mut r) = google.refresh.lock() {
            r.remove(refresh_token);
            r.insert(new_refresh.clone(), person);
        }
        body["refresh_token"] = json!(new_refresh);
    }
    Json(body).into_response()
}

/// The authorization-code grant: a code from the consent page plus the PKCE verifier
/// gives a new refresh token (offline access) and an access token.
fn exchange_code(state: &SimState, form: &HashMap<String, String>) -> Response {
    use super::super::consent::{CodeError, Provider};
    let get = |k: &str| form.get(k).map(String::as_str);
    let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing code or redirect_uri.");
    };
    let person = match state.consent.redeem(Provider::Google, code, redirect_uri, get("code_verifier")) {
        Ok(p) => p,
        Err(CodeError::Verifier) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid code verifier.");
        }
        Err(CodeError::RedirectMismatch) => {
            return oauth_error(StatusCode::BAD_REQUEST, "redirect_uri_mismatch", "Bad Request");
        }
        Err(CodeError::Unknown | CodeError::Expired) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Malformed auth code.");
        }
    };
    let google = &state.google;
    let n = google.issued.fetch_add(1, Ordering::SeqCst);
    let access_token = format!("ya29.sim-{person}-{n}");
    let refresh_token = format!("1//sim-consent-{person}-{n}");
    if let Ok(mut a) = google.access.lock() {
        a.insert(access_token.clone(), (person, state.clock.now() + TimeDelta::seconds(ACCESS_LIFETIME_SECS)));
    }
    if let Ok(mut r) = google.refresh.lock() {
        r.insert(refresh_token.clone(), person);
    }
    Json(json!({
        "access_token": access_token,
        "expires_in": ACCESS_LIFETIME_SECS,
        "refresh_token": refresh_token,
        "scope": GRANTED_SCOPES,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// `POST /revoke` with `token`: ends the grant the token belongs to (refresh or access).
pub(crate) async fn revoke(State(state): State<Arc<SimState>>, Form(form): Form<HashMap<String, String>>) -> Response {
    let Some(token) = form.get("token") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: token");
    };
    let google = &state.google;
    let person = google
        .refresh
        .lock()
        .ok()
        .and_then(|r| r.get(token).copied())
        .or_else(|| google.access.lock().ok().and_then(|a| a.get(token).map(|(p, _)| *p)));
    let Some(person) = person else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_token", "Token expired or revoked");
    };
    google.revoke(person);
    state.count("google.revoked");
    Json(json!({})).into_response()
}
