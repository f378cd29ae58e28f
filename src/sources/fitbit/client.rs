//! HTTP calls to the Google Health API v4. One call, one answer: retries and tokens are
//! the caller's business ([`super::FitbitSource`]).

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use chrono::{Datelike, NaiveDate};
use serde_json::json;

use super::api::{
    DailyRollUpResponse, ErrorBody, Identity, ListDataPointsResponse, ListPairedDevicesResponse, Settings,
};
use crate::sources::{code_name, json_position};

/// One failed API call. Messages carry the endpoint and Google's status, never tokens
/// or response values.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Google's free-text `message` is never kept (it can name the person); its status
    /// and reason are, reduced to code names.
    #[error("{endpoint}: HTTP {status} {google_status} {reason}")]
    Status {
        endpoint: &'static str,
        status: u16,
        google_status: String,
        /// `details[].reason` of Google's error (e.g. `ACCESS_TOKEN_SCOPE_INSUFFICIENT`).
        reason: String,
        /// Google's message said the token lacks a scope (its only use of the text).
        scope_hint: bool,
        retry_after: Option<Duration>,
    },
    #[error("{endpoint}: cannot reach the API: {message}")]
    Transport { endpoint: &'static str, message: String },
    #[error("{endpoint}: malformed answer ({message})")]
    Decode { endpoint: &'static str, message: String },
    #[error("{endpoint}: the answer is larger than {limit} bytes (sync.max_response_bytes); not read")]
    TooLarge { endpoint: &'static str, limit: u64 },
}

impl ApiError {
    /// Worth retrying after a pause: 429, 5xx, network trouble, a cut or garbled body.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => *status == 429 || *status >= 500,
            ApiError::Transport { .. } | ApiError::Decode { .. } => true,
            ApiError::TooLarge { .. } => false,
        }
    }

    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ApiError::Status { status: 401, .. })
    }

    /// 403 because the person did not grant the scope this data needs.
    pub fn is_scope_insufficient(&self) -> bool {
        matches!(self, ApiError::Status { status: 403, reason, scope_hint, .. }
            if reason == "ACCESS_TOKEN_SCOPE_INSUFFICIENT" || *scope_hint)
    }

    /// The server's requested pause (`Retry-After`), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl crate::retry::Retryable for ApiError {
    fn verdict(&self) -> crate::retry::Verdict {
        use crate::retry::Verdict;
        match self.retry_after() {
            _ if !self.is_transient() => Verdict::GiveUp,
            Some(wait) => Verdict::RetryAfter(wait),
            None => Verdict::Retry,
        }
    }
}

/// A thin client for the endpoints wearbridge reads.
#[derive(Debug, Clone)]
pub struct GoogleHealthClient {
    http: reqwest::Client,
    base: String,
    max_body: u64,
}

impl GoogleHealthClient {
    /// `base` is `fitbit.api_base_url` (e.g. `https://health.googleapis.com`).
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        Self { http, base: base.trim_end_matches('/').to_owned(), max_body: crate::http::DEFAULT_MAX_BODY }
    }

    /// Refuses answers larger than `bytes` (`sync.max_response_bytes`).
    pub fn with_max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    pub async fn identity(&self, token: &SecretString) -> Result<Identity, ApiError> {
        self.get("identity", "v4/users/me/identity", &[], token).await
    }

    pub async fn settings(&self, token: &SecretString) -> Result<Settings, ApiError> {
        self.get("settings", "v4/users/me/settings", &[], token).await
    }

    /// One page of `dataPoints.list` for `data_type` (kebab-case, e.g. `heart-rate`).
    pub async fn list_data_points(
        &self,
        token: &SecretString,
        data_type: &str,
        filter: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<ListDataPointsResponse, ApiError> {
        let path = format!("v4/users/me/dataTypes/{data_type}/dataPoints");
        let size = page_size.to_string();
        let mut query = vec![("filter", filter), ("pageSize", size.as_str())];
        if let Some(t) = page_token {
            query.push(("pageToken", t));
        }
        self.get("dataPoints.list", &path, &query, token).await
    }

    /// One page of paired devices.
    pub async fn paired_devices(
        &self,
        token: &SecretString,
        page_token: Option<&str>,
    ) -> Result<ListPairedDevicesResponse, ApiError> {
        let mut query = vec![("pageSize", "100")];
        if let Some(t) = page_token {
            query.push(("pageToken", t));
        }
        self.get("pairedDevices.list", "v4/users/me/pairedDevices", &query, token).await
    }

    /// Daily roll-ups of `data_type` for the civil days `start..end` (end exclusive).
    pub async fn daily_roll_up(
        &self,
        token: &SecretString,
        data_type: &str,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<DailyRollUpResponse, ApiError> {
        let date = |d: NaiveDate| json!({"date": {"year": d.year(), "month": d.month(), "day": d.day()}});
        // windowSizeDays must be sent explicitly: the API answers 400 without it.
        let body = json!({"range": {"start": date(start), "end": date(end)}, "windowSizeDays": 1});
        let url = format!("{}/v4/users/me/dataTypes/{data_type}/dataPoints:dailyRollUp", self.base);
        self.send("dataPoints.dailyRollUp", self.http.post(url).json(&body), token).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&str, &str)],
        token: &SecretString,
    ) -> Result<T, ApiError> {
        self.send(endpoint, self.http.get(format!("{}/{path}", self.base)).query(query), token).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
        token: &SecretString,
    ) -> Result<T, ApiError> {
        let transport = |e: reqwest::Error| ApiError::Transport { endpoint, message: e.without_url().to_string() };
        let response = request
            .header(AUTHORIZATION, format!("Bearer {}", token.expose_secret()))
            .send()
            .await
            .inspect_err(|_| crate::telemetry::upstream_request("fitbit", "error"))
            .map_err(transport)?;
        let status = response.status().as_u16();
        crate::telemetry::upstream_request("fitbit", &status.to_string());
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = crate::http::read_body(response, self.max_body, "fitbit").await.map_err(|e| match e {
            crate::http::BodyError::TooLarge { limit } => ApiError::TooLarge { endpoint, limit },
            crate::http::BodyError::Transport(message) => ApiError::Transport { endpoint, message },
        })?;
        parse_answer(endpoint, status, retry_after, &body)
    }
}

/// An answer's body as `T` (2xx) or as the typed error Google's error body describes.
/// Pure, so it is fuzzed with any bytes.
pub(crate) fn parse_answer<T: DeserializeOwned>(
    endpoint: &'static str,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<T, ApiError> {
    if (200..300).contains(&status) {
        return crate::normalize::parse_page(body)
            .map_err(|e| ApiError::Decode { endpoint, message: json_position(&e) });
    }
    let (google_status, reason, scope_hint) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => {
            let reason = b.error.details.iter().find_map(|d| d.reason.as_deref()).unwrap_or_default();
            let scope_hint = b.error.message.contains("insufficient authentication scopes");
            (code_name(&b.error.status), code_name(reason), scope_hint)
        }
        Err(_) => ("-".to_owned(), format!("(a non-JSON body of {} bytes)", body.len()), false),
    };
    Err(ApiError::Status { endpoint, status, google_status, reason, scope_hint, retry_after })
}
