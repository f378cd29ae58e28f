//! What every source's OAuth endpoints offer wearbridge, whatever the provider: the
//! authorisation URL, the code exchange, the refresh grant and revocation.
//!
//! The token manager, `connect`, the consent pages and `users remove` work on this trait
//! only; each source implements it in its own `oauth.rs` with its provider's quirks
//! (Google's PKCE and offline access, Withings' HTTP-200 envelopes).

use futures::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

use crate::config::Dataset;
use crate::onboarding::OnboardError;

/// A successful token answer.
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: SecretString,
    #[serde(default = "default_expiry")]
    pub expires_in: i64,
    /// Present when the provider rotates the refresh token.
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
    /// An HTTP-200 envelope with a provider status that may pass (Withings 5xx, 522).
    #[error("the token endpoint answered Withings status {0}")]
    ProviderStatus(i64),
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
                | RefreshError::ProviderStatus(_)
                | RefreshError::Transport(_)
                | RefreshError::Malformed(_)
                | RefreshError::Throttled(_)
        )
    }
}

/// POSTs `form` to an OAuth endpoint: the HTTP status and the whole body, or why the
/// endpoint could not be reached (without the URL, which may carry a secret).
pub(crate) async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> Result<(u16, Vec<u8>), String> {
    let response = http.post(url).form(form).send().await.map_err(|e| e.without_url().to_string())?;
    let status = response.status().as_u16();
    // A token answer is a few hundred bytes.
    let body = crate::http::read_body(response, 1 << 20, "oauth").await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// The provider's authorisation page for one enrolment.
pub struct AuthorizeUrl {
    pub url: String,
    /// The PKCE verifier to send with the code, when the provider takes one.
    pub verifier: Option<SecretString>,
}

/// What an authorisation code bought.
pub struct Exchanged {
    pub refresh_token: SecretString,
    pub access_token: SecretString,
    pub expires_in: i64,
    /// The scopes the provider says were granted, as it wrote them.
    pub scopes: String,
    /// The provider's user id (personal data: stored encrypted, never logged).
    pub user_id: String,
}

/// What `users remove` could do about the grant at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked at the named service ("Google").
    Revoked { at: &'static str },
    /// Already revoked or expired.
    NothingToRevoke,
    /// The provider offers no revocation endpoint; the text says what the person can do.
    Unsupported(&'static str),
}

/// One provider's OAuth 2.0 endpoints, configured from its settings section.
pub trait OAuth: Send + Sync {
    /// Whether `client_id` and `client_secret` are set.
    fn credentials(&self) -> (bool, bool);
    /// The authorisation page's URL (its origin is where consent forms may lead).
    fn auth_url(&self) -> &str;
    /// The authorisation URL asking for what `datasets` need.
    fn authorize(&self, redirect_uri: &str, state: &str, datasets: &[Dataset]) -> Result<AuthorizeUrl, OnboardError>;
    /// Exchanges an authorisation code, at once (Withings codes live 30 seconds).
    fn exchange<'a>(
        &'a self,
        code: &'a str,
        redirect_uri: &'a str,
        verifier: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Exchanged, OnboardError>>;
    /// The scopes `datasets` need that `granted` (as the provider wrote it) lacks.
    fn missing_scopes(&self, granted: &str, datasets: &[Dataset]) -> Vec<String>;
    /// The refresh-token grant for the account `account_id` (whose planned requests it
    /// may draw on, where the provider counts token requests against its quota).
    fn refresh<'a>(
        &'a self,
        account_id: i64,
        refresh_token: &'a SecretString,
    ) -> BoxFuture<'a, Result<TokenResponse, RefreshError>>;
    /// Ends the grant at the provider, where it offers that.
    fn revoke<'a>(&'a self, refresh_token: &'a SecretString) -> BoxFuture<'a, Result<Revocation, OnboardError>>;
}
