//! Withings: body measures, daily activity, intraday heart rate, sleep summaries, devices.
//! OAuth ([`oauth`]), API types ([`api`]), the HTTP client, the calls with tokens,
//! quotas and retries (here), normalisation and the sync plan.
//!
//! Withings allows 120 requests a minute for the whole application, so every account
//! shares one limiter, and a 601 pauses every account (honouring `wait_seconds`).

pub mod api;
pub(crate) mod client;
pub mod normalize;
pub mod oauth;
mod plan;
pub mod push;

pub use client::{WithingsClient, WithingsError};
pub use oauth::WithingsOAuth;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anonymizer::Provider;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use futures::FutureExt;
use futures::future::LocalBoxFuture;
use secrecy::SecretString;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::registry::Registration;
use super::{AccountPass, Attempt, Batch, Source, SourceError};
use crate::auth::TokenManager;
use crate::config::{Dataset, Settings};
use crate::normalize::{Lenient, Skipped};
use crate::retry::Retry;
use crate::sources::quota::Quotas;
use crate::store::Account;

/// The provider name of Withings accounts.
pub const PROVIDER: Provider = Provider::new("withings");

/// Withings' entry in the source registry.
pub const REGISTRATION: Registration = Registration {
    provider: PROVIDER,
    label: "Withings",
    section: "withings",
    application_per_minute: |settings| settings.withings.requests_per_minute,
    // Withings counts every request of the application, token requests included.
    oauth: |settings, http, budget| Arc::new(WithingsOAuth::new(http.clone(), settings.withings.clone(), budget)),
    source: |settings, http, tokens, retry, budget| {
        Arc::new(WithingsSource::from_settings(settings, http, tokens, retry, budget))
    },
};

/// Measure types requested from `getmeas` (see normalize::withings for their meaning).
pub const MEASURE_TYPES: &str = "1,5,6,8,9,10,11,12,54,71,73,76,77,88,91,123";
/// `getintradayactivity` serves at most 24 hours per call.
const INTRADAY_WINDOW: TimeDelta = TimeDelta::hours(24);
const MAX_PAGES: usize = 1_000;

impl From<WithingsError> for SourceError {
    fn from(e: WithingsError) -> Self {
        match e {
            WithingsError::Throttled { wait, .. } => SourceError::Transient { retry_after: wait, error: e.into() },
            e if e.is_transient() => SourceError::transient(e),
            e => SourceError::fatal(e),
        }
    }
}

/// Reads one account's Withings data with the shared limiter and throttle.
pub struct WithingsSource {
    client: WithingsClient,
    tokens: Arc<TokenManager>,
    quotas: Quotas,
    retry: Retry,
    /// Until when the whole application must not call Withings (after a 601).
    throttled_until: Mutex<Option<Instant>>,
    /// The notification categories each account is subscribed to (`push.withings_applis`).
    applis: Vec<u32>,
}

impl WithingsSource {
    /// `[withings]`: the API base URL and the application-wide limit (Withings: 120 a
    /// minute).
    pub fn from_settings(
        settings: &Settings,
        http: &reqwest::Client,
        tokens: Arc<TokenManager>,
        retry: Retry,
        budget: Arc<crate::sources::budget::Budget>,
    ) -> Self {
        let w = &settings.withings;
        Self {
            client: WithingsClient::new(http.clone(), &w.api_base_url).with_max_body(settings.sync.max_response_bytes),
            tokens,
            quotas: Quotas::new(w.requests_per_minute, budget),
            retry,
            throttled_until: Mutex::new(None),
            applis: settings.push.withings_applis.clone(),
        }
    }

    /// Waits out an application-wide throttle (or until shutdown).
    async fn wait_for_throttle(&self) {
        let until = *self.throttled_until.lock().await;
        if let Some(until) = until {
            self.retry.sleep(until.saturating_duration_since(Instant::now())).await;
        }
    }

    async fn throttle_everyone(&self, wait: Duration) {
        let until = Instant::now() + wait.min(self.retry.backoff().max_throttle);
        let mut slot = self.throttled_until.lock().await;
        if slot.is_none_or(|t| t < until) {
            *slot = Some(until);
        }
    }

    async fn call<T, F, Fut>(&self, account: &Account, f: F) -> Result<T, SourceError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T, WithingsError>>,
    {
        let mut session = self.tokens.session(account).await?;
        let outcome = self
            .retry
            .run("Withings call", async || -> Attempt<T> {
                loop {
                    self.wait_for_throttle().await;
                    self.quotas.acquire(account.id).await;
                    match f(session.token()).await {
                        Ok(value) => return Ok(Ok(value)),
                        Err(e) if e.is_auth() => match session.refresh_once(&e).await {
                            Ok(true) => {}
                            // Rejected even after a refresh: the person must consent again.
                            Ok(false) => {
                                return Ok(match self.tokens.mark_needs_reconsent(account).await {
                                    Ok(()) => Err(SourceError::NeedsReconsent),
                                    Err(e) => Err(e.into()),
                                });
                            }
                            Err(auth) => return Ok(Err(auth.into())),
                        },
                        // A 601 pauses every account, not only this one.
                        Err(e @ WithingsError::Throttled { wait, .. }) => {
                            self.throttle_everyone(wait.unwrap_or_else(|| self.retry.backoff().delay(0))).await;
                            return Err(e.into());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            })
            .await;
        outcome.and_then(|r| r)
    }

    /// Every page of a `more`/`offset` list.
    async fn pages<T, B>(
        &self,
        account: &Account,
        path: &'static str,
        action: &'static str,
        params: &[(&str, String)],
        split: impl Fn(B) -> (Vec<T>, bool, u64),
    ) -> Result<Vec<T>, SourceError>
    where
        B: serde::de::DeserializeOwned,
    {
        let mut out = Vec::new();
        let mut offset: Option<u64> = None;
        for _ in 0..MAX_PAGES {
            let mut p: Vec<(&str, String)> = params.to_vec();
            if let Some(o) = offset {
                p.push(("offset", o.to_string()));
            }
            let body: B = self
                .call(account, |t| {
                    let p = p.clone();
                    async move { self.client.call(path, action, &p, &t).await }
                })
                .await?;
            let (items, more, next) = split(body);
            out.extend(items);
            if !more {
                return Ok(out);
            }
            offset = Some(next);
        }
        Err(SourceError::fatal(format!("pagination did not end after {MAX_PAGES} pages")))
    }

    /// Paired devices.
    pub async fn devices(&self, account: &Account) -> Result<Vec<Lenient<api::Device>>, SourceError> {
        let body: api::DeviceBody =
            self.call(account, |t| async move { self.client.call("/v2/user", "getdevice", &[], &t).await }).await?;
        Ok(body.devices)
    }

    /// Measure groups modified since `lastupdate` (unix seconds).
    pub async fn measures(
        &self,
        account: &Account,
        lastupdate: i64,
    ) -> Result<Vec<Lenient<api::MeasureGroup>>, SourceError> {
        let params = [
            ("meastypes", MEASURE_TYPES.to_owned()),
            ("category", "1".to_owned()),
            ("lastupdate", lastupdate.to_string()),
        ];
        self.pages(account, "/measure", "getmeas", &params, |b: api::MeasureBody| (b.measuregrps, b.more, b.offset))
            .await
    }

    /// Daily activity for `from..=to` (inclusive dates, as Withings takes them).
    pub async fn activity(
        &self,
        account: &Account,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Lenient<api::Activity>>, SourceError> {
        let params = [
            ("startdateymd", from.to_string()),
            ("enddateymd", to.to_string()),
            ("data_fields", "steps,distance,active,totalcalories".to_owned()),
        ];
        self.pages(account, "/v2/measure", "getactivity", &params, |b: api::ActivityBody| {
            (b.activities, b.more, b.offset)
        })
        .await
    }

    /// Heart-rate samples with `from <= t < to`, in windows of at most 24 hours.
    pub async fn intraday_heart_rate(
        &self,
        account: &Account,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Result<(DateTime<Utc>, f64), Skipped>>, SourceError> {
        let mut out = Vec::new();
        let mut start = from;
        while start < to {
            let end = (start + INTRADAY_WINDOW).min(to);
            let params = [
                ("startdate", start.timestamp().to_string()),
                ("enddate", (end.timestamp() - 1).max(start.timestamp()).to_string()),
                ("data_fields", "heart_rate".to_owned()),
            ];
            let body: api::IntradayBody = self
                .call(account, |t| {
                    let params = params.clone();
                    async move { self.client.call("/v2/measure", "getintradayactivity", &params, &t).await }
                })
                .await?;
            for (ts, sample) in body.series {
                let Some(sample) = sample.good() else {
                    out.push(Err(Skipped::bad("a malformed heart-rate sample")));
                    continue;
                };
                let (Ok(secs), Some(bpm)) = (ts.parse::<i64>(), sample.heart_rate) else { continue };
                if let Some(at) = DateTime::from_timestamp(secs, 0).filter(|at| *at >= start && *at < end) {
                    out.push(Ok((at, bpm)));
                }
            }
            start = end;
        }
        Ok(out)
    }

    /// Sleep summaries modified since `lastupdate`.
    pub async fn sleep(
        &self,
        account: &Account,
        lastupdate: i64,
    ) -> Result<Vec<Lenient<api::SleepSummary>>, SourceError> {
        let params = [
            ("lastupdate", lastupdate.to_string()),
            (
                "data_fields",
                "total_sleep_time,wakeupduration,deepsleepduration,lightsleepduration,remsleepduration".to_owned(),
            ),
        ];
        self.pages(account, "/v2/sleep", "getsummary", &params, |b: api::SleepBody| (b.series, b.more, b.offset)).await
    }
}

impl Source for WithingsSource {
    fn provider(&self) -> Provider {
        PROVIDER
    }

    /// Withings names the user only in the token answer, which the token manager stores
    /// with the tokens.
    fn user_id<'a>(&'a self, account: &'a Account) -> LocalBoxFuture<'a, Result<String, SourceError>> {
        async move {
            self.tokens
                .user_id_from_token_answer(account)
                .await?
                .ok_or_else(|| SourceError::fatal("the token answer did not name the Withings user"))
        }
        .boxed_local()
    }

    fn budget(&self) -> &Arc<crate::sources::budget::Budget> {
        self.quotas.budget()
    }

    fn subscribe<'a>(&'a self, account: &'a Account, callback: &'a str) -> LocalBoxFuture<'a, Result<(), SourceError>> {
        async move {
            let listed: api::NotifyBody =
                self.call(account, |t| async move { self.client.call("/notify", "list", &[], &t).await }).await?;
            let ours: Vec<u32> = listed
                .profiles
                .iter()
                .filter_map(|p| p.good())
                .filter(|p| p.callbackurl == callback)
                .filter_map(|p| p.appli)
                .collect();
            for appli in self.applis.iter().filter(|a| !ours.contains(a)) {
                let params = [("callbackurl", callback.to_owned()), ("appli", appli.to_string())];
                let _: serde::de::IgnoredAny = self
                    .call(account, |t| {
                        let params = params.clone();
                        async move { self.client.call("/notify", "subscribe", &params, &t).await }
                    })
                    .await?;
                tracing::info!(appli, "subscribed to Withings notifications");
            }
            Ok(())
        }
        .boxed_local()
    }

    fn requests_per_sync(&self) -> u32 {
        // The morning pass: devices, body, sleep, heart rate and activity, and the token
        // refresh (Withings counts it).
        6
    }

    fn unsubscribe<'a>(
        &'a self,
        account: &'a Account,
        callback: &'a str,
    ) -> LocalBoxFuture<'a, Result<(), SourceError>> {
        async move {
            for appli in &self.applis {
                let params = [("callbackurl", callback.to_owned()), ("appli", appli.to_string())];
                let revoked: Result<serde::de::IgnoredAny, _> = self
                    .call(account, |t| {
                        let params = params.clone();
                        async move { self.client.call("/notify", "revoke", &params, &t).await }
                    })
                    .await;
                match revoked {
                    Ok(_) => tracing::info!(appli, "Withings notifications revoked"),
                    // 294: no such subscription (never made, or revoked already).
                    Err(e) => tracing::debug!(appli, error = %e, "no Withings subscription revoked"),
                }
            }
            Ok(())
        }
        .boxed_local()
    }

    fn read<'a, 'p: 'a>(
        &'a self,
        pass: &'a mut AccountPass<'p>,
        dataset: Dataset,
    ) -> LocalBoxFuture<'a, Result<Vec<Batch>, SourceError>> {
        self.read_dataset(pass, dataset).boxed_local()
    }
}
