//! Fitbit data on the Google Health API v4 (the legacy Fitbit Web API was switched off
//! on 2026-11-02): OAuth ([`oauth`]), API types ([`api`]), the HTTP client, the calls
//! with tokens, quotas and retries (here), normalisation and the sync plan.

pub mod api;
pub(crate) mod client;
pub mod normalize;
pub mod oauth;
mod plan;
pub mod push;

pub use client::{ApiError, GoogleHealthClient};
pub use oauth::{GoogleOAuth, scope_for};

use std::future::Future;
use std::sync::Arc;

use anonymizer::Provider;
use chrono::{DateTime, Days, NaiveDate, SecondsFormat, Utc};
use futures::FutureExt;
use futures::future::LocalBoxFuture;
use secrecy::SecretString;

use super::registry::Registration;
use super::{AccountPass, Attempt, Batch, Source, SourceError};
use crate::auth::TokenManager;
use crate::config::{Dataset, Settings};
use crate::normalize::Lenient;
use crate::retry::Retry;
use crate::sources::quota::Quotas;
use crate::store::Account;

/// The provider name of Fitbit accounts.
pub const PROVIDER: Provider = Provider::new("fitbit");

/// Fitbit's entry in the source registry.
pub const REGISTRATION: Registration = Registration {
    provider: PROVIDER,
    label: "Fitbit",
    section: "fitbit",
    application_per_minute: |settings| settings.fitbit.project_requests_per_minute,
    // Google's token endpoint is not counted against the Health API's project quota.
    oauth: |settings, http, _budget| Arc::new(GoogleOAuth::new(http.clone(), settings.fitbit.clone())),
    source: |settings, http, tokens, retry, budget| {
        Arc::new(FitbitSource::from_settings(settings, http, tokens, retry, budget))
    },
};

/// The largest page Google serves for sample data types.
pub const MAX_PAGE_SIZE: u32 = 10_000;
/// Sleep and exercise pages hold at most 25 sessions.
const SESSION_PAGE_SIZE: u32 = 25;
/// A hard stop against a server that never ends pagination.
const MAX_PAGES: usize = 1_000;

impl From<ApiError> for SourceError {
    fn from(e: ApiError) -> Self {
        if e.is_scope_insufficient() {
            // The plan names the dataset's scope (see `Source::read`).
            SourceError::ScopeMissing { scope: "unknown".into() }
        } else if e.is_transient() {
            SourceError::Transient { retry_after: e.retry_after(), error: e.into() }
        } else {
            SourceError::fatal(e)
        }
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
    /// `[fitbit]`: the API base URL, per-account and per-project quotas, page size.
    pub fn from_settings(
        settings: &Settings,
        http: &reqwest::Client,
        tokens: Arc<TokenManager>,
        retry: Retry,
        budget: Arc<crate::sources::budget::Budget>,
    ) -> Self {
        let f = &settings.fitbit;
        Self {
            client: GoogleHealthClient::new(http.clone(), &f.api_base_url)
                .with_max_body(settings.sync.max_response_bytes),
            tokens,
            quotas: Quotas::new(f.requests_per_minute, budget),
            retry,
            page_size: f.page_size.clamp(1, MAX_PAGE_SIZE),
        }
    }

    async fn call<T, F, Fut>(&self, account: &Account, f: F) -> Result<T, SourceError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut session = self.tokens.session(account).await?;
        let outcome = self
            .retry
            .run("Google Health call", async || -> Attempt<T> {
                loop {
                    self.quotas.acquire(account.id).await;
                    match f(session.token()).await {
                        Ok(value) => return Ok(Ok(value)),
                        Err(e) if e.is_unauthorized() => match session.refresh_once(&e).await {
                            Ok(true) => {}
                            Ok(false) => return Err(e.into()),
                            Err(auth) => return Ok(Err(auth.into())),
                        },
                        Err(e) => return Err(e.into()),
                    }
                }
            })
            .await;
        outcome.and_then(|r| r)
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
    pub async fn paired_devices(&self, account: &Account) -> Result<Vec<Lenient<api::PairedDevice>>, SourceError> {
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
        Err(SourceError::fatal(format!("pagination did not end after {MAX_PAGES} pages")))
    }

    /// Every data point of `data_type` matching `filter`, all pages.
    async fn data_points(
        &self,
        account: &Account,
        data_type: &str,
        filter: &str,
        page_size: u32,
    ) -> Result<Vec<Lenient<api::DataPoint>>, SourceError> {
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
        Err(SourceError::fatal(format!("pagination did not end after {MAX_PAGES} pages")))
    }

    /// A sample data type (`heart-rate`, `weight`, `body-fat`) with `from <= t < to`.
    pub async fn samples(
        &self,
        account: &Account,
        data_type: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Lenient<api::DataPoint>>, SourceError> {
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
    ) -> Result<Vec<Lenient<api::DataPoint>>, SourceError> {
        self.samples(account, "heart-rate", from, to).await
    }

    /// Daily resting heart rate for civil days `from..to` (end exclusive).
    pub async fn resting_heart_rate(
        &self,
        account: &Account,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Lenient<api::DataPoint>>, SourceError> {
        let filter = range_filter("daily_resting_heart_rate.date", &from.to_string(), &to.to_string());
        self.data_points(account, "daily-resting-heart-rate", &filter, self.page_size).await
    }

    /// Sleep sessions that ended in `[from, to)`.
    pub async fn sleep(
        &self,
        account: &Account,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Lenient<api::DataPoint>>, SourceError> {
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
    ) -> Result<Vec<Lenient<api::DailyRollupDataPoint>>, SourceError> {
        let max_days = match data_type {
            "active-minutes" | "total-calories" | "heart-rate" => 14,
            _ => 90,
        };
        let mut out = Vec::new();
        let mut start = from;
        while start < to {
            let end = start.checked_add_days(Days::new(max_days)).unwrap_or(to).min(to);
            let page = self
                .call(account, |t| async move { self.client.daily_roll_up(&t, data_type, start, end).await })
                .await?;
            out.extend(page.rollup_data_points);
            start = end;
        }
        Ok(out)
    }
}

impl Source for FitbitSource {
    fn provider(&self) -> Provider {
        PROVIDER
    }

    fn user_id<'a>(&'a self, account: &'a Account) -> LocalBoxFuture<'a, Result<String, SourceError>> {
        self.health_user_id(account).boxed_local()
    }

    fn budget(&self) -> &Arc<crate::sources::budget::Budget> {
        self.quotas.budget()
    }

    fn requests_per_sync(&self) -> u32 {
        // The morning pass: devices 1, activity 4, zone 1, sleep 1, heart rate 1 and
        // resting 1, body 2 (the token endpoint is not counted by Google).
        11
    }

    fn read<'a, 'p: 'a>(
        &'a self,
        pass: &'a mut AccountPass<'p>,
        dataset: Dataset,
    ) -> LocalBoxFuture<'a, Result<Vec<Batch>, SourceError>> {
        async move {
            self.read_dataset(pass, dataset).await.map_err(|e| match e {
                SourceError::ScopeMissing { .. } => SourceError::ScopeMissing { scope: scope_for(dataset).to_owned() },
                e => e,
            })
        }
        .boxed_local()
    }
}
