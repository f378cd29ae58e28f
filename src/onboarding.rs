//! Enrolment by consent: the authorisation URL (random `state`; for Google PKCE S256 and
//! `access_type=offline&prompt=consent`), the code exchange right after the redirect
//! (Withings codes live 30 seconds), and storing what came back: tokens (encrypted), the
//! consent (provider, granted scopes, time) and the hash of a per-account leave secret.
//!
//! Shared by `wearbridge connect` (loopback callback) and the worker's `/connect` page.

use std::sync::Arc;

use anonymizer::{Provider, PseudonymKey};
use base64::Engine;
use chrono::TimeDelta;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::auth::{OAuth, Revocation};
use crate::clock::Clock;
use crate::config::Settings;
use crate::sources::registry;
use crate::store::{Account, Consent, SqlStore, Store, StoreError, Tokens};

/// Why enrolment failed, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum OnboardError {
    #[error("{0} is not configured: set {0}.client_id and {0}.client_secret")]
    NotConfigured(&'static str),
    #[error("no source in this build reads provider {0}")]
    UnknownProvider(Provider),
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
pub(crate) fn random(bytes: usize) -> Result<String, OnboardError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| OnboardError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// SHA-256 hex of a leave secret.
pub fn leave_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Fails early, before the person is sent to the provider, when person `name` already
/// has a live account with `provider` (another provider's is fine: one person, several
/// providers).
pub async fn check_name_free(store: &SqlStore, name: &str, provider: Provider) -> Result<(), OnboardError> {
    crate::store::validate_account_name(name)?;
    let taken = store
        .accounts()
        .await?
        .into_iter()
        .any(|a| a.person == name && a.provider == provider && a.status != crate::store::AccountStatus::Removed);
    if taken {
        return Err(OnboardError::Store(StoreError::AccountExists(format!("{name} ({provider})"))));
    }
    Ok(())
}

/// The OAuth endpoints of `provider`.
fn oauth(settings: &Settings, provider: Provider) -> Result<Arc<dyn OAuth>, OnboardError> {
    let http = crate::http::client().map_err(|e| OnboardError::Transport(e.to_string()))?;
    oauth_with(&http, settings, provider)
}

fn oauth_with(http: &reqwest::Client, settings: &Settings, provider: Provider) -> Result<Arc<dyn OAuth>, OnboardError> {
    registry::oauth(settings, http, provider).ok_or(OnboardError::UnknownProvider(provider))
}

/// Starts an authorisation for `provider` returning to `redirect_uri`.
pub fn authorize(settings: &Settings, provider: Provider, redirect_uri: &str) -> Result<Authorization, OnboardError> {
    let http = crate::http::client().map_err(|e| OnboardError::Transport(e.to_string()))?;
    authorize_with(&http, settings, provider, redirect_uri)
}

/// [`authorize`] on a client the caller keeps (the consent pages build one per process).
pub fn authorize_with(
    http: &reqwest::Client,
    settings: &Settings,
    provider: Provider,
    redirect_uri: &str,
) -> Result<Authorization, OnboardError> {
    let state = random(16)?;
    let started = oauth_with(http, settings, provider)?.authorize(redirect_uri, &state, &settings.sync.datasets)?;
    Ok(Authorization {
        provider,
        url: started.url,
        state,
        redirect_uri: redirect_uri.to_owned(),
        verifier: started.verifier,
    })
}

/// Completes an authorisation: checks `state`, exchanges the code at once, and enrols
/// person `name`'s account with the authorisation's provider (a removed one is
/// re-enrolled). On any failure after enrolment, only that new account is removed.
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
    let oauth = oauth(settings, authorization.provider)?;
    let exchanged = oauth.exchange(code, &authorization.redirect_uri, authorization.verifier.as_ref()).await?;
    let missing_scopes = oauth.missing_scopes(&exchanged.scopes, &settings.sync.datasets);
    let tokens = Tokens {
        refresh_token: exchanged.refresh_token,
        access_token: Some(exchanged.access_token),
        access_expires_at: Some(clock.now() + TimeDelta::seconds(exchanged.expires_in.max(0))),
    };
    let leave_secret = random(24)?;
    let account = store.add_account(name, authorization.provider, &tokens.refresh_token).await?;
    let rest = async {
        store.save_tokens(account.id, &tokens).await?;
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
        let _ = store.remove_account(&account.name).await;
        return Err(e.into());
    }
    let anonymizer = anonymizer::Anonymizer::new(key.clone(), anonymizer::Policy::default());
    let basis = if settings.anonymizer.link_providers { store.subject_id(&account.person).await? } else { None };
    let subject = match basis {
        Some(basis) => anonymizer.for_person(&basis, authorization.provider, &exchanged.user_id).subject().to_owned(),
        None => anonymizer.subject(authorization.provider, &exchanged.user_id),
    };
    let account = store.accounts().await?.into_iter().find(|a| a.id == account.id).unwrap_or(account);
    Ok(Enrolled { account, missing_scopes, subject, leave_secret: SecretString::from(leave_secret) })
}

/// Ends the account's grant at the provider where it offers that, before its tokens are
/// deleted.
pub async fn revoke(store: &SqlStore, settings: &Settings, account: &Account) -> Result<Revocation, OnboardError> {
    let Some(tokens) = store.tokens(account.id).await? else { return Ok(Revocation::NothingToRevoke) };
    oauth(settings, account.provider)?.revoke(&tokens.refresh_token).await
}

/// How long leaving waits for the provider to end the subscriptions: the person's
/// request must not time out before their data is deleted.
const UNSUBSCRIBE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Ends the account's notification subscriptions at its provider (where they are per
/// account); a failure is logged, not fatal: the person asked to leave, and notifications
/// about an unknown user are ignored.
async fn unsubscribe(store: &Arc<SqlStore>, settings: &Settings, account: &Account) {
    // Sources' futures stay on their thread (they are not `Send`); the consent server's
    // handlers must be. So the calls run on a blocking thread of their own.
    let (store, settings, account) = (store.clone(), settings.clone(), account.clone());
    let handle = tokio::runtime::Handle::current();
    let done = tokio::task::spawn_blocking(move || handle.block_on(unsubscribe_here(&store, &settings, &account)));
    if done.await.is_err() {
        tracing::warn!("ending the account's notification subscriptions failed");
    }
}

async fn unsubscribe_here(store: &Arc<SqlStore>, settings: &Settings, account: &Account) {
    let Ok(http) = crate::http::client() else { return };
    let retry = crate::retry::Retry::new(crate::retry::Backoff::default(), crate::retry::CancellationToken::new());
    let sources = crate::sources::Sources::build(settings, &http, store.clone(), retry, crate::clock::Clock::system());
    let Some(source) = sources.get(account.provider) else { return };
    let Ok(callback) = crate::app::push_callback(&settings.server.public_url, store, account.provider) else { return };
    match tokio::time::timeout(UNSUBSCRIBE_WITHIN, source.unsubscribe(account, &callback)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not end the account's notification subscriptions"),
        Err(_) => tracing::warn!("ending the account's notification subscriptions took too long; removing it anyway"),
    }
}

/// Revokes upstream where the provider allows it, then deletes everything of the account
/// but its `removed` marker. Returns what happened, in words for the person or operator.
/// A failed revocation does not stop the deletion: the person asked to leave.
pub async fn withdraw(store: &Arc<SqlStore>, settings: &Settings, account: &Account) -> Result<String, OnboardError> {
    if settings.push.enabled {
        // While the tokens still exist: the provider stops notifying about this account.
        unsubscribe(store, settings, account).await;
    }
    let revoked = match revoke(store, settings, account).await {
        Ok(Revocation::Revoked { at }) => format!("The grant was revoked at {at}."),
        Ok(Revocation::Unsupported(how)) => how.to_owned(),
        Ok(Revocation::NothingToRevoke) => "There was no grant left to revoke.".to_owned(),
        Err(e) => {
            tracing::warn!(error = %e, "revocation failed; removing the account's data anyway");
            format!(
                "Revoking the grant failed ({e}); the person can revoke wearbridge's access in their account settings at the provider."
            )
        }
    };
    let removal = store.remove_account(&account.name).await?;
    Ok(format!(
        "removed {}: stored tokens, cursors and consent deleted, {} unpublished messages dropped. {revoked}\nMessages already published to Streamr cannot be recalled.",
        account.name, removal.dropped_messages
    ))
}
