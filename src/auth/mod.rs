//! OAuth token lifecycle: refresh ahead of expiry, persist before use, single-flight per
//! account, and never erase a stored token on failure.

mod oauth;

pub(crate) use oauth::post_form;
pub use oauth::{AuthorizeUrl, Exchanged, OAuth, RefreshError, Revocation, TokenResponse};

use std::collections::HashMap;
use std::sync::Arc;

use anonymizer::Provider;
use chrono::TimeDelta;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::retry::Retry;
use crate::store::{Account, AccountStatus, SqlStore, Store, StoreError, Tokens};

/// Refresh when the access token has less than this left.
const EXPIRY_MARGIN: TimeDelta = TimeDelta::seconds(120);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the provider revoked or expired the grant; the person must consent again")]
    NeedsReconsent,
    #[error("the account has no stored tokens")]
    NoTokens,
    #[error("no source in this build handles provider {0}")]
    UnknownProvider(Provider),
    #[error("token refresh failed: {0}")]
    Refresh(#[from] RefreshError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hands out valid access tokens, refreshing them when needed.
pub struct TokenManager {
    store: Arc<SqlStore>,
    /// Each registered source's OAuth endpoints, by provider.
    oauth: HashMap<Provider, Arc<dyn OAuth>>,
    retry: Retry,
    clock: Clock,
    locks: std::sync::Mutex<HashMap<i64, Arc<Mutex<()>>>>,
}

impl TokenManager {
    pub fn new(store: Arc<SqlStore>, oauth: HashMap<Provider, Arc<dyn OAuth>>, retry: Retry, clock: Clock) -> Self {
        Self { store, oauth, retry, clock, locks: std::sync::Mutex::new(HashMap::new()) }
    }

    /// The provider's user id as the token answer named it (Withings names the user only
    /// there): refreshes when needed, then reads what the refresh stored.
    pub async fn user_id_from_token_answer(&self, account: &Account) -> Result<Option<String>, AuthError> {
        self.access_token(account).await?;
        Ok(self.store.account(&account.name).await?.and_then(|a| a.provider_user_id))
    }

    fn lock_for(&self, account_id: i64) -> Arc<Mutex<()>> {
        match self.locks.lock() {
            Ok(mut map) => map.entry(account_id).or_default().clone(),
            // A poisoned map only means another task panicked mid-insert; a fresh lock
            // is still correct for this caller.
            Err(poisoned) => poisoned.into_inner().entry(account_id).or_default().clone(),
        }
    }

    /// A valid access token for `account`. Concurrent callers for one account share a
    /// single refresh: the first refreshes, the others wait and read its result.
    pub async fn access_token(&self, account: &Account) -> Result<SecretString, AuthError> {
        let lock = self.lock_for(account.id);
        let _guard = lock.lock().await;
        let tokens = self.store.tokens(account.id).await?.ok_or(AuthError::NoTokens)?;
        if let (Some(access), Some(expires)) = (&tokens.access_token, tokens.access_expires_at)
            && expires - EXPIRY_MARGIN > self.clock.now()
        {
            return Ok(access.clone());
        }
        self.refresh_locked(account, tokens).await
    }

    /// Records that the provider refuses the account even with fresh tokens.
    pub async fn mark_needs_reconsent(&self, account: &Account) -> Result<(), AuthError> {
        self.store.set_status(account.id, AccountStatus::NeedsReconsent).await?;
        tracing::warn!(account = %account.name, "the provider rejects fresh tokens: account set to needs_reconsent");
        Ok(())
    }

    /// A [`Session`]: the account's access token for a series of calls.
    pub async fn session<'a>(&'a self, account: &'a Account) -> Result<Session<'a>, AuthError> {
        Ok(Session { tokens: self, account, token: self.access_token(account).await?, refreshed: false })
    }

    /// Forgets the access token after the provider rejected it (401) and refreshes.
    pub async fn force_refresh(&self, account: &Account) -> Result<SecretString, AuthError> {
        let lock = self.lock_for(account.id);
        let _guard = lock.lock().await;
        let tokens = self.store.tokens(account.id).await?.ok_or(AuthError::NoTokens)?;
        self.refresh_locked(account, tokens).await
    }

    async fn refresh_locked(&self, account: &Account, tokens: Tokens) -> Result<SecretString, AuthError> {
        let oauth = self.oauth.get(&account.provider).ok_or(AuthError::UnknownProvider(account.provider))?.as_ref();
        let response = match self.refresh_with(oauth, account, &tokens.refresh_token).await {
            Err(RefreshError::InvalidGrant) => {
                // Another process (a dry run, a second worker) may have rotated the refresh
                // token after this one read it: read the store again before giving up.
                let Some(stored) = self.store.tokens(account.id).await? else { return Err(AuthError::NoTokens) };
                if stored.refresh_token.expose_secret() == tokens.refresh_token.expose_secret() {
                    return self.needs_reconsent(account).await;
                }
                tracing::info!("refresh token rotated by another process; using the stored one");
                if let (Some(access), Some(expires)) = (&stored.access_token, stored.access_expires_at)
                    && expires - EXPIRY_MARGIN > self.clock.now()
                {
                    return Ok(access.clone());
                }
                match self.refresh_with(oauth, account, &stored.refresh_token).await {
                    Err(RefreshError::InvalidGrant) => return self.needs_reconsent(account).await,
                    other => return self.store_refreshed(account, stored, other?).await,
                }
            }
            other => other?,
        };
        self.store_refreshed(account, tokens, response).await
    }

    /// One refresh grant, retried on transient failures, counted by outcome.
    async fn refresh_with(
        &self,
        oauth: &dyn OAuth,
        account: &Account,
        refresh_token: &SecretString,
    ) -> Result<TokenResponse, RefreshError> {
        self.retry
            .run("token refresh", async || {
                let attempt = oauth.refresh(account.id, refresh_token).await;
                let provider = account.provider.as_str();
                match &attempt {
                    Ok(_) => crate::telemetry::token_refresh(provider, "ok"),
                    Err(RefreshError::InvalidGrant) => crate::telemetry::token_refresh(provider, "invalid_grant"),
                    Err(_) => crate::telemetry::token_refresh(provider, "error"),
                }
                attempt
            })
            .await
    }

    async fn needs_reconsent(&self, account: &Account) -> Result<SecretString, AuthError> {
        self.store.set_status(account.id, AccountStatus::NeedsReconsent).await?;
        tracing::warn!(account = %account.name, "refresh token rejected (invalid_grant): account set to needs_reconsent");
        Err(AuthError::NeedsReconsent)
    }

    /// Stores what a refresh returned (before it is used) and hands out the access token.
    async fn store_refreshed(
        &self,
        account: &Account,
        tokens: Tokens,
        response: TokenResponse,
    ) -> Result<SecretString, AuthError> {
        let rotated = response.refresh_token.is_some();
        let new = Tokens {
            refresh_token: response.refresh_token.unwrap_or(tokens.refresh_token),
            access_token: Some(response.access_token.clone()),
            access_expires_at: Some(self.clock.now() + TimeDelta::seconds(response.expires_in.max(0))),
        };
        // Persist before use: a rotated refresh token must survive a crash right here.
        self.store.save_tokens(account.id, &new).await?;
        if let Some(user_id) = &response.user_id
            && account.provider_user_id.as_deref() != Some(user_id.as_str())
        {
            self.store.set_provider_user_id(account.id, user_id).await?;
        }
        tracing::debug!(rotated, "access token refreshed");
        Ok(response.access_token)
    }
}

/// An account's access token for the calls of one operation. When the provider rejects
/// it, the token is refreshed once (without spending a retry); a second rejection is the
/// caller's to judge.
pub struct Session<'a> {
    tokens: &'a TokenManager,
    account: &'a Account,
    token: SecretString,
    refreshed: bool,
}

impl Session<'_> {
    /// The token to call with.
    pub fn token(&self) -> SecretString {
        self.token.clone()
    }

    /// After a rejection: refreshes and returns true the first time, false after that.
    pub async fn refresh_once(&mut self, rejection: &(dyn std::fmt::Display + Sync)) -> Result<bool, AuthError> {
        if self.refreshed {
            return Ok(false);
        }
        tracing::info!(error = %rejection, "access token rejected; refreshing once");
        self.token = self.tokens.force_refresh(self.account).await?;
        self.refreshed = true;
        Ok(true)
    }
}
