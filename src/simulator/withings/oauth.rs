//! `POST /v2/oauth2` `action=requesttoken`: the refresh-token grant with rotation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use super::super::{CLIENT_ID, CLIENT_SECRET, Person, SimState};
use super::{ok, status};

const ACCESS_LIFETIME_SECS: i64 = 10_800;
/// How long a replaced refresh token keeps working if the new access token is not used.
const GRACE_HOURS: i64 = 8;

#[derive(Debug, Clone)]
struct RefreshGrant {
    person: usize,
    /// Set once replaced: dies when this access token is used, or at `dies_at`.
    replaced_by: Option<String>,
    dies_at: Option<DateTime<Utc>>,
}

/// Valid Withings tokens.
#[derive(Default)]
pub(crate) struct OAuthState {
    refresh: Mutex<HashMap<String, RefreshGrant>>,
    access: Mutex<HashMap<String, (usize, DateTime<Utc>)>>,
    issued: AtomicU64,
}

impl OAuthState {
    pub(crate) fn enrol(&self, people: &[Person]) {
        if let Ok(mut r) = self.refresh.lock() {
            for p in people {
                r.insert(
                    p.withings_refresh_token.clone(),
                    RefreshGrant { person: p.index, replaced_by: None, dies_at: None },
                );
            }
        }
    }

    pub(crate) fn revoke(&self, person: usize) {
        if let Ok(mut r) = self.refresh.lock() {
            r.retain(|_, g| g.person != person);
        }
        if let Ok(mut a) = self.access.lock() {
            a.retain(|_, (p, _)| *p != person);
        }
    }

    /// The person of a valid access token; using it retires the refresh token it replaced.
    pub(crate) fn use_access(&self, token: &str, now: DateTime<Utc>) -> Option<usize> {
        let person = {
            let a = self.access.lock().ok()?;
            let (person, expires) = a.get(token)?;
            (*expires > now).then_some(*person)?
        };
        if let Ok(mut r) = self.refresh.lock() {
            r.retain(|_, g| g.replaced_by.as_deref() != Some(token));
        }
        Some(person)
    }

    /// The person of an access token without using it (for fault targeting).
    pub(crate) fn peek_access(&self, token: &str) -> Option<usize> {
        self.access.lock().ok()?.get(token).map(|(p, _)| *p)
    }
}

pub(crate) async fn oauth2(State(state): State<Arc<SimState>>, Form(form): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| form.get(k).map(String::as_str);
    if get("action") != Some("requesttoken") {
        return status(2554, "Unknown action");
    }
    if get("client_id") != Some(CLIENT_ID) || get("client_secret") != Some(CLIENT_SECRET) {
        return status(503, "Invalid Params: invalid client_id or client_secret");
    }
    let w = &state.withings;
    let now = state.clock.now();
    let Ok(mut refresh) = w.refresh.lock() else { return status(500, "internal error") };
    let (person, old) = match get("grant_type") {
        Some("refresh_token") => {
            let Some(old) = get("refresh_token") else { return status(503, "Invalid Params: missing refresh_token") };
            match refresh.get(old) {
                Some(g) if g.dies_at.is_none_or(|d| d > now) => (g.person, Some(old)),
                _ => return status(503, "Invalid Params: invalid refresh_token"),
            }
        }
        Some("authorization_code") => {
            use super::super::consent::{CodeError, Provider};
            let (Some(code), Some(redirect_uri)) = (get("code"), get("redirect_uri")) else {
                return status(503, "Invalid Params: missing code or redirect_uri");
            };
            match state.consent.redeem(Provider::Withings, code, redirect_uri, None) {
                Ok(p) => (p, None),
                Err(CodeError::Expired) => return status(503, "Invalid Params: invalid code (expired)"),
                Err(CodeError::RedirectMismatch) => return status(503, "Invalid Params: invalid redirect_uri"),
                Err(_) => return status(503, "Invalid Params: invalid code"),
            }
        }
        _ => return status(503, "Invalid Params: invalid grant_type"),
    };
    let n = w.issued.fetch_add(1, Ordering::SeqCst);
    let access_token = format!("wsim-at-{person}-{n}");
    let new_refresh = format!("wsim-rt-{person}-{n}");
    if let Some(g) = old.and_then(|old| refresh.get_mut(old)) {
        g.replaced_by = Some(access_token.clone());
        g.dies_at = Some(g.dies_at.unwrap_or(now + TimeDelta::hours(GRACE_HOURS)));
    }
    refresh.insert(
        new_refresh.clone(),
        super::super::withings::oauth::RefreshGrant { person, replaced_by: None, dies_at: None },
    );
    drop(refresh);
    if let Ok(mut a) = w.access.lock() {
        a.insert(access_token.clone(), (person, now + TimeDelta::seconds(ACCESS_LIFETIME_SECS)));
    }
    let Some(p) = state.people.get(person) else { return status(500, "internal error") };
    // Withings sends userid as a number for some accounts and a string for others.
    let userid = if person % 2 == 0 { json!(p.withings_user_id) } else { json!(p.withings_user_id.to_string()) };
    ok(json!({
        "userid": userid,
        "access_token": access_token,
        "refresh_token": new_refresh,
        "expires_in": ACCESS_LIFETIME_SECS,
        "scope": "user.info,user.metrics,user.activity",
        "csrf_token": p.mark("csrf", format!("csrf-{n}")),
        "token_type": "Bearer",
    }))
}
