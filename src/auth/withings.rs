//! Withings' token endpoint: `POST /v2/oauth2` `action=requesttoken`, answered with HTTP
//! 200 and a `{"status", "body"}` envelope. Every refresh rotates the refresh token.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{RefreshError, TokenResponse};
use crate::sources::json_position;

/// Withings' envelope around every answer.
#[derive(Deserialize)]
struct Envelope<T> {
    status: i64,
    #[serde(default = "Option::default")]
    body: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct TokenBody {
    #[serde(default, deserialize_with = "crate::sources::withings::api::opt_id")]
    userid: Option<String>,
    access_token: SecretString,
    refresh_token: SecretString,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Deserialize, Default)]
struct ThrottleBody {
    #[serde(default)]
    wait_seconds: Option<u64>,
}

/// Client for the Withings token endpoint.
#[derive(Clone)]
pub struct WithingsOAuth {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
}

impl std::fmt::Debug for WithingsOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithingsOAuth")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl WithingsOAuth {
    /// `api_base_url` is `withings.api_base_url`; the endpoint is `/v2/oauth2` below it.
    pub fn new(http: reqwest::Client, api_base_url: &str, client_id: String, client_secret: SecretString) -> Self {
        let token_url = format!("{}/v2/oauth2", api_base_url.trim_end_matches('/'));
        Self { http, token_url, client_id, client_secret }
    }

    /// `grant_type=refresh_token`; the answer always carries a new refresh token.
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenResponse, RefreshError> {
        let form = [
            ("action", "requesttoken"),
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| RefreshError::Transport(e.without_url().to_string()))?;
        let http_status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| RefreshError::Transport(e.without_url().to_string()))?;
        if !(200..300).contains(&http_status) {
            return Err(RefreshError::Server { status: http_status });
        }
        let head: Envelope<serde::de::IgnoredAny> =
            serde_json::from_slice(&bytes).map_err(|e| RefreshError::Malformed(json_position(&e)))?;
        match head.status {
            0 => {
                let env: Envelope<TokenBody> =
                    serde_json::from_slice(&bytes).map_err(|e| RefreshError::Malformed(json_position(&e)))?;
                let body = env.body.ok_or_else(|| RefreshError::Malformed("status 0 without a body".into()))?;
                Ok(TokenResponse {
                    access_token: body.access_token,
                    expires_in: body.expires_in.unwrap_or(10_800),
                    refresh_token: Some(body.refresh_token),
                    scope: body.scope,
                    user_id: body.userid,
                })
            }
            601 => {
                let env: Envelope<ThrottleBody> =
                    serde_json::from_slice(&bytes).unwrap_or(Envelope { status: 601, body: None, error: None });
                Err(RefreshError::Throttled(env.body.and_then(|b| b.wait_seconds).map(Duration::from_secs)))
            }
            100..=102 | 200 | 401 => Err(RefreshError::InvalidGrant),
            status => {
                let error = head.error.unwrap_or_default();
                let lower = error.to_ascii_lowercase();
                if lower.contains("refresh_token") || lower.contains("invalid_grant") {
                    Err(RefreshError::InvalidGrant)
                } else if lower.contains("client") {
                    Err(RefreshError::Client { status: 200, error: format!("status {status}: {error}") })
                } else if status == 522 || status >= 500 && !lower.contains("invalid params") {
                    Err(RefreshError::Server { status: 200 })
                } else {
                    Err(RefreshError::Client { status: 200, error: format!("status {status}: {error}") })
                }
            }
        }
    }
}
