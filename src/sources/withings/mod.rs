//! Withings: body measures, daily activity, intraday heart rate, sleep summaries, devices.
//!
//! Withings allows 120 requests a minute for the whole application, so every account
//! shares one limiter, and a 601 pauses every account (honouring `wait_seconds`).

pub mod api;
mod client;

pub use client::{WithingsClient, WithingsError};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use secrecy::SecretString;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::auth::{AuthError, TokenManager};
use crate::retry::{MAX_THROTTLE, Retry};
use crate::sources::quota::Quotas;
use crate::store::Account;

/// Measure types requested from `getmeas` (see normalize::withings for their meaning).
pub const MEASURE_TYPES: &str = "1,5,6,8,9,10,11,12,54,71,73,76,77,88,91,123";
/// `getintradayactivity` serves at most 24 hours per call.
const INTRADAY_WINDOW: TimeDelta = TimeDelta::hours(24);
const MAX_PAGES: usize = 1_000;

/// Why a Withings dataset could not be read for one account.
pub type WithingsSourceError = super::SourceError<WithingsError>;

impl From<WithingsError> for WithingsSourceError {
    fn from(e: WithingsError) -> Self {
        Self::Api(e)
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
}

impl WithingsSource {
    /// `per_minute` is the application-wide limit (Withings: 120).
    pub fn new(client: WithingsClient, tokens: Arc<TokenManager>, per_minute: u32, retry: Retry) -> Self {
        Self {
            client,
            tokens,
            quotas: Quotas::per_minute(per_minute, per_minute),
            retry,
            throttled_until: Mutex::new(None),
        }
    }

    /// The token manager this source draws on.
    pub fn tokens(&self) -> &TokenManager {
        &self.tokens
    }

    /// Waits out an application-wide throttle (or until shutdown).
    async fn wait_for_throttle(&self) {
        let until = *self.throttled_until.lock().await;
        if let Some(until) = until {
            self.retry.sleep(until.saturating_duration_since(Instant::now())).await;
        }
    }

    async fn throttle_everyone(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_THROTTLE);
        let mut slot = self.throttled_until.lock().await;
        if slot.is_none_or(|t| t < until) {
            *slot = Some(until);
        }
    }

    async fn call<T, F, Fut>(&self, account: &Account, f: F) -> Result<T, WithingsSourceError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: Future<Output = Result<T, WithingsError>>,
    {
        let mut session = self.tokens.session(account).await?;
        self.retry
            .run("Withings call", async || {
                loop {
                    self.wait_for_throttle().await;
                    self.quotas.acquire(account.id).await;
                    match f(session.token()).await {
                        Err(e) if e.is_auth() && session.refresh_once(&e).await? => {}
                        // Rejected even after a refresh: the person must consent again.
                        Err(e) if e.is_auth() => {
                            self.tokens.mark_needs_reconsent(account).await?;
                            return Err(AuthError::NeedsReconsent.into());
                        }
                        // A 601 pauses every account, not only this one.
                        Err(e @ WithingsError::Throttled { wait, .. }) => {
                            self.throttle_everyone(wait.unwrap_or_else(|| self.retry.backoff().delay(0))).await;
                            return Err(e.into());
                        }
                        other => return other.map_err(WithingsSourceError::from),
                    }
                }
            })
            .await
    }

    /// Every page of a `more`/`offset` list.
    async fn pages<T, B>(
        &self,
        account: &Account,
        path: &'static str,
        action: &'static str,
        params: &[(&str, String)],
        split: impl Fn(B) -> (Vec<T>, bool, u64),
    ) -> Result<Vec<T>, WithingsSourceError>
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
        Err(WithingsSourceError::Pagination(MAX_PAGES))
    }

    /// Paired devices.
    pub async fn devices(&self, account: &Account) -> Result<Vec<api::Device>, WithingsSourceError> {
        let body: api::DeviceBody =
            self.call(account, |t| async move { self.client.call("/v2/user", "getdevice", &[], &t).await }).await?;
        Ok(body.devices)
    }

    /// Measure groups modified since `lastupdate` (unix seconds).
    pub async fn measures(
        &self,
        account: &Account,
        lastupdate: i64,
    ) -> Result<Vec<api::MeasureGroup>, WithingsSourceError> {
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
    ) -> Result<Vec<api::Activity>, WithingsSourceError> {
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
    ) -> Result<Vec<(DateTime<Utc>, f64)>, WithingsSourceError> {
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
                let (Ok(secs), Some(bpm)) = (ts.parse::<i64>(), sample.heart_rate) else { continue };
                if let Some(at) = DateTime::from_timestamp(secs, 0).filter(|at| *at >= start && *at < end) {
                    out.push((at, bpm));
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
    ) -> Result<Vec<api::SleepSummary>, WithingsSourceError> {
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
