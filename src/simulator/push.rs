//! Both providers' change notifications, as the fact sheets describe them.
//!
//! Withings: `/notify` `action=list|subscribe|revoke` per user with the user's token;
//! `subscribe` probes the callback with a HEAD first (a callback that does not answer
//! 2xx is refused with status 293); each change is a form POST (`userid`, `appli`,
//! `startdate`, `enddate`) to every subscribed callback of that user and category.
//!
//! Google Health: subscribers are per project (`POST v4/projects/{p}/subscribers`, with an
//! administrator's token): creating one verifies the endpoint with two POSTs of
//! `{"type":"verification"}`, with the secret (must answer 201) and without it (must
//! answer 401 or 403). With the `AUTOMATIC` policy every consenting user's changes of a
//! configured data type are sent: JSON with `healthUserId`, `dataType`, `operation` and
//! `intervals`, the secret in `Authorization` and an ECDSA P-256 signature of the body in
//! `X-HEALTHAPI-SIGNATURE` (made with the simulator's own key; [`PushState::public_key_pem`]).
//!
//! Readings added at run time ([`Added`]) are served by the data endpoints beside the
//! generated ones, so a notification always announces data the API then returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use super::SimState;

/// The administrator token the simulated `projects.subscribers` methods accept (a
/// simulator value, not a secret).
pub const ADMIN_TOKEN: &str = "simulator-admin-token";

/// How long a callback has to answer (Withings: 2 seconds).
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(2);

/// A reading added at run time (see [`super::Simulator::add_weight`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Added {
    pub person: usize,
    pub withings: bool,
    pub at: DateTime<Utc>,
    pub grams: f64,
    /// When it reached the provider (Withings' `modified`).
    pub added_at: DateTime<Utc>,
}

/// A Google Health subscriber.
#[derive(Debug, Clone)]
struct Subscriber {
    name: String,
    endpoint: String,
    secret: String,
    data_types: Vec<String>,
}

/// Subscriptions, subscribers, added readings and the signing key.
pub(crate) struct PushState {
    /// Withings: (person, appli, callback url).
    withings: Mutex<Vec<(usize, u32, String)>>,
    google: Mutex<Vec<Subscriber>>,
    added: Mutex<Vec<Added>>,
    key: EcdsaKeyPair,
    rng: SystemRandom,
    http: Option<reqwest::Client>,
}

impl PushState {
    pub(crate) fn new() -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| "cannot make a signing key".to_owned())?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| "cannot load the signing key".to_owned())?;
        crate::http::tls();
        let http = reqwest::Client::builder().timeout(CALLBACK_TIMEOUT).build().ok();
        Ok(Self {
            withings: Mutex::new(Vec::new()),
            google: Mutex::new(Vec::new()),
            added: Mutex::new(Vec::new()),
            key,
            rng,
            http,
        })
    }

    /// The public half of the signing key (PEM), for `push.google_public_key_file`.
    pub(crate) fn public_key_pem(&self) -> String {
        crate::sources::fitbit::push::SignatureKey::pem_of_point(self.key.public_key().as_ref())
    }

    /// Base64 of the DER signature of `body`.
    pub(crate) fn sign(&self, body: &[u8]) -> String {
        self.key
            .sign(&self.rng, body)
            .map(|s| base64::engine::general_purpose::STANDARD.encode(s.as_ref()))
            .unwrap_or_default()
    }

    pub(crate) fn add(&self, added: Added) {
        if let Ok(mut a) = self.added.lock() {
            a.push(added);
        }
    }

    /// Weights added for `person` (Withings or Google) in `[from, before)`, up to `now`.
    pub(crate) fn weights(
        &self,
        person: usize,
        withings: bool,
        from: DateTime<Utc>,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<Added> {
        let Ok(added) = self.added.lock() else { return Vec::new() };
        added
            .iter()
            .filter(|a| a.person == person && a.withings == withings && a.at >= from && a.at < before && a.at <= now)
            .copied()
            .collect()
    }

    /// The Withings callbacks of `person` for `appli`.
    pub(crate) fn withings_callbacks(&self, person: usize, appli: u32) -> Vec<String> {
        self.withings
            .lock()
            .map(|s| s.iter().filter(|(p, a, _)| *p == person && *a == appli).map(|(_, _, c)| c.clone()).collect())
            .unwrap_or_default()
    }

    /// Every Withings subscription of `person`: (appli, callback).
    pub(crate) fn withings_subscriptions(&self, person: usize) -> Vec<(u32, String)> {
        self.withings
            .lock()
            .map(|s| s.iter().filter(|(p, ..)| *p == person).map(|(_, a, c)| (*a, c.clone())).collect())
            .unwrap_or_default()
    }

    /// The endpoints (and secrets) of the Google subscribers configured for `data_type`.
    fn google_endpoints(&self, data_type: &str) -> Vec<(String, String)> {
        self.google
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|x| x.data_types.iter().any(|t| t == data_type))
                    .map(|x| (x.endpoint.clone(), x.secret.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends a Withings notification form to `callback`; the HTTP status, if any.
    pub(crate) async fn post_withings(&self, callback: &str, form: &[(&str, String)]) -> Option<u16> {
        let http = self.http.as_ref()?;
        http.post(callback).form(form).send().await.ok().map(|r| r.status().as_u16())
    }

    /// Sends a Google notification body to `endpoint` with `authorization` and, when
    /// `signed`, the signature; the HTTP status, if any.
    pub(crate) async fn post_google(
        &self,
        endpoint: &str,
        authorization: Option<&str>,
        body: &[u8],
        signature: Option<String>,
    ) -> Option<u16> {
        let http = self.http.as_ref()?;
        let mut request = http.post(endpoint).header("content-type", "application/json").body(body.to_vec());
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        if let Some(s) = signature {
            request = request.header(crate::sources::fitbit::push::SIGNATURE_HEADER, s);
        }
        request.send().await.ok().map(|r| r.status().as_u16())
    }

    /// Notifies every Google subscriber of `data_type` (signed) about `user`; the
    /// statuses the endpoints answered.
    pub(crate) async fn notify_google(
        &self,
        user: &str,
        data_type: &str,
        operation: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<u16> {
        let body = json!({
            "healthUserId": user,
            "dataType": data_type,
            "operation": operation,
            "intervals": [{"startTime": from.to_rfc3339(), "endTime": to.to_rfc3339()}],
        })
        .to_string();
        let mut statuses = Vec::new();
        for (endpoint, secret) in self.google_endpoints(data_type) {
            let signature = self.sign(body.as_bytes());
            if let Some(s) = self.post_google(&endpoint, Some(&secret), body.as_bytes(), Some(signature)).await {
                statuses.push(s);
            }
        }
        statuses
    }
}

impl PushState {
    /// Google's check of a subscriber endpoint: a POST of `{"type":"verification"}` with
    /// the secret (must answer 201) and one without (must answer 401 or 403). `Err`: the
    /// finished operation `operation` that reports the failure.
    async fn verify_endpoint(&self, endpoint: &str, secret: &str, operation: &str) -> Result<(), Response> {
        let verification = br#"{"type":"verification"}"#;
        let with = self.post_google(endpoint, Some(secret), verification, None).await;
        let without = self.post_google(endpoint, None, verification, None).await;
        if with == Some(201) && matches!(without, Some(401 | 403)) {
            return Ok(());
        }
        let message =
            format!("Endpoint verification failed: answered {with:?} with the secret and {without:?} without it.");
        Err(Json(json!({"name": operation, "done": true, "error": {"code": 9, "message": message}})).into_response())
    }
}

/// `POST /withings/notify`.
pub(crate) async fn withings_notify(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    axum::Form(p): axum::Form<HashMap<String, String>>,
) -> Response {
    use super::withings::{ok, status};
    let person = match super::withings::authorize(&state, &headers) {
        Ok(p) => p.index,
        Err(r) => return r.into_response(),
    };
    let appli: Option<u32> = p.get("appli").and_then(|a| a.trim().parse().ok());
    let callback = p.get("callbackurl").cloned().unwrap_or_default();
    match p.get("action").map(String::as_str) {
        Some("list") => {
            let profiles: Vec<Value> = state
                .push
                .withings_subscriptions(person)
                .into_iter()
                .filter(|(a, _)| appli.is_none_or(|x| x == *a))
                .map(|(a, c)| json!({"appli": a, "callbackurl": c, "expires": 2_147_483_647, "comment": null}))
                .collect();
            ok(json!({ "profiles": profiles }))
        }
        Some("subscribe") => {
            let Some(appli) = appli else { return status(293, "Invalid params") };
            if url::Url::parse(&callback).is_err() {
                return status(293, "Invalid params");
            }
            // Withings probes the callback before it accepts it.
            let probe = match &state.push.http {
                Some(http) => http.head(&callback).send().await.ok().map(|r| r.status().is_success()),
                None => None,
            };
            if probe != Some(true) {
                return status(293, "Invalid params");
            }
            if let Ok(mut subs) = state.push.withings.lock()
                && !subs.iter().any(|(p, a, c)| *p == person && *a == appli && *c == callback)
            {
                subs.push((person, appli, callback));
            }
            ok(json!({}))
        }
        Some("revoke") => {
            let Ok(mut subs) = state.push.withings.lock() else { return status(2554, "Not implemented") };
            let before = subs.len();
            subs.retain(|(p, a, c)| !(*p == person && *c == callback && appli.is_none_or(|x| x == *a)));
            if subs.len() == before { status(294, "Invalid params") } else { ok(json!({})) }
        }
        _ => status(2554, "Not implemented"),
    }
}

/// Google's 401, unless the request carries the administrator's bearer token.
fn refused_unless_admin(headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) if t == ADMIN_TOKEN => None,
        _ => Some(google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        )),
    }
}

fn google_error(code: StatusCode, status: &str, message: &str) -> Response {
    super::google::error(code, status, message)
}

/// `GET /google/v4/projects/{project}/subscribers`.
pub(crate) async fn list_subscribers(
    State(state): State<Arc<SimState>>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refused_unless_admin(&headers) {
        return refused;
    }
    let prefix = format!("projects/{project}/subscribers/");
    let subscribers: Vec<Value> = state
        .push
        .google
        .lock()
        .map(|s| s.iter().filter(|x| x.name.starts_with(&prefix)).map(subscriber_json).collect())
        .unwrap_or_default();
    Json(json!({ "subscribers": subscribers, "totalSize": subscribers.len() })).into_response()
}

fn subscriber_json(s: &Subscriber) -> Value {
    json!({
        "name": s.name,
        "endpointUri": s.endpoint,
        "endpointAuthorization": {"secretSet": true},
        "subscriberConfigs": [{"dataTypes": s.data_types, "subscriptionCreatePolicy": "AUTOMATIC"}],
        "state": "ACTIVE",
    })
}

/// `POST /google/v4/projects/{project}/subscribers?subscriberId=`: verifies the endpoint
/// (both POSTs must pass) and answers a finished long-running operation.
pub(crate) async fn create_subscriber(
    State(state): State<Arc<SimState>>,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = refused_unless_admin(&headers) {
        return refused;
    }
    let endpoint = body["endpointUri"].as_str().unwrap_or_default().to_owned();
    let secret = body["endpointAuthorization"]["secret"].as_str().unwrap_or_default().to_owned();
    let data_types: Vec<String> = body["subscriberConfigs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["dataTypes"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned))
        .collect();
    if url::Url::parse(&endpoint).is_err() || secret.is_empty() || data_types.is_empty() {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "endpointUri, endpointAuthorization.secret and subscriberConfigs are required.",
        );
    }
    let id = query
        .get("subscriberId")
        .cloned()
        .unwrap_or_else(|| format!("sub-{}", state.push.google.lock().map_or(0, |s| s.len())));
    let name = format!("projects/{project}/subscribers/{id}");
    if state.push.google.lock().is_ok_and(|s| s.iter().any(|x| x.name == name)) {
        return google_error(StatusCode::CONFLICT, "ALREADY_EXISTS", "The subscriber already exists.");
    }
    let operation = format!("projects/{project}/operations/create-{id}");
    if let Err(failed) = state.push.verify_endpoint(&endpoint, &secret, &operation).await {
        return failed;
    }
    let subscriber = Subscriber { name, endpoint, secret, data_types };
    let response = subscriber_json(&subscriber);
    if let Ok(mut s) = state.push.google.lock() {
        s.push(subscriber);
    }
    Json(json!({"name": operation, "done": true, "response": response})).into_response()
}

/// `PATCH /google/v4/projects/{project}/subscribers/{id}?updateMask=endpointAuthorization`:
/// a new secret, verified again as at creation (both POSTs must pass).
pub(crate) async fn patch_subscriber(
    State(state): State<Arc<SimState>>,
    Path((project, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = refused_unless_admin(&headers) {
        return refused;
    }
    let name = format!("projects/{project}/subscribers/{id}");
    let mask = query.get("updateMask").cloned().unwrap_or_default();
    let secret = body["endpointAuthorization"]["secret"].as_str().unwrap_or_default().to_owned();
    if !mask.split(',').any(|m| m.trim() == "endpointAuthorization" || m.trim() == "endpoint_authorization")
        || secret.is_empty()
    {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Only endpointAuthorization can be updated here.",
        );
    }
    let Some(endpoint) =
        state.push.google.lock().ok().and_then(|s| s.iter().find(|x| x.name == name).map(|x| x.endpoint.clone()))
    else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "No such subscriber.");
    };
    let operation = format!("projects/{project}/operations/update-{id}");
    if let Err(failed) = state.push.verify_endpoint(&endpoint, &secret, &operation).await {
        return failed;
    }
    let mut response = Value::Null;
    if let Ok(mut subs) = state.push.google.lock()
        && let Some(sub) = subs.iter_mut().find(|x| x.name == name)
    {
        sub.secret = secret;
        response = subscriber_json(sub);
    }
    Json(json!({"name": operation, "done": true, "response": response})).into_response()
}

/// `DELETE /google/v4/projects/{project}/subscribers/{id}`.
pub(crate) async fn delete_subscriber(
    State(state): State<Arc<SimState>>,
    Path((project, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = refused_unless_admin(&headers) {
        return refused;
    }
    let name = format!("projects/{project}/subscribers/{id}");
    let Ok(mut s) = state.push.google.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let before = s.len();
    s.retain(|x| x.name != name);
    if s.len() == before {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "No such subscriber.");
    }
    Json(json!({"name": format!("projects/{project}/operations/delete-{id}"), "done": true, "response": {}}))
        .into_response()
}
