//! Fitbit data on the Google Health API v4 (the legacy Fitbit Web API was switched off
//! on 2026-11-02).

pub mod api;
mod client;

pub use client::{ApiError, GoogleHealthClient};

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;

use crate::auth::{AuthError, TokenManager};
use crate::http::Backoff;
use crate::store::{Account, Store};

/// The largest page Google serves for sample data types.
pub const MAX_PAGE_SIZE: u32 = 10_000;
/// A hard stop against a server that never ends pagination.
const MAX_PAGES: usize = 1_000;
/// Never wait longer than this for one `Retry-After`.
const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

/// Why a dataset could not be read for one account.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("pagination did not end after {0} pages")]
    Pagination(usize),
}

/// Reads one account's data: tokens from the [`TokenManager`], one refresh on 401,
/// back-off on transient failures.
pub struct FitbitSource<S> {
    client: GoogleHealthClient,
    tokens: Arc<TokenManager<S>>,
    backoff: Backoff,
    page_size: u32,
}

impl<S: Store> FitbitSource<S> {
    pub fn new(client: GoogleHealthClient, tokens: Arc<TokenManager<S>>, backoff: Backoff) -> Self {
        Self { client, tokens, backoff, page_size: MAX_PAGE_SIZE }
    }

    /// Asks for smaller pages (tests use this to exercise pagination).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// The token manager this source draws on.
    pub fn tokens(&self) -> &TokenManager<S> {
        &self.tokens
    }

    async fn call<T, F, Fut>(&self, account: &Account, f: F) -> Result<T, SourceError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut token = self.tokens.access_token(account).await?;
        let mut refreshed = false;
        let mut retry = 0;
        loop {
            match f(token.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_unauthorized() && !refreshed => {
                    tracing::info!(error = %e, "access token rejected; refreshing once");
                    token = self.tokens.force_refresh(account).await?;
                    refreshed = true;
                }
                Err(e) if e.is_transient() && retry + 1 < self.backoff.attempts => {
                    let pause =
                        e.retry_after().map(|d| d.min(MAX_RETRY_AFTER)).unwrap_or_else(|| self.backoff.delay(retry));
                    tracing::warn!(error = %e, retry, pause_ms = pause.as_millis() as u64, "upstream call failed; retrying");
                    tokio::time::sleep(pause).await;
                    retry += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The account's Google Health user id.
    pub async fn health_user_id(&self, account: &Account) -> Result<String, SourceError> {
        let identity = self.call(account, |t| async move { self.client.identity(&t).await }).await?;
        Ok(identity.health_user_id)
    }

    /// Every heart-rate sample with `from <= physical time < to`, all pages.
    pub async fn heart_rate(
        &self,
        account: &Account,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<api::DataPoint>, SourceError> {
        let filter = format!(
            "heart_rate.sample_time.physical_time >= \"{}\" AND heart_rate.sample_time.physical_time < \"{}\"",
            from.to_rfc3339_opts(SecondsFormat::Secs, true),
            to.to_rfc3339_opts(SecondsFormat::Secs, true),
        );
        let mut points = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .call(account, |t| {
                    let filter = filter.as_str();
                    let page_token = page_token.as_deref();
                    async move {
                        self.client
                            .list_data_points(&t, "heart-rate", filter, self.page_size, page_token)
                            .await
                    }
                })
                .await?;
            points.extend(page.data_points);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => page_token = Some(next),
                None => return Ok(points),
            }
        }
        Err(SourceError::Pagination(MAX_PAGES))
    }
}
