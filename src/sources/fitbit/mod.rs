//! Fitbit data on the Google Health API v4 (the legacy Fitbit Web API was switched off
//! on 2026-11-02).

pub mod api;
mod client;

pub use client::{ApiError, GoogleHealthClient};

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, SecondsFormat, Utc};
use secrecy::SecretString;

use crate::auth::TokenManager;
use crate::retry::Retry;
use crate::sources::quota::Quotas;
use crate::store::Account;

/// The largest page Google serves for sample data types.
pub const MAX_PAGE_SIZE: u32 = 10_000;
/// Sleep and exercise pages hold at most 25 sessions.
const SESSION_PAGE_SIZE: u32 = 25;
/// A hard stop against a server that never ends pagination.
const MAX_PAGES: usize = 1_000;

/// Why a Google Health dataset could not be read for one account.
pub type SourceError = super::SourceError<ApiError>;

impl From<ApiError> for SourceError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl SourceError {
    /// The person did not grant the scope this data needs (403).
    pub fn is_scope_insufficient(&self) -> bool {
        matches!(self, SourceError::Api(e) if e.is_scope_insufficient())
    }
}

/// Reads one account's data: tokens from the [`TokenManager`], client-side quotas, one
/// refresh on 401, back-off on transient failures (honouring `Retry-After`). Waiting on
/// 429 happens inside the account's own task, so it slows that account only.
pub struct FitbitSource {
    client: GoogleHealthClient,
    tokens: Arc<TokenManager>,
    quotas: Quotas,
    retry: Retry,
    page_size: u32,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `prefix.field >= "from" AND prefix.field < "to"`.
fn range_filter(field: &str, from: &str, to: &str) -> String {
    format!("{field} >= \"{from}\" AND {field} < \"{to}\"")
}

impl FitbitSource {
    pub fn new(client: GoogleHealthClient, tokens: Arc<TokenManager>, quotas: Quotas, retry: Retry) -> Self {
        Self { client, tokens, quotas, retry, page_size: MAX_PAGE_SIZE }
    }

    /// Asks for smaller pages (tests use this to exercise pagination).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// The token manager this source draws on.
    pub fn tokens(&self) -> &TokenManager {
        &self.tokens
    }

    async fn call<T, F, Fut>(&self, account: &Account, f: F) -> Result<T, SourceError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut session = self.tokens.session(account).await?;
        self.retry
            .run("Google Health call", async || {
                loop {
                    self.quotas.acquire(account.id).await;
                    match f(session.token()).await {
                        Err(e) if e.is_unauthorized() && session.refresh_once(&e).await? => {}
                        other => return other.map_err(SourceError::from),
                    }
                }
            })
            .await
    }

    /// The account's Google Health user id.
    pub async fn health_user_id(&self, account: &Account) -> Result<String, SourceError> {
        let identity = self.call(account, |t| async move { self.client.identity(&t).await }).await?;
        Ok(identity.health_user_id)
    }

    /// The account's time zone settings.
    pub async fn settings(&self, account: &Account) -> Result<api::Settings, SourceError> {
        self.call(account, |t| async move { self.client.settings(&t).await }).await
    }

    /// Every paired device, all pages.
    pub async fn paired_devices(&self, account: &Account) -> Result<Vec<api::PairedDevice>, SourceError> {
        let mut devices = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .call(account, |t| {
                    let page_token = page_token.as_deref();
                    async move { self.client.paired_devices(&t, page_token).await }
                })
                .await?;
            devices.extend(page.paired_devices);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => page_token = Some(next),
                None => return Ok(devices),
            }
        }
        Err(SourceError::Pagination(MAX_PAGES))
    }

    /// Every data point of `data_type` matching `filter`, all pages.
    async fn data_points(
        &self,
        account: &Account,
        data_type: &str,
        filter: &str,
        page_size: u32,
    ) -> Result<Vec<api::DataPoint>, SourceError> {
        let mut points = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .call(account, |t| {
                    let page_token = page_token.as_deref();
                    async move { self.client.list_data_points(&t, data_type, filter, page_size, page_token).await }
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

    /// A sample data type (`heart-rate`, `weight`, `body-fat`) with `from <= t < to`.
    pub async fn samples(
        &self,
        account: &Account,
        data_type: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<api::DataPoint>, SourceError> {
        let field = format!("{}.sample_time.physical_time", data_type.replace('-', "_"));
        let filter = range_filter(&field, &rfc3339(from), &rfc3339(to));
        self.data_points(account, data_type, &filter, self.page_size).await
    }

    /// Heart-rate samples with `from <= t < to`.
    pub async fn heart_rate(
        &self,
        account: &Account,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<api::DataPoint>, SourceError> {
        self.samples(account, "heart-rate", from, to).await
    }

    /// Daily resting heart rate for civil days `from..to` (end exclusive).
    pub async fn resting_heart_rate(
        &self,
        account: &Account,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<api::DataPoint>, SourceError> {
        let filter = range_filter("daily_resting_heart_rate.date", &from.to_string(), &to.to_string());
        self.data_points(account, "daily-resting-heart-rate", &filter, self.page_size).await
    }

    /// Sleep sessions that ended in `[from, to)`.
    pub async fn sleep(
        &self,
        account: &Account,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<api::DataPoint>, SourceError> {
        let filter = range_filter("sleep.interval.end_time", &rfc3339(from), &rfc3339(to));
        self.data_points(account, "sleep", &filter, SESSION_PAGE_SIZE.min(self.page_size)).await
    }

    /// Daily roll-ups of `data_type` for civil days `from..to`, split into the ranges
    /// the API accepts (14 days for active minutes and calories, 90 otherwise).
    pub async fn daily_roll_up(
        &self,
        account: &Account,
        data_type: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<api::DailyRollupDataPoint>, SourceError> {
        let max_days = match data_type {
            "active-minutes" | "total-calories" | "heart-rate" => 14,
            _ => 90,
        };
        let mut out = Vec::new();
        let mut start = from;
        while start < to {
            let end = (start + Days::new(max_days)).min(to);
            let page = self
                .call(account, |t| async move { self.client.daily_roll_up(&t, data_type, start, end).await })
                .await?;
            out.extend(page.rollup_data_points);
            start = end;
        }
        Ok(out)
    }
}
