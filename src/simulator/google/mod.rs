//! Fake Google Health API v4 and Google OAuth 2.0 token endpoint, after
//! `specs/google-health-v4-discovery.json` (revision 20260527) and Google's error format
//! (`{"error":{"code","message","status","details"}}`).

mod filter;
mod health;
mod oauth;
pub(crate) mod series;

pub(crate) use oauth::{GRANTED_SCOPES, OAuthState};

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::SimState;

pub(crate) fn router() -> Router<Arc<SimState>> {
    Router::new()
        .route("/oauth2/token", post(oauth::token))
        .route("/revoke", post(oauth::revoke))
        .route("/o/oauth2/v2/auth", get(super::consent::google_authorize))
        .route("/o/oauth2/v2/approve", post(super::consent::google_approve))
        .route("/v4/users/{user}/identity", get(health::identity))
        .route("/v4/users/{user}/settings", get(health::settings))
        .route("/v4/users/{user}/pairedDevices", get(health::paired_devices))
        .route("/v4/users/{user}/dataTypes/{data_type}/dataPoints", get(health::list_data_points))
        .route("/v4/users/{user}/dataTypes/{data_type}/dataPoints:dailyRollUp", post(health::daily_roll_up))
        .route(
            "/v4/projects/{project}/subscribers",
            get(super::push::list_subscribers).post(super::push::create_subscriber),
        )
        .route(
            "/v4/projects/{project}/subscribers/{id}",
            axum::routing::delete(super::push::delete_subscriber).patch(super::push::patch_subscriber),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "NOT_FOUND", "Requested entity was not found.") })
}

/// Label for counters and faults: `google.token`, `google.identity`,
/// `google.dataPoints.heart-rate`, ...
pub(crate) fn endpoint_label(path: &str) -> String {
    if path == "/oauth2/token" {
        return "google.token".into();
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v4", "users", _, "dataTypes", data_type, "dataPoints"] => format!("google.dataPoints.{data_type}"),
        ["v4", "users", _, "dataTypes", data_type, "dataPoints:dailyRollUp"] => {
            format!("google.dailyRollUp.{data_type}")
        }
        ["v4", "users", _, resource] => format!("google.{resource}"),
        ["v4", "projects", _, "subscribers", ..] => "google.subscribers".into(),
        _ => format!("google{path}"),
    }
}

/// A Google API error body with the canonical status name for `code`.
pub(crate) fn error(code: StatusCode, status: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": code.as_u16(),
            "message": message,
            "status": status,
        }
    });
    (code, Json(body)).into_response()
}

pub(crate) fn error_for_status(code: StatusCode) -> Response {
    match code.as_u16() {
        400 => error(code, "INVALID_ARGUMENT", "Request contains an invalid argument."),
        401 => error(
            code,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        ),
        403 => error(code, "PERMISSION_DENIED", "The caller does not have permission"),
        404 => error(code, "NOT_FOUND", "Requested entity was not found."),
        429 => {
            let body = json!({"error": {
                "code": 429,
                "message": "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'health.googleapis.com'.",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com"}]
            }});
            (code, Json(body)).into_response()
        }
        503 => error(code, "UNAVAILABLE", "The service is currently unavailable."),
        _ => error(code, "INTERNAL", "Internal error encountered."),
    }
}

/// OAuth's `invalid_grant`, as Google sends it for revoked or expired refresh tokens.
pub(crate) fn invalid_grant() -> Response {
    let body = json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}
