//! Withings' OAuth endpoints: authorisation, and `POST /v2/oauth2` `action=requesttoken`
//! for both the code exchange and the refresh grant, answered with HTTP 200 and a
//! `{"status", "body"}` envelope. Every refresh rotates the refresh token; the answer
//! names the user. Withings offers no revocation endpoint.

use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::auth::{AuthorizeUrl, Exchanged, OAuth, RefreshError, Revocation, TokenResponse, post_form};
use crate::config::{Dataset, WithingsSettings};
use crate::onboarding::OnboardError;
use crate::sources::json_position;

/// Scopes asked of Withings (comma-separated, as Withings writes them).
const SCOPES: &str = "user.info,user.metrics,user.activity";

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
    #[serde(default, deserialize_with = "super::api::opt_id")]
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

/// The token endpoint's answer to the refresh grant (an HTTP-200 envelope). Pure, so it
/// is fuzzed with any bytes.
pub(crate) fn parse_refresh(http_status: u16, bytes: &[u8]) -> Result<TokenResponse, RefreshError> {
    if !(200..300).contains(&http_status) {
        return Err(RefreshError::Server { status: http_status });
    }
    let head: Envelope<serde::de::IgnoredAny> =
        serde_json::from_slice(bytes).map_err(|e| RefreshError::Malformed(json_position(&e)))?;
    match head.status {
        0 => {
            let env: Envelope<TokenBody> =
                serde_json::from_slice(bytes).map_err(|e| RefreshError::Malformed(json_position(&e)))?;
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
                serde_json::from_slice(bytes).unwrap_or(Envelope { status: 601, body: None, error: None });
            Err(RefreshError::Throttled(env.body.and_then(|b| b.wait_seconds).map(Duration::from_secs)))
        }
        100..=102 | 200 | 401 => Err(RefreshError::InvalidGrant),
        status => {
            let error = head.error.unwrap_or_default();
            let lower = error.to_ascii_lowercase();
            if lower.contains("refresh_token") || lower.contains("invalid_grant") {
                Err(RefreshError::InvalidGrant)
            } else if lower.contains("client") {
                Err(RefreshError::Client { status: 200, error: format!("Withings status {status}") })
            } else if status == 522 || status >= 500 && !lower.contains("invalid params") {
                Err(RefreshError::ProviderStatus(status))
            } else {
                Err(RefreshError::Client { status: 200, error: format!("Withings status {status}") })
            }
        }
    }
}

/// Client for the Withings OAuth endpoints.
#[derive(Clone)]
pub struct WithingsOAuth {
    http: reqwest::Client,
    settings: WithingsSettings,
    /// Withings counts token requests against the application's quota.
    budget: std::sync::Arc<crate::sources::budget::Budget>,
}

impl std::fmt::Debug for WithingsOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithingsOAuth")
            .field("api_base_url", &self.settings.api_base_url)
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

impl WithingsOAuth {
    pub fn new(
        http: reqwest::Client,
        settings: WithingsSettings,
        budget: std::sync::Arc<crate::sources::budget::Budget>,
    ) -> Self {
        Self { http, settings, budget }
    }

    fn token_url(&self) -> String {
        format!("{}/v2/oauth2", self.settings.api_base_url.trim_end_matches('/'))
    }

    /// `grant_type=refresh_token`; the answer always carries a new refresh token.
    pub async fn refresh_token(&self, refresh_token: &SecretString) -> Result<TokenResponse, RefreshError> {
        let empty = SecretString::from(String::new());
        let form = [
            ("action", "requesttoken"),
            ("grant_type", "refresh_token"),
            ("client_id", self.settings.client_id.as_deref().unwrap_or_default()),
            ("client_secret", self.settings.client_secret.as_ref().unwrap_or(&empty).expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        let (http_status, bytes) =
            post_form(&self.http, &self.token_url(), &form).await.map_err(RefreshError::Transport)?;
        parse_refresh(http_status, &bytes)
    }

    async fn exchange_code(&self, code: &str, redirect_uri: &str) -> Result<Exchanged, OnboardError> {
        let (Some(id), Some(secret)) = (&self.settings.client_id, &self.settings.client_secret) else {
            return Err(OnboardError::NotConfigured("withings"));
        };
        let form = [
            ("action", "requesttoken"),
            ("grant_type", "authorization_code"),
            ("client_id", id.as_str()),
            ("client_secret", secret.expose_secret()),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        self.budget.acquire(None).await;
        let (_, body) = post_form(&self.http, &self.token_url(), &form).await.map_err(OnboardError::Transport)?;
        let malformed =
            |e: serde_json::Error| OnboardError::Exchange(format!("malformed answer: {}", json_position(&e)));
        let head: Envelope<serde::de::IgnoredAny> = serde_json::from_slice(&body).map_err(malformed)?;
        if head.status != 0 {
            return Err(OnboardError::Exchange(format!(
                "Withings status {} (Withings codes are valid for 30 seconds; connect again)",
                head.status
            )));
        }
        let envelope: Envelope<TokenBody> = serde_json::from_slice(&body).map_err(malformed)?;
        let t = envelope.body.ok_or_else(|| OnboardError::Exchange("status 0 without a body".into()))?;
        Ok(Exchanged {
            refresh_token: t.refresh_token,
            access_token: t.access_token,
            expires_in: t.expires_in.unwrap_or(10_800),
            scopes: t.scope.unwrap_or_default(),
            user_id: t.userid.ok_or_else(|| OnboardError::Identity("the token answer named no userid".into()))?,
        })
    }
}

impl OAuth for WithingsOAuth {
    fn credentials(&self) -> (bool, bool) {
        (self.settings.client_id.is_some(), self.settings.client_secret.is_some())
    }

    fn auth_url(&self) -> &str {
        &self.settings.auth_url
    }

    fn authorize(&self, redirect_uri: &str, state: &str, _datasets: &[Dataset]) -> Result<AuthorizeUrl, OnboardError> {
        let client_id = self.settings.client_id.as_deref().ok_or(OnboardError::NotConfigured("withings"))?;
        let mut url = url::Url::parse(&self.settings.auth_url)
            .map_err(|e| OnboardError::Exchange(format!("withings.auth_url: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state)
            .append_pair("scope", SCOPES);
        Ok(AuthorizeUrl { url: url.to_string(), verifier: None })
    }

    fn exchange<'a>(
        &'a self,
        code: &'a str,
        redirect_uri: &'a str,
        _verifier: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Exchanged, OnboardError>> {
        self.exchange_code(code, redirect_uri).boxed()
    }

    fn missing_scopes(&self, granted: &str, _datasets: &[Dataset]) -> Vec<String> {
        SCOPES.split(',').filter(|s| !granted.split(',').any(|g| g.trim() == *s)).map(str::to_owned).collect()
    }

    fn refresh<'a>(
        &'a self,
        account_id: i64,
        refresh_token: &'a SecretString,
    ) -> BoxFuture<'a, Result<TokenResponse, RefreshError>> {
        async move {
            self.budget.acquire(Some(account_id)).await;
            self.refresh_token(refresh_token).await
        }
        .boxed()
    }

    fn revoke<'a>(&'a self, _refresh_token: &'a SecretString) -> BoxFuture<'a, Result<Revocation, OnboardError>> {
        futures::future::ready(Ok(Revocation::Unsupported(
            "Withings offers no revocation endpoint: the person can remove the app under Withings account settings.",
        )))
        .boxed()
    }
}
