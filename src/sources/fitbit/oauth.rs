//! Google's OAuth 2.0 endpoints for the Google Health API: authorisation with PKCE S256
//! and `access_type=offline&prompt=consent` (or no refresh token comes back), the code
//! exchange, the refresh grant and revocation.
//!
//! Hand-written (reqwest form + serde) because it is small and the `oauth2` crate would
//! pull a second reqwest.

use base64::Engine;
use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::GoogleHealthClient;
use crate::auth::{AuthorizeUrl, Exchanged, OAuth, RefreshError, Revocation, TokenResponse, post_form};
use crate::config::{Dataset, FitbitSettings};
use crate::onboarding::{OnboardError, random};
use crate::sources::{code_name, json_position};

/// The Google scope each dataset needs (named in the log when it is missing).
pub fn scope_for(dataset: Dataset) -> &'static str {
    match dataset {
        Dataset::Devices => "https://www.googleapis.com/auth/googlehealth.settings.readonly",
        Dataset::Activity => "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly",
        Dataset::HeartRate | Dataset::Body => {
            "https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly"
        }
        Dataset::Sleep => "https://www.googleapis.com/auth/googlehealth.sleep.readonly",
    }
}

/// The Google scopes `datasets` need (settings, for the time zone, always).
pub fn google_scopes(datasets: &[Dataset]) -> Vec<&'static str> {
    let mut scopes: Vec<&'static str> = datasets.iter().map(|d| scope_for(*d)).collect();
    scopes.push(scope_for(Dataset::Devices));
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

/// An OAuth error answer; only its `error` code is kept (the description is free text).
#[derive(Deserialize)]
struct OAuthErrorBody {
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct CodeTokens {
    access_token: SecretString,
    #[serde(default)]
    expires_in: i64,
    refresh_token: Option<SecretString>,
    #[serde(default)]
    scope: String,
}

/// A token endpoint's answer to the refresh grant. Pure, so it is fuzzed with any bytes.
pub(crate) fn parse_refresh(status: u16, body: &[u8]) -> Result<TokenResponse, RefreshError> {
    if (200..300).contains(&status) {
        // The position only: serde's messages can quote values, and this body holds tokens.
        return serde_json::from_slice(body).map_err(|e| RefreshError::Malformed(json_position(&e)));
    }
    if status >= 500 || status == 429 {
        return Err(RefreshError::Server { status });
    }
    let error = GoogleOAuth::error_of(status, body).error;
    if error == "invalid_grant" {
        return Err(RefreshError::InvalidGrant);
    }
    Err(RefreshError::Client { status, error })
}

/// Client for Google's OAuth endpoints.
#[derive(Clone)]
pub struct GoogleOAuth {
    http: reqwest::Client,
    settings: FitbitSettings,
}

impl std::fmt::Debug for GoogleOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleOAuth")
            .field("token_url", &self.settings.token_url)
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

impl GoogleOAuth {
    pub fn new(http: reqwest::Client, settings: FitbitSettings) -> Self {
        Self { http, settings }
    }

    fn client(&self) -> Result<(&str, &SecretString), OnboardError> {
        match (&self.settings.client_id, &self.settings.client_secret) {
            (Some(id), Some(secret)) => Ok((id, secret)),
            _ => Err(OnboardError::NotConfigured("fitbit")),
        }
    }

    fn error_of(status: u16, body: &[u8]) -> OAuthErrorBody {
        serde_json::from_slice(body)
            .map(|b: OAuthErrorBody| OAuthErrorBody { error: code_name(&b.error) })
            .unwrap_or(OAuthErrorBody { error: format!("HTTP-{status}") })
    }

    /// `grant_type=refresh_token`.
    pub async fn refresh_token(&self, refresh_token: &SecretString) -> Result<TokenResponse, RefreshError> {
        let empty = SecretString::from(String::new());
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
            ("client_id", self.settings.client_id.as_deref().unwrap_or_default()),
            ("client_secret", self.settings.client_secret.as_ref().unwrap_or(&empty).expose_secret()),
        ];
        let (status, body) =
            post_form(&self.http, &self.settings.token_url, &form).await.map_err(RefreshError::Transport)?;
        parse_refresh(status, &body)
    }

    async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&SecretString>,
    ) -> Result<Exchanged, OnboardError> {
        let (id, secret) = self.client()?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", id),
            ("client_secret", secret.expose_secret()),
            ("code_verifier", verifier.map(|v| v.expose_secret()).unwrap_or_default()),
        ];
        let (status, body) =
            post_form(&self.http, &self.settings.token_url, &form).await.map_err(OnboardError::Transport)?;
        if !(200..300).contains(&status) {
            let e = Self::error_of(status, &body);
            return Err(OnboardError::Exchange(format!("Google answered {}", e.error)));
        }
        let t: CodeTokens = serde_json::from_slice(&body)
            .map_err(|e| OnboardError::Exchange(format!("malformed answer: {}", json_position(&e))))?;
        let refresh_token = t.refresh_token.ok_or(OnboardError::NoRefreshToken)?;
        let client = GoogleHealthClient::new(self.http.clone(), &self.settings.api_base_url);
        let identity = client.identity(&t.access_token).await.map_err(|e| OnboardError::Identity(e.to_string()))?;
        Ok(Exchanged {
            refresh_token,
            access_token: t.access_token,
            expires_in: t.expires_in,
            scopes: t.scope,
            user_id: identity.health_user_id,
        })
    }

    async fn revoke_grant(&self, refresh_token: &SecretString) -> Result<Revocation, OnboardError> {
        let form = [("token", refresh_token.expose_secret())];
        let (status, body) =
            post_form(&self.http, &self.settings.revoke_url, &form).await.map_err(OnboardError::Transport)?;
        if (200..300).contains(&status) {
            return Ok(Revocation::Revoked { at: "Google" });
        }
        let e = Self::error_of(status, &body);
        if e.error == "invalid_token" {
            // Already revoked or expired: nothing left to end.
            return Ok(Revocation::NothingToRevoke);
        }
        Err(OnboardError::Exchange(format!("revocation refused: {}", e.error)))
    }
}

impl OAuth for GoogleOAuth {
    fn credentials(&self) -> (bool, bool) {
        (self.settings.client_id.is_some(), self.settings.client_secret.is_some())
    }

    fn auth_url(&self) -> &str {
        &self.settings.auth_url
    }

    fn authorize(&self, redirect_uri: &str, state: &str, datasets: &[Dataset]) -> Result<AuthorizeUrl, OnboardError> {
        let client_id = self.settings.client_id.as_deref().ok_or(OnboardError::NotConfigured("fitbit"))?;
        let mut url = url::Url::parse(&self.settings.auth_url)
            .map_err(|e| OnboardError::Exchange(format!("fitbit.auth_url: {e}")))?;
        let verifier = random(48)?;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("scope", &google_scopes(datasets).join(" "))
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent");
        Ok(AuthorizeUrl { url: url.to_string(), verifier: Some(SecretString::from(verifier)) })
    }

    fn exchange<'a>(
        &'a self,
        code: &'a str,
        redirect_uri: &'a str,
        verifier: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Exchanged, OnboardError>> {
        self.exchange_code(code, redirect_uri, verifier).boxed()
    }

    fn missing_scopes(&self, granted: &str, datasets: &[Dataset]) -> Vec<String> {
        google_scopes(datasets)
            .into_iter()
            .filter(|s| !granted.split_whitespace().any(|g| g == *s))
            .map(str::to_owned)
            .collect()
    }

    fn refresh<'a>(
        &'a self,
        _account_id: i64,
        refresh_token: &'a SecretString,
    ) -> BoxFuture<'a, Result<TokenResponse, RefreshError>> {
        self.refresh_token(refresh_token).boxed()
    }

    fn revoke<'a>(&'a self, refresh_token: &'a SecretString) -> BoxFuture<'a, Result<Revocation, OnboardError>> {
        self.revoke_grant(refresh_token).boxed()
    }
}
