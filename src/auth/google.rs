//! Google's OAuth 2.0 token endpoint: the refresh-token grant.
//!
//! Hand-written (reqwest form + serde) because it is small and the `oauth2` crate would
//! pull a second reqwest.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A successful token answer.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: SecretString,
    #[serde(default = "default_expiry")]
    pub expires_in: i64,
    /// Present only when Google rotates the refresh token.
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub scope: Option<String>,
    /// The provider's user id, when the token answer names it (Withings `userid`).
    #[serde(skip)]
    pub user_id: Option<String>,
}

fn default_expiry() -> i64 {
    3600
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Why a refresh failed. Messages never contain tokens or the client secret.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("invalid_grant: the refresh token was revoked or expired")]
    InvalidGrant,
    #[error(
        "the token endpoint rejected the request (HTTP {status}, {error}); check the provider's client_id and client_secret"
    )]
    Client { status: u16, error: String },
    #[error("the token endpoint asked to slow down (601)")]
    Throttled(Option<std::time::Duration>),
    #[error("the token endpoint answered HTTP {status}")]
    Server { status: u16 },
    #[error("cannot reach the token endpoint: {0}")]
    Transport(String),
    #[error("the token endpoint's answer is malformed: {0}")]
    Malformed(String),
}

impl crate::retry::Retryable for RefreshError {
    fn verdict(&self) -> crate::retry::Verdict {
        use crate::retry::Verdict;
        match self {
            RefreshError::Throttled(Some(wait)) => Verdict::RetryAfter(*wait),
            e if e.is_transient() => Verdict::Retry,
            _ => Verdict::GiveUp,
        }
    }
}

impl RefreshError {
    /// Worth retrying with back-off.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RefreshError::Server { .. }
                | RefreshError::Transport(_)
                | RefreshError::Malformed(_)
                | RefreshError::Throttled(_)
        )
    }
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
}

/// Client for Google's token endpoint.
#[derive(Clone)]
pub struct GoogleOAuth {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
}

impl std::fmt::Debug for GoogleOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleOAuth")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl GoogleOAuth {
    pub fn new(http: reqwest::Client, token_url: String, client_id: String, client_secret: SecretString) -> Self {
        Self { http, token_url, client_id, client_secret }
    }

    /// `grant_type=refresh_token`.
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenResponse, RefreshError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| RefreshError::Transport(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| RefreshError::Transport(e.without_url().to_string()))?;
        if (200..300).contains(&status) {
            // The position only: serde's messages can quote values, and this body holds tokens.
            return serde_json::from_slice(&body).map_err(|e| {
                RefreshError::Malformed(format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()))
            });
        }
        if status >= 500 || status == 429 {
            return Err(RefreshError::Server { status });
        }
        let error =
            serde_json::from_slice::<OAuthErrorBody>(&body).map(|b| b.error).unwrap_or_else(|_| "unknown".into());
        if error == "invalid_grant" {
            return Err(RefreshError::InvalidGrant);
        }
        Err(RefreshError::Client { status, error })
    }
}
