//! Fake Withings API after `specs/withings-openapi.yml`: every answer is HTTP 200 with a
//! `{"status", "body"}` envelope (errors too), refresh tokens rotate on every refresh (the
//! old one works until the new access token is used or 8 hours pass), `userid` comes as a
//! number or a string, lists page with `more`/`offset`, 601 carries `wait_seconds`, and
//! the application may make 120 requests a minute ([`quota`]).

mod data;
mod oauth;
mod quota;

pub(crate) use oauth::OAuthState;
pub(crate) use quota::{AppQuota, enforce as enforce_quota};

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{Person, SimState};

pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/v2/oauth2", post(oauth::oauth2))
        .route("/oauth2_user/authorize2", axum::routing::get(super::consent::withings_authorize))
        .route("/oauth2_user/approve", post(super::consent::withings_approve))
        .route("/measure", post(data::measure))
        .route("/v2/measure", post(data::measure_v2))
        .route("/v2/sleep", post(data::sleep))
        .route("/v2/user", post(data::user))
        .route("/notify", post(super::push::withings_notify))
}

/// `{"status": 0, "body": ...}`.
pub(crate) fn ok(body: Value) -> Response {
    Json(json!({"status": 0, "body": body})).into_response()
}

/// An error envelope, still HTTP 200 as Withings sends it.
pub(crate) fn status(code: i64, error: &str) -> Response {
    Json(json!({"status": code, "body": {}, "error": error})).into_response()
}

/// 601 with the pause the client must observe.
pub(crate) fn throttled(wait_seconds: Option<u64>) -> Response {
    let body = match wait_seconds {
        Some(w) => json!({"wait_seconds": w}),
        None => json!({}),
    };
    Json(json!({"status": 601, "body": body, "error": "Too Many Requests"})).into_response()
}

/// A refused request: an error envelope with this status and message.
pub(crate) struct Reject(pub i64, pub String);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        status(self.0, &self.1)
    }
}

const INVALID_TOKEN: &str = "XRequestID: Not provided invalid_token: The access token provided is invalid";

/// The person behind the bearer token (using it kills the refresh token it replaced).
pub(crate) fn authorize<'a>(state: &'a SimState, headers: &HeaderMap) -> Result<&'a Person, Reject> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Reject(401, INVALID_TOKEN.into()))?;
    let index = state.withings.use_access(token, state.clock.now()).ok_or_else(|| Reject(401, INVALID_TOKEN.into()))?;
    state.people.get(index).ok_or_else(|| Reject(401, INVALID_TOKEN.into()))
}

/// The counter/fault label of a Withings request: `withings.<action>`.
pub(crate) fn endpoint_label(action: Option<&str>, path: &str) -> String {
    match action {
        Some(a) => format!("withings.{a}"),
        None => format!("withings{path}"),
    }
}
