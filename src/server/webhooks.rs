//! Provider notifications: `/webhooks/fitbit` (Google Health API subscriber endpoint,
//! authenticated by the subscriber's secret header and signature) and
//! `/webhooks/withings/<token>` (Withings signs nothing, so the callback each account is
//! subscribed with carries a secret path segment, [`crate::store::SqlStore::push_token`]). A notification is a note in the store — the account's dataset
//! becomes due — never work in the request: any worker picks it up through the normal
//! claim, so the answer is fast (Withings allows 2 seconds) and repeated notifications
//! coalesce. Nothing a notification says is trusted beyond "look here"; unknown users are
//! counted and ignored.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;

use super::ServerState;
use crate::config::PushSettings;
use crate::sources::fitbit::push::{SIGNATURE_HEADER, SignatureKey};
use crate::sources::push::{Notice, PushError, secret_matches};
use crate::sources::{fitbit, withings};
use crate::store::Store;

/// The store must take a note within this, or the provider is asked to send it again
/// (Withings gives up on an endpoint that takes over 2 seconds).
const NOTE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The largest notification body read.
pub const MAX_BODY: usize = 64 * 1024;

/// What the notification endpoints need: the `[push]` settings, read once.
pub struct Push {
    pub settings: PushSettings,
    /// Google's public key, when signatures are checked.
    pub google_key: Option<SignatureKey>,
    /// Woken when a noted notification's delay is over (the daemon's worker waits on it).
    pub wake: Option<std::sync::Arc<tokio::sync::Notify>>,
}

impl Push {
    /// From `[push]`; an unreadable or malformed public key file is an error naming
    /// `push.google_public_key_file`.
    pub fn new(settings: &PushSettings) -> Result<Self, String> {
        let google_key = match &settings.google_public_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("push.google_public_key_file: cannot read {}: {e}", path.display()))?;
                Some(
                    SignatureKey::from_pem(&text)
                        .map_err(|e| format!("push.google_public_key_file ({}): {e}", path.display()))?,
                )
            }
            None => None,
        };
        Ok(Self { settings: settings.clone(), google_key, wake: None })
    }

    /// Wakes `wake` once each noted notification's delay is over.
    pub fn waking(mut self, wake: std::sync::Arc<tokio::sync::Notify>) -> Self {
        self.wake = Some(wake);
        self
    }
}

fn count(provider: &'static str, result: &'static str) {
    metrics::counter!("wearbridge_push_notifications_total", "provider" => provider, "result" => result).increment(1);
}

/// `POST /webhooks/fitbit`: Google's endpoint verification (two POSTs of
/// `{"type":"verification"}`, one with the secret, one without) and notifications.
pub(super) async fn google(State(state): State<Arc<ServerState>>, headers: HeaderMap, body: Bytes) -> Response {
    const PROVIDER: &str = "fitbit";
    let Some(push) = &state.push else { return StatusCode::NOT_FOUND.into_response() };
    // The secret first: without it nothing else is looked at.
    let expected = push.settings.google_authorization.as_ref().map(|s| s.expose_secret().as_bytes().to_vec());
    let given = headers.get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes());
    let refused = match (expected, given) {
        (_, None) => Some(PushError::Unauthenticated),
        (None, Some(_)) => Some(PushError::Forbidden),
        (Some(e), Some(g)) if !secret_matches(&e, g) => Some(PushError::Forbidden),
        _ => None,
    };
    let verification = serde_json::from_slice::<serde_json::Value>(&body)
        .is_ok_and(|v| v.get("type").and_then(|t| t.as_str()) == Some("verification"));
    if let Some(error) = refused {
        let result = if verification { "verification_refused" } else { error.result() };
        count(PROVIDER, result);
        if !verification {
            tracing::warn!(%error, "Google Health notification refused");
        }
        let status = match error {
            PushError::Unauthenticated => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        return status.into_response();
    }
    if verification {
        count(PROVIDER, "verification");
        return StatusCode::CREATED.into_response();
    }
    if let Some(key) = &push.google_key {
        let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !key.verifies(&body, signature) {
            count(PROVIDER, "forged");
            tracing::warn!(error = %PushError::BadSignature, "Google Health notification refused");
            return StatusCode::FORBIDDEN.into_response();
        }
    }
    let notices = match fitbit::push::parse(&body) {
        Ok(n) => n,
        Err(error) => {
            count(PROVIDER, error.result());
            tracing::warn!(%error, "Google Health notification refused");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    for notice in &notices {
        if let Err(status) = note(&state, push, fitbit::PROVIDER, PROVIDER, notice).await {
            return status.into_response();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Whether `token` is this store's Withings callback token (compared in constant time).
fn withings_token_ok(state: &ServerState, token: &str) -> bool {
    state.store.push_token(withings::PROVIDER).is_ok_and(|ours| secret_matches(ours.as_bytes(), token.as_bytes()))
}

/// `HEAD /webhooks/withings/<token>`: Withings' probe before it subscribes a callback.
pub(super) async fn withings_probe(State(state): State<Arc<ServerState>>, Path(token): Path<String>) -> StatusCode {
    if state.push.is_some() && withings_token_ok(&state, &token) { StatusCode::OK } else { StatusCode::NOT_FOUND }
}

/// `POST /webhooks/withings/<token>`: a form with `userid`, `appli`, `startdate`, `enddate`.
pub(super) async fn withings(
    State(state): State<Arc<ServerState>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    const PROVIDER: &str = "withings";
    let Some(push) = &state.push else { return StatusCode::NOT_FOUND.into_response() };
    if !withings_token_ok(&state, &token) {
        // Not a callback wearbridge gave Withings: as if there were nothing here.
        count(PROVIDER, "forged");
        return StatusCode::NOT_FOUND.into_response();
    }
    let notice = match withings::push::parse(&body) {
        Ok(n) => n,
        Err(error) => {
            count(PROVIDER, error.result());
            tracing::warn!(%error, "Withings notification refused");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    match note(&state, push, withings::PROVIDER, PROVIDER, &notice).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(status) => status.into_response(),
    }
}

/// Notes one notice in the store. `Err`: the store did not take it in time (the
/// provider sends it again).
async fn note(
    state: &ServerState,
    push: &Push,
    provider: anonymizer::Provider,
    label: &'static str,
    notice: &Notice,
) -> Result<(), StatusCode> {
    if notice.datasets.is_empty() {
        count(label, "ignored");
        return Ok(());
    }
    let store = &state.store;
    let now_ms = state.clock.now().timestamp_millis();
    let work = async {
        if notice.delete {
            let mut known = None;
            for dataset in &notice.datasets {
                let interval = (notice.from.map(|t| t.timestamp_millis()), notice.to.map(|t| t.timestamp_millis()));
                known = store.note_push_deletion(provider, &notice.user_id, dataset.as_str(), interval).await?;
            }
            return Ok::<_, crate::store::StoreError>(known.map(|_| "deleted"));
        }
        let datasets: Vec<&str> = notice.datasets.iter().map(|d| d.as_str()).collect();
        let due = now_ms + i64::try_from(push.settings.delay.as_millis()).unwrap_or(0);
        let from = notice.from.map(|t| t.timestamp_millis());
        Ok(store.note_push(provider, &notice.user_id, &datasets, due, from).await?.map(|_| "accepted"))
    };
    match tokio::time::timeout(NOTE_TIMEOUT, work).await {
        Ok(Ok(Some(result))) => {
            count(label, result);
            if let (Some(wake), "accepted") = (&push.wake, result) {
                let (wake, delay) = (wake.clone(), push.settings.delay + Duration::from_millis(20));
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    wake.notify_one();
                });
            }
            if result == "deleted" {
                tracing::info!(
                    provider = label,
                    "upstream deleted data; published messages cannot be recalled (recorded in push_deletions)"
                );
            }
            Ok(())
        }
        Ok(Ok(None)) => {
            count(label, "unknown_user");
            Ok(())
        }
        Ok(Err(error)) => {
            count(label, "store_error");
            tracing::warn!(%error, provider = label, "could not note a notification; the provider will send it again");
            Err(StatusCode::SERVICE_UNAVAILABLE)
        }
        Err(_) => {
            count(label, "store_timeout");
            tracing::warn!(
                provider = label,
                "the store took too long to note a notification; the provider will send it again"
            );
            Err(StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}
