//! The providers' authorisation pages: Google's `/o/oauth2/v2/auth` (PKCE S256 required,
//! `access_type=offline`) and Withings' `/oauth2_user/authorize2`.
//!
//! The simulated person who "logs in" is configurable ([`super::Simulator::approve_as`]).
//! A browser (`Accept: text/html`) gets an approval page with an Allow button; any other
//! client is approved at once and redirected, so tests can follow the redirect with an
//! HTTP client. Codes are single use; a Withings code lives 30 seconds, as upstream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{CLIENT_ID, SimState};

/// Which provider's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Google,
    Withings,
}

struct Code {
    provider: Provider,
    person: usize,
    redirect_uri: String,
    challenge: Option<String>,
    issued: Instant,
}

/// Outstanding authorisation codes and who approves.
pub(crate) struct ConsentState {
    codes: Mutex<HashMap<String, Code>>,
    pub approve_as: AtomicUsize,
    pub deny: AtomicBool,
    issued: AtomicU64,
    /// Withings' code lifetime (30 s upstream; shortened by tests).
    pub withings_code_ms: AtomicU64,
}

impl Default for ConsentState {
    fn default() -> Self {
        Self {
            codes: Mutex::new(HashMap::new()),
            approve_as: AtomicUsize::new(0),
            deny: AtomicBool::new(false),
            issued: AtomicU64::new(0),
            withings_code_ms: AtomicU64::new(30_000),
        }
    }
}

/// Why a code exchange failed.
#[derive(Debug)]
pub(crate) enum CodeError {
    Unknown,
    RedirectMismatch,
    Verifier,
    Expired,
}

impl ConsentState {
    /// Redeems a code (once): the person it was issued for.
    pub(crate) fn redeem(
        &self,
        provider: Provider,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&str>,
    ) -> Result<usize, CodeError> {
        let grant = self.codes.lock().ok().and_then(|mut c| c.remove(code)).ok_or(CodeError::Unknown)?;
        if grant.provider != provider {
            return Err(CodeError::Unknown);
        }
        if grant.redirect_uri != redirect_uri {
            return Err(CodeError::RedirectMismatch);
        }
        if provider == Provider::Withings
            && grant.issued.elapsed() > Duration::from_millis(self.withings_code_ms.load(Ordering::SeqCst))
        {
            return Err(CodeError::Expired);
        }
        if let Some(challenge) = &grant.challenge
            && verifier.map(s256).as_deref() != Some(challenge.as_str())
        {
            return Err(CodeError::Verifier);
        }
        Ok(grant.person)
    }
}

/// `BASE64URL(SHA256(verifier))`, the PKCE S256 challenge.
pub(crate) fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Html(format!("<!doctype html><title>Error</title><p>{}</p>", escape(message))))
        .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Checks the request as the provider would; the reason it is refused, if it is.
fn check(provider: Provider, q: &HashMap<String, String>) -> Result<(), &'static str> {
    let get = |k: &str| q.get(k).map(String::as_str);
    if get("client_id") != Some(CLIENT_ID) {
        return Err("invalid_client: the OAuth client was not found");
    }
    if get("response_type") != Some("code") {
        return Err("unsupported_response_type");
    }
    let Some(redirect) = get("redirect_uri") else { return Err("missing redirect_uri") };
    if url::Url::parse(redirect).is_err() {
        return Err("invalid redirect_uri");
    }
    if get("state").is_none_or(str::is_empty) {
        return Err("missing state");
    }
    if provider == Provider::Google {
        if get("code_challenge_method") != Some("S256") || get("code_challenge").is_none_or(str::is_empty) {
            return Err("invalid_request: PKCE with code_challenge_method=S256 is required");
        }
        if get("access_type") != Some("offline") {
            return Err("this client needs access_type=offline to receive a refresh token");
        }
    }
    Ok(())
}

/// Approves (or denies) and redirects back with `code` and `state`.
fn decide(state: &SimState, provider: Provider, q: &HashMap<String, String>) -> Response {
    if let Err(reason) = check(provider, q) {
        return bad_request(reason);
    }
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let Ok(mut target) = url::Url::parse(&get("redirect_uri")) else { return bad_request("invalid redirect_uri") };
    let consent = &state.consent;
    if consent.deny.load(Ordering::SeqCst) {
        target.query_pairs_mut().append_pair("error", "access_denied").append_pair("state", &get("state"));
        return Redirect::to(target.as_str()).into_response();
    }
    let person = consent.approve_as.load(Ordering::SeqCst);
    let n = consent.issued.fetch_add(1, Ordering::SeqCst);
    let code = match provider {
        Provider::Google => format!("4/sim-code-{person}-{n}"),
        Provider::Withings => format!("wsim-code-{person}-{n}"),
    };
    let grant = Code {
        provider,
        person,
        redirect_uri: get("redirect_uri"),
        challenge: q.get("code_challenge").cloned(),
        issued: Instant::now(),
    };
    if let Ok(mut codes) = consent.codes.lock() {
        codes.insert(code.clone(), grant);
    }
    state.note(format!("consent.approved {provider:?}"));
    target.query_pairs_mut().append_pair("code", &code).append_pair("state", &get("state"));
    if provider == Provider::Google {
        target.query_pairs_mut().append_pair("scope", super::google::GRANTED_SCOPES);
    }
    Redirect::to(target.as_str()).into_response()
}

/// The approval page a browser sees: who is signed in, what is asked, Allow / Deny.
fn page(state: &SimState, provider: Provider, q: &HashMap<String, String>, approve_path: &str) -> Response {
    if let Err(reason) = check(provider, q) {
        return bad_request(reason);
    }
    let person = state.people.get(state.consent.approve_as.load(Ordering::SeqCst)).map(|p| p.name.clone());
    let hidden: String =
        q.iter().map(|(k, v)| format!(r#"<input type="hidden" name="{}" value="{}">"#, escape(k), escape(v))).collect();
    let body = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Simulated {provider:?} sign-in</title></head>
<body><h1>Simulated {provider:?}</h1><p>Signed in as {person}. wearbridge asks to read your health data.</p>
<form method="post" action="{approve_path}">{hidden}<button id="allow" type="submit">Allow</button></form></body></html>"#,
        person = escape(&person.unwrap_or_default()),
    );
    Html(body).into_response()
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

pub(crate) async fn google_authorize(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if wants_html(&headers) {
        return page(&state, Provider::Google, &q, "/google/o/oauth2/v2/approve");
    }
    decide(&state, Provider::Google, &q)
}

pub(crate) async fn google_approve(
    State(state): State<Arc<SimState>>,
    Form(q): Form<HashMap<String, String>>,
) -> Response {
    decide(&state, Provider::Google, &q)
}

pub(crate) async fn withings_authorize(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if wants_html(&headers) {
        return page(&state, Provider::Withings, &q, "/withings/oauth2_user/approve");
    }
    decide(&state, Provider::Withings, &q)
}

pub(crate) async fn withings_approve(
    State(state): State<Arc<SimState>>,
    Form(q): Form<HashMap<String, String>>,
) -> Response {
    decide(&state, Provider::Withings, &q)
}
