//! Enrolment by consent: the authorisation URL (random `state`; for Google PKCE S256 and
//! `access_type=offline&prompt=consent`), the code exchange right after the redirect
//! (Withings codes live 30 seconds), and storing what came back: tokens (encrypted), the
//! consent (provider, granted scopes, time) and the hash of a per-account leave secret.
//!
//! Shared by `wearbridge connect` (loopback callback) and the worker's `/connect` page.

use anonymizer::{Provider, PseudonymKey};
use base64::Engine;
use chrono::TimeDelta;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::{Dataset, Settings};
use crate::sources::fitbit::GoogleHealthClient;
use crate::store::{Account, Consent, SqlStore, Store, StoreError, Tokens};

/// Scopes asked of Withings.
const WITHINGS_SCOPES: &str = "user.info,user.metrics,user.activity";

/// Why enrolment failed, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error("{0} is not configured: set {0}.client_id and {0}.client_secret")]
    NotConfigured(&'static str),
    #[error("the provider's answer does not belong to this request (state mismatch); start again")]
    StateMismatch,
    #[error("access was denied at the provider ({0}); nothing was stored")]
    Denied(String),
    #[error("the provider refused the authorisation code: {0}")]
    Exchange(String),
    #[error("cannot reach the provider's token endpoint: {0}")]
    Transport(String),
    #[error("Google returned no refresh token; remove wearbridge's access in the Google account and connect again")]
    NoRefreshToken,
    #[error("could not read the account's identity from the provider: {0}")]
    Identity(String),
    #[error("the system's random source failed: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A started authorisation: send the person to `url`, keep the rest for the callback.
pub struct Authorization {
    pub provider: Provider,
    pub url: String,
    pub state: String,
    pub redirect_uri: String,
    verifier: Option<SecretString>,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization").field("provider", &self.provider).finish_non_exhaustive()
    }
}

/// What enrolment produced.
#[derive(Debug)]
pub struct Enrolled {
    pub account: Account,
    /// Scopes the configured datasets need that the person did not grant.
    pub missing_scopes: Vec<String>,
    /// The pseudonymous subject the person's data is published under.
    pub subject: String,
    /// Shown once (in the leave link); only its hash is stored.
    pub leave_secret: SecretString,
}

/// `bytes` random bytes, base64url. No fallback: a guessable `state`, verifier or leave
/// secret would be worse than no enrolment.
fn random(bytes: usize) -> Result<String, OnboardError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| OnboardError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// SHA-256 hex of a leave secret.
pub fn leave_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The Google scopes `datasets` need.
pub fn google_scopes(datasets: &[Dataset]) -> Vec<&'static str> {
    let mut scopes: Vec<&'static str> = datasets.iter().map(|d| crate::pipeline::scope_for(*d)).collect();
    scopes.push(crate::pipeline::scope_for(Dataset::Devices)); // settings: the time zone
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

/// Fails early, before the person is sent to the provider, when `name` is taken by an
/// account that is not removed.
pub async fn check_name_free(store: &SqlStore, name: &str) -> Result<(), OnboardError> {
    crate::store::validate_account_name(name)?;
    match store.account(name).await? {
        Some(a) if a.status != crate::store::AccountStatus::Removed => {
            Err(OnboardError::Store(StoreError::AccountExists(name.to_owned())))
        }
        _ => Ok(()),
    }
}

/// Starts an authorisation for `provider` returning to `redirect_uri`.
pub fn authorize(settings: &Settings, provider: Provider, redirect_uri: &str) -> Result<Authorization, OnboardError> {
    let state = random(16)?;
    let (base, client_id) = match provider {
        Provider::Fitbit => (&settings.fitbit.auth_url, &settings.fitbit.client_id),
        Provider::Withings => (&settings.withings.auth_url, &settings.withings.client_id),
    };
    let client_id = client_id.as_deref().ok_or(OnboardError::NotConfigured(provider.as_str()))?;
    let mut url = url::Url::parse(base).map_err(|e| OnboardError::Exchange(e.to_string()))?;
    let mut verifier = None;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code").append_pair("client_id", client_id);
        q.append_pair("redirect_uri", redirect_uri).append_pair("state", &state);
        match provider {
            Provider::Fitbit => {
                let v = random(48)?;
                let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()));
                q.append_pair("scope", &google_scopes(&settings.sync.datasets).join(" "));
                q.append_pair("code_challenge", &challenge).append_pair("code_challenge_method", "S256");
                q.append_pair("access_type", "offline").append_pair("prompt", "consent");
                verifier = Some(SecretString::from(v));
            }
            Provider::Withings => {
                q.append_pair("scope", WITHINGS_SCOPES);
            }
        }
    }
    Ok(Authorization { provider, url: url.to_string(), state, redirect_uri: redirect_uri.to_owned(), verifier })
}

#[derive(Deserialize)]
struct GoogleTokens {
    access_token: SecretString,
    #[serde(default)]
    expires_in: i64,
    refresh_token: Option<SecretString>,
    #[serde(default)]
    scope: String,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Deserialize)]
struct WithingsEnvelope {
    status: i64,
    #[serde(default)]
    error: Option<String>,
    /// Error envelopes carry `{}` here: parsed as tokens only when `status` is 0.
    #[serde(default)]
    body: serde_json::Value,
}

#[derive(Deserialize)]
struct WithingsTokens {
    #[serde(default, deserialize_with = "crate::sources::withings::api::opt_id")]
    userid: Option<String>,
    access_token: SecretString,
    refresh_token: SecretString,
    #[serde(default)]
    expires_in: i64,
    #[serde(default)]
    scope: String,
}

/// What a code bought.
struct Exchanged {
    tokens: Tokens,
    scopes: String,
    user_id: String,
}

/// Completes an authorisation: checks `state`, exchanges the code at once, and enrols
/// the account `name` (a removed account of that name is re-enrolled).
pub async fn complete(
    store: &SqlStore,
    settings: &Settings,
    key: &PseudonymKey,
    authorization: &Authorization,
    name: &str,
    callback: &std::collections::HashMap<String, String>,
    clock: &Clock,
) -> Result<Enrolled, OnboardError> {
    if callback.get("state") != Some(&authorization.state) {
        return Err(OnboardError::StateMismatch);
    }
    if let Some(error) = callback.get("error") {
        return Err(OnboardError::Denied(error.clone()));
    }
    let code = callback.get("code").ok_or_else(|| OnboardError::Exchange("the redirect carried no code".into()))?;
    crate::store::validate_account_name(name)?;
    let http = crate::http::client().map_err(|e| OnboardError::Transport(e.to_string()))?;
    let exchanged = match authorization.provider {
        Provider::Fitbit => exchange_google(&http, settings, authorization, code, clock).await?,
        Provider::Withings => exchange_withings(&http, settings, authorization, code, clock).await?,
    };
    let missing_scopes: Vec<String> = match authorization.provider {
        Provider::Fitbit => google_scopes(&settings.sync.datasets)
            .into_iter()
            .filter(|s| !exchanged.scopes.split_whitespace().any(|g| g == *s))
            .map(str::to_owned)
            .collect(),
        Provider::Withings => WITHINGS_SCOPES
            .split(',')
            .filter(|s| !exchanged.scopes.split(',').any(|g| g.trim() == *s))
            .map(str::to_owned)
            .collect(),
    };
    let leave_secret = random(24)?;
    let account = store.add_account(name, authorization.provider, &exchanged.tokens.refresh_token).await?;
    let rest = async {
        store.save_tokens(account.id, &exchanged.tokens).await?;
        store.set_provider_user_id(account.id, &exchanged.user_id).await?;
        let consent = Consent {
            provider: authorization.provider,
            scopes: exchanged.scopes.clone(),
            granted_at: clock.now(),
            leave_hash: leave_hash(&leave_secret),
        };
        store.record_consent(account.id, &consent).await
    };
    if let Err(e) = rest.await {
        // No half-enrolled account: one without its consent record must not be synced.
        let _ = store.remove_account(name).await;
        return Err(e.into());
    }
    let subject = anonymizer::Anonymizer::new(key.clone(), anonymizer::Policy::default())
        .subject(authorization.provider, &exchanged.user_id);
    let account = store.account(name).await?.unwrap_or(account);
    Ok(Enrolled { account, missing_scopes, subject, leave_secret: SecretString::from(leave_secret) })
}

async fn exchange_google(
    http: &reqwest::Client,
    settings: &Settings,
    authorization: &Authorization,
    code: &str,
    clock: &Clock,
) -> Result<Exchanged, OnboardError> {
    let f = &settings.fitbit;
    let (Some(id), Some(secret)) = (&f.client_id, &f.client_secret) else {
        return Err(OnboardError::NotConfigured("fitbit"));
    };
    let verifier = authorization.verifier.as_ref().map(|v| v.expose_secret().to_owned()).unwrap_or_default();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", authorization.redirect_uri.as_str()),
        ("client_id", id.as_str()),
        ("client_secret", secret.expose_secret()),
        ("code_verifier", verifier.as_str()),
    ];
    let response = http
        .post(&f.token_url)
        .form(&form)
        .send()
        .await
        .map_err(|e| OnboardError::Transport(e.without_url().to_string()))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| OnboardError::Transport(e.without_url().to_string()))?;
    if !status.is_success() {
        let e: GoogleError = serde_json::from_slice(&body)
            .unwrap_or(GoogleError { error: format!("HTTP {}", status.as_u16()), error_description: String::new() });
        return Err(OnboardError::Exchange(format!("{}: {}", e.error, e.error_description)));
    }
    let t: GoogleTokens =
        serde_json::from_slice(&body).map_err(|e| OnboardError::Exchange(format!("malformed answer: {e}")))?;
    let refresh = t.refresh_token.ok_or(OnboardError::NoRefreshToken)?;
    let client = GoogleHealthClient::new(http.clone(), &f.api_base_url);
    let identity = client.identity(&t.access_token).await.map_err(|e| OnboardError::Identity(e.to_string()))?;
    Ok(Exchanged {
        tokens: Tokens {
            refresh_token: refresh,
            access_token: Some(t.access_token),
            access_expires_at: Some(clock.now() + TimeDelta::seconds(t.expires_in.max(0))),
        },
        scopes: t.scope,
        user_id: identity.health_user_id,
    })
}

async fn exchange_withings(
    http: &reqwest::Client,
    settings: &Settings,
    authorization: &Authorization,
    code: &str,
    clock: &Clock,
) -> Result<Exchanged, OnboardError> {
    let w = &settings.withings;
    let (Some(id), Some(secret)) = (&w.client_id, &w.client_secret) else {
        return Err(OnboardError::NotConfigured("withings"));
    };
    let form = [
        ("action", "requesttoken"),
        ("grant_type", "authorization_code"),
        ("client_id", id.as_str()),
        ("client_secret", secret.expose_secret()),
        ("code", code),
        ("redirect_uri", authorization.redirect_uri.as_str()),
    ];
    let url = format!("{}/v2/oauth2", w.api_base_url.trim_end_matches('/'));
    let response =
        http.post(url).form(&form).send().await.map_err(|e| OnboardError::Transport(e.without_url().to_string()))?;
    let body = response.bytes().await.map_err(|e| OnboardError::Transport(e.without_url().to_string()))?;
    let envelope: WithingsEnvelope =
        serde_json::from_slice(&body).map_err(|e| OnboardError::Exchange(format!("malformed answer: {e}")))?;
    match envelope.status {
        0 => {
            let t: WithingsTokens = serde_json::from_value(envelope.body)
                .map_err(|e| OnboardError::Exchange(format!("malformed answer: {e}")))?;
            Ok(Exchanged {
                tokens: Tokens {
                    refresh_token: t.refresh_token,
                    access_token: Some(t.access_token),
                    access_expires_at: Some(clock.now() + TimeDelta::seconds(t.expires_in.max(0))),
                },
                scopes: t.scope,
                user_id: t.userid.ok_or_else(|| OnboardError::Identity("the token answer named no userid".into()))?,
            })
        }
        status => Err(OnboardError::Exchange(format!(
            "Withings status {status}: {} (Withings codes are valid for 30 seconds; connect again)",
            envelope.error.unwrap_or_default()
        ))),
    }
}

/// Revokes an account's grant upstream where the provider offers it (Google), before
/// its tokens are deleted. Returns whether a revocation was made.
pub async fn revoke(store: &SqlStore, settings: &Settings, account: &Account) -> Result<bool, OnboardError> {
    if account.provider != Provider::Fitbit {
        return Ok(false);
    }
    let Some(tokens) = store.tokens(account.id).await? else { return Ok(false) };
    let http = crate::http::client().map_err(|e| OnboardError::Transport(e.to_string()))?;
    let response = http
        .post(&settings.fitbit.revoke_url)
        .form(&[("token", tokens.refresh_token.expose_secret())])
        .send()
        .await
        .map_err(|e| OnboardError::Transport(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(true);
    }
    let body = response.bytes().await.unwrap_or_default();
    let e: GoogleError = serde_json::from_slice(&body)
        .unwrap_or(GoogleError { error: format!("HTTP {}", status.as_u16()), error_description: String::new() });
    if e.error == "invalid_token" {
        // Already revoked or expired: nothing left to end.
        return Ok(false);
    }
    Err(OnboardError::Exchange(format!("revocation refused: {}: {}", e.error, e.error_description)))
}

/// Revokes upstream where the provider allows it, then deletes everything of the account
/// but its `removed` marker. Returns what happened, in words for the person or operator.
/// A failed revocation does not stop the deletion: the person asked to leave.
pub async fn withdraw(store: &SqlStore, settings: &Settings, account: &Account) -> Result<String, OnboardError> {
    let revoked = match revoke(store, settings, account).await {
        Ok(true) => "The grant was revoked at Google.".to_owned(),
        Ok(false) if account.provider == Provider::Withings => {
            "Withings offers no revocation endpoint: the person can remove the app under Withings account settings."
                .to_owned()
        }
        Ok(false) => "There was no grant left to revoke.".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "revocation failed; removing the account's data anyway");
            format!("Revoking the grant failed ({e}); the person can revoke it in their Google account settings.")
        }
    };
    let removal = store.remove_account(&account.name).await?;
    Ok(format!(
        "removed {}: stored tokens, cursors and consent deleted, {} unpublished messages dropped. {revoked}\nMessages already published to Streamr cannot be recalled.",
        account.name, removal.dropped_messages
    ))
}
