//! The consent pages for enrolling many people: `/connect` explains in plain words what
//! is collected, how it is pseudonymised and how to leave, then offers every
//! configured source; `/connect/callback` completes enrolment and shows the pseudonymous
//! reference and a personal leave code; `/leave` withdraws with it. Server-rendered HTML, no
//! external assets, no JavaScript.
//!
//! Pending authorisations live in this process's memory for 10 minutes: with several
//! replicas, keep each client on one of them (the Kubernetes Service uses ClientIP
//! session affinity).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anonymizer::PseudonymKey;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use secrecy::ExposeSecret;

use super::ServerState;
use crate::clock::Clock;
use crate::config::Settings;
use crate::onboarding::{self, Authorization};
use crate::sources::registry;
use crate::store::{AccountStatus, Store};

/// How long a started enrolment waits for its callback.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// The policy when no enrolment is served.
const NO_FORMS_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// At most this many enrolments wait for their callback at once: anonymous posts to
/// `/connect/start` cannot grow the memory without bound.
const MAX_PENDING: usize = 1000;

/// Headers every consent page carries: no scripts, frames, outside assets or referrers,
/// and nothing cached (one page shows the leave code). Forms may lead only here and, by
/// the redirect that starts an enrolment, to the configured providers' consent pages.
pub(super) async fn security_headers(
    State(state): State<Arc<ServerState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use axum::http::{HeaderValue, header};
    let mut response = if request.method() == axum::http::Method::POST && cross_site(&state, request.headers()) {
        // A form another site makes a visitor's browser send (adding the attacker's
        // provider account to a person, or a visitor's to the attacker): refused.
        tracing::warn!("consent form refused: sent from another site");
        error_page(StatusCode::FORBIDDEN, "This form must be sent from this site's own pages.")
    } else {
        next.run(request).await
    };
    let csp = state.enrolment.as_ref().map_or(NO_FORMS_CSP, |e| e.csp.as_str());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(csp).unwrap_or(HeaderValue::from_static(NO_FORMS_CSP)),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Same-origin: nothing leaves for other sites, and our own forms carry a real
    // `Origin` (with "no-referrer" a browser sends `Origin: null`, which a hostile page can
    // send too).
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An authorisation waiting for its callback: when it started, and the person it adds a
/// provider to (proven by their leave code), if any.
type Pending = (Authorization, Instant, Option<String>);

/// What the consent pages need besides the store.
pub struct Enrolment {
    pub settings: Settings,
    pub key: PseudonymKey,
    /// Consent and token times.
    pub clock: Clock,
    /// Authorisations waiting for their callback, by state.
    pending: Mutex<HashMap<String, Pending>>,
    /// The providers whose client id is configured: `(name, label)`.
    offered: Vec<(&'static str, &'static str)>,
    /// One client for every page's calls (building one loads the TLS roots).
    http: Option<reqwest::Client>,
    /// The Content-Security-Policy of every page.
    csp: String,
}

impl Enrolment {
    pub fn new(settings: Settings, key: PseudonymKey, clock: Clock) -> Self {
        let http = crate::http::client().ok();
        let mut offered = Vec::new();
        let mut form_targets = vec!["'self'".to_owned()];
        for r in registry::SOURCES {
            let Some(http) = &http else { break };
            let oauth = r.standalone_oauth(&settings, http);
            if oauth.credentials().0 {
                offered.push((r.provider.as_str(), r.label));
                if let Ok(url) = url::Url::parse(oauth.auth_url()) {
                    form_targets.push(url.origin().ascii_serialization());
                }
            }
        }
        let csp = format!(
            "default-src 'none'; style-src 'unsafe-inline'; form-action {}; frame-ancestors 'none'; base-uri 'none'",
            form_targets.join(" ")
        );
        Self { settings, key, clock, pending: Mutex::new(HashMap::new()), offered, http, csp }
    }

    fn offered(&self) -> Vec<(&'static str, &'static str)> {
        self.offered.clone()
    }

    fn callback_url(&self) -> String {
        format!("{}/connect/callback", self.settings.server.public_url.trim_end_matches('/'))
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · wearbridge</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
button{{font-size:1rem;padding:.5rem 1rem;margin:.25rem 0}}code{{background:#eee;padding:0 .2rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"#,
        title = escape(title)
    );
    (status, Html(html)).into_response()
}

fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Something went wrong",
        &format!("<p>{}</p><p><a href=\"/connect\">Start again</a></p>", escape(message)),
    )
}

/// Whether a browser says this request comes from another site. `Sec-Fetch-Site` is sent
/// by every current browser; `Origin` covers older ones (our pages' referrer policy makes
/// our own forms send the real origin, so `null` — a sandboxed frame, a hostile page's
/// no-referrer form — is refused). Clients that send neither (curl, scripts) are not
/// browsers a page can steer, and pass.
fn cross_site(state: &ServerState, headers: &axum::http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = header("origin") else { return false };
    let Ok(origin) = url::Url::parse(origin) else { return true };
    let host_port = |u: &url::Url| u.host_str().map(|h| format!("{h}:{}", u.port_or_known_default().unwrap_or(0)));
    let ours = state
        .enrolment
        .as_ref()
        .and_then(|e| url::Url::parse(&e.settings.server.public_url).ok())
        .is_some_and(|public| public.origin() == origin.origin());
    // Or the host the browser itself addressed (the public URL may name a proxy).
    let addressed = header("host").is_some_and(|host| {
        let default = if origin.scheme() == "https" { 443 } else { 80 };
        let host =
            if host.contains(':') && !host.ends_with(']') { host.to_owned() } else { format!("{host}:{default}") };
        host_port(&origin).is_some_and(|o| o.eq_ignore_ascii_case(&host))
    });
    !(ours || addressed)
}

/// Constant-time comparison of the enrolment token.
fn token_ok(expected: Option<&str>, given: Option<&str>) -> bool {
    let Some(expected) = expected else { return true };
    let given = given.unwrap_or_default();
    expected.len() == given.len() && expected.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub(super) async fn connect(State(state): State<Arc<ServerState>>) -> Response {
    let Some(enrolment) = &state.enrolment else { return error_page(StatusCode::NOT_FOUND, "enrolment is off here") };
    let token_field = if enrolment.settings.server.enroll_token.is_some() {
        r#"<p><label>Enrolment code (from the people running this project)<br><input name="enroll_token" type="password" required></label></p>"#
    } else {
        ""
    };
    let mut offers = String::new();
    for (provider, label) in enrolment.offered() {
        offers += &format!(
            r#"<form method="post" action="/connect/start"><input type="hidden" name="provider" value="{provider}">{token_field}<button id="connect-{provider}" type="submit">Connect {label}</button></form>"#
        );
    }
    let body = format!(
        r#"<p>This project collects readings from your wearable: heart rate, daily activity, sleep, body
measurements (such as weight and blood pressure) and the kind and battery level of your devices.</p>
<p><strong>How you are protected.</strong> Before anything is published your name, e-mail, account ids and
device names are removed; you appear only under a random-looking code that cannot be turned back into your
account without a secret key held by the operators. Times are coarsened and weights rounded. This is
pseudonymised data, not anonymous data: read <a href="/privacy">what each protection does and does not
do</a>.</p>
<p><strong>How to leave.</strong> After connecting you get a personal leave code. Entering it at the leave page (or asking the operators)
ends our access at the provider and deletes everything we hold about you. Data already published cannot be
recalled.</p>
{offers}"#
    );
    page(StatusCode::OK, "Share your wearable data", &body)
}

pub(super) async fn privacy() -> Response {
    let text = include_str!("../../PRIVACY.md");
    page(StatusCode::OK, "Privacy controls", &format!("<pre style=\"white-space:pre-wrap\">{}</pre>", escape(text)))
}

pub(super) async fn start(
    State(state): State<Arc<ServerState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(enrolment) = &state.enrolment else { return error_page(StatusCode::NOT_FOUND, "enrolment is off here") };
    // Adding a provider to someone already enrolled: their leave code proves it is them
    // (and stands in for the enrolment code they gave before).
    let person = match form.get("code") {
        Some(code) => match account_of_code(&state, code).await {
            Some(account) => Some(account.person),
            None => return error_page(StatusCode::FORBIDDEN, "This leave code is not valid (or you already left)."),
        },
        None => None,
    };
    let expected = enrolment.settings.server.enroll_token.as_ref().map(|t| t.expose_secret().to_owned());
    if person.is_none() && !token_ok(expected.as_deref(), form.get("enroll_token").map(String::as_str)) {
        return error_page(StatusCode::FORBIDDEN, "That enrolment code is not right.");
    }
    let chosen = form.get("provider").map(String::as_str).unwrap_or_default();
    let Some(provider) = enrolment.offered().into_iter().find(|(name, _)| *name == chosen).map(|(name, _)| name) else {
        let labels: Vec<&str> = enrolment.offered().into_iter().map(|(_, label)| label).collect();
        return error_page(StatusCode::BAD_REQUEST, &format!("Choose one of: {}.", labels.join(", ")));
    };
    let Some(provider) = registry::consented(provider) else {
        return error_page(StatusCode::BAD_REQUEST, "Unknown provider.");
    };
    let Some(http) = &enrolment.http else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Enrolment is not available on this server.");
    };
    let authorization = match onboarding::authorize_with(http, &enrolment.settings, provider, &enrolment.callback_url())
    {
        Ok(a) => a,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let url = authorization.url.clone();
    let Ok(mut pending) = enrolment.pending.lock() else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "Please try again.");
    };
    pending.retain(|_, (_, at, _)| at.elapsed() < PENDING_FOR);
    if pending.len() >= MAX_PENDING {
        tracing::warn!(pending = pending.len(), "enrolment refused: too many enrolments wait for their callback");
        return error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many people are connecting right now. Please try again in a few minutes.",
        );
    }
    pending.insert(authorization.state.clone(), (authorization, Instant::now(), person));
    drop(pending);
    Redirect::to(&url).into_response()
}

pub(super) async fn callback(
    State(state): State<Arc<ServerState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(enrolment) = &state.enrolment else { return error_page(StatusCode::NOT_FOUND, "enrolment is off here") };
    let taken = q.get("state").and_then(|s| enrolment.pending.lock().ok().and_then(|mut p| p.remove(s)));
    let Some((authorization, started, person)) = taken else {
        return error_page(StatusCode::BAD_REQUEST, "This link is unknown or has expired.");
    };
    if started.elapsed() > PENDING_FOR {
        return error_page(StatusCode::BAD_REQUEST, "This link has expired.");
    }
    let name = person.unwrap_or_else(|| {
        let mut random = [0u8; 5];
        let _ = getrandom::fill(&mut random);
        format!("web-{}", hex::encode(random))
    });
    match onboarding::complete(
        state.store.as_ref(),
        &enrolment.settings,
        &enrolment.key,
        &authorization,
        &name,
        &q,
        &enrolment.clock,
    )
    .await
    {
        Ok(enrolled) => {
            tracing::info!(provider = %authorization.provider, account = %enrolled.account.name, "enrolled through /connect");
            // The leave code is shown, never put in a URL (history, logs, referrers).
            let code = format!("{}.{}", enrolled.account.name, enrolled.leave_secret.expose_secret());
            let missing = if enrolled.missing_scopes.is_empty() {
                String::new()
            } else {
                format!(
                    "<p>You did not share: {}. That part will be skipped.</p>",
                    escape(&enrolled.missing_scopes.join(", "))
                )
            };
            // The person's other providers, offered under the same person when they are
            // published under one subject (linking on, and a person basis to link by).
            let linked = enrolment.settings.anonymizer.link_providers
                && matches!(state.store.subject_id(&enrolled.account.person).await, Ok(Some(_)));
            let enrolled_providers: Vec<String> = match state.store.accounts().await {
                Ok(all) if linked => all
                    .into_iter()
                    .filter(|a| a.person == enrolled.account.person && a.status != AccountStatus::Removed)
                    .map(|a| a.provider.as_str().to_owned())
                    .collect(),
                _ => enrolment.offered().into_iter().map(|(p, _)| p.to_owned()).collect(),
            };
            let mut more = String::new();
            for (provider, label) in
                enrolment.offered().into_iter().filter(|(p, _)| !enrolled_providers.iter().any(|e| e == p))
            {
                more += &format!(
                    r#"<form method="post" action="/connect/start"><input type="hidden" name="provider" value="{provider}"><input type="hidden" name="code" value="{code}"><button id="also-{provider}" type="submit">Also connect {label}</button></form>"#,
                    code = escape(&code),
                );
            }
            if !more.is_empty() {
                more = format!("<p>Your data from another provider can be shared under the same reference:</p>{more}");
            }
            page(
                StatusCode::OK,
                "You are enrolled",
                &format!(
                    r#"<p id="enrolled">Thank you. Your {provider} data will be shared under the pseudonymous reference
<code id="subject">{subject}</code>.</p>{missing}
<p>Keep this personal leave code somewhere safe: <code id="leave-code">{code}</code>. To leave at any time,
open <a id="leave" href="/leave">the leave page</a> and enter it.</p>{more}"#,
                    provider = authorization.provider,
                    subject = escape(&enrolled.subject),
                    code = escape(&code),
                ),
            )
        }
        Err(onboarding::OnboardError::Denied(_)) => {
            page(StatusCode::OK, "Not enrolled", "<p>You did not grant access, so nothing was stored.</p>")
        }
        Err(e) => {
            tracing::warn!(error = %e, "enrolment through /connect failed");
            // Store errors may name an operator-chosen person: not for a visitor's eyes.
            let shown = match &e {
                onboarding::OnboardError::Store(crate::store::StoreError::AlreadyEnrolled { .. }) => {
                    "This account is already enrolled here. Nothing was changed.".to_owned()
                }
                onboarding::OnboardError::Store(_) => "Enrolment failed; please try again later.".to_owned(),
                other => other.to_string(),
            };
            error_page(StatusCode::BAD_GATEWAY, &shown)
        }
    }
}

/// The account a leave code (`<account>.<secret>`) proves, if it does.
async fn account_of_code(state: &ServerState, code: &str) -> Option<crate::store::Account> {
    let (name, secret) = code.trim().rsplit_once('.')?;
    verified_account(state, name, secret).await
}

/// The account `name` when `secret` is its leave secret.
async fn verified_account(state: &ServerState, name: &str, secret: &str) -> Option<crate::store::Account> {
    let account = state.store.account(name).await.ok()??;
    let consent = state.store.consent(account.id).await.ok()??;
    token_ok(Some(&consent.leave_hash), Some(&onboarding::leave_hash(secret))).then_some(account)
}

pub(super) async fn leave_form() -> Response {
    page(
        StatusCode::OK,
        "Leave this project",
        r#"<p>Leaving ends our access to your account at the provider and deletes everything we hold about you.
Data already published cannot be recalled.</p>
<form method="post" action="/leave"><p><label>Your leave code (shown when you connected)<br>
<input name="code" autocomplete="off" required size="60"></label></p>
<button id="confirm-leave" type="submit">Leave and delete my data</button></form>"#,
    )
}

pub(super) async fn leave(
    State(state): State<Arc<ServerState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(enrolment) = &state.enrolment else { return error_page(StatusCode::NOT_FOUND, "enrolment is off here") };
    // The leave code is `<account>.<secret>`; the secret (base64url) holds no '.', so
    // the last '.' splits them.
    let from_code = form.get("code").and_then(|c| c.trim().rsplit_once('.'));
    let (name, secret) = match (from_code, form.get("account"), form.get("secret")) {
        (Some((name, secret)), _, _) => (name.to_owned(), secret.to_owned()),
        (None, Some(name), Some(secret)) => (name.clone(), secret.clone()),
        _ => return error_page(StatusCode::BAD_REQUEST, "Enter your leave code."),
    };
    let refused = || error_page(StatusCode::FORBIDDEN, "This leave code is not valid (or you already left).");
    let Some(account) = verified_account(&state, &name, &secret).await else { return refused() };
    // Leaving is for the person: every provider account of theirs goes.
    let accounts: Vec<_> = match state.store.accounts().await {
        Ok(all) => {
            all.into_iter().filter(|a| a.person == account.person && a.status != AccountStatus::Removed).collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, "withdrawal through /leave failed");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Leaving failed; please try again or contact the operators.",
            );
        }
    };
    let mut result = Ok(String::new());
    for account in &accounts {
        if let Err(e) = onboarding::withdraw(&state.store, &enrolment.settings, account).await {
            result = Err(e);
        }
    }
    match result {
        Ok(_) => page(
            StatusCode::OK,
            "You have left",
            "<p id=\"left\">Our access has ended and everything we held about you is deleted. Data already published cannot be recalled.</p>",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "withdrawal through /leave failed");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Leaving failed; please try again or contact the operators.")
        }
    }
}
