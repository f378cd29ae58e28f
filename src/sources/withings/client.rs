//! HTTP calls to the Withings API: form-encoded POSTs with a bearer token, answered with
//! HTTP 200 and a `{"status", "body"}` envelope even on errors.

use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::api::{Envelope, Throttle};
use crate::sources::json_position;

/// One failed Withings call, typed by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum WithingsError {
    /// Withings' free-text `error` is never kept (it can name the person).
    #[error("{action}: Withings status {status}")]
    Status { action: &'static str, status: i64 },
    #[error("{action}: too many requests (601)")]
    Throttled { action: &'static str, wait: Option<Duration> },
    #[error("{action}: HTTP {status}")]
    Http { action: &'static str, status: u16 },
    #[error("{action}: cannot reach the API: {message}")]
    Transport { action: &'static str, message: String },
    #[error("{action}: malformed answer ({message})")]
    Decode { action: &'static str, message: String },
    #[error("{action}: the answer is larger than {limit} bytes (sync.max_response_bytes); not read")]
    TooLarge { action: &'static str, limit: u64 },
}

impl crate::retry::Retryable for WithingsError {
    fn verdict(&self) -> crate::retry::Verdict {
        use crate::retry::Verdict;
        match self {
            WithingsError::Throttled { wait: Some(wait), .. } => Verdict::RetryAfter(*wait),
            e if e.is_transient() => Verdict::Retry,
            _ => Verdict::GiveUp,
        }
    }
}

impl WithingsError {
    /// Statuses 100–102, 200 and 401: the access token is not accepted.
    pub fn is_auth(&self) -> bool {
        matches!(self, WithingsError::Status { status: 100..=102 | 200 | 401, .. })
    }

    /// Worth retrying: 522 (timeout), 601, 5xx, network trouble, garbled bodies.
    pub fn is_transient(&self) -> bool {
        match self {
            WithingsError::Status { status, .. } => *status == 522,
            WithingsError::Throttled { .. } | WithingsError::Transport { .. } | WithingsError::Decode { .. } => true,
            WithingsError::Http { status, .. } => *status >= 500 || *status == 429,
            WithingsError::TooLarge { .. } => false,
        }
    }
}

/// A thin client for the actions wearbridge uses.
#[derive(Debug, Clone)]
pub struct WithingsClient {
    http: reqwest::Client,
    base: String,
    max_body: u64,
}

impl WithingsClient {
    /// `base` is `withings.api_base_url` (e.g. `https://wbsapi.withings.net`).
    pub fn new(http: reqwest::Client, base: &str) -> Self {
        Self { http, base: base.trim_end_matches('/').to_owned(), max_body: crate::http::DEFAULT_MAX_BODY }
    }

    /// Refuses answers larger than `bytes` (`sync.max_response_bytes`).
    pub fn with_max_body(mut self, bytes: u64) -> Self {
        self.max_body = bytes;
        self
    }

    /// `POST {base}{path}` with `action` and `params`; the envelope's body on status 0.
    pub async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        action: &'static str,
        params: &[(&str, String)],
        token: &SecretString,
    ) -> Result<T, WithingsError> {
        let transport = |e: reqwest::Error| WithingsError::Transport { action, message: e.without_url().to_string() };
        let mut form: Vec<(&str, &str)> = vec![("action", action)];
        form.extend(params.iter().map(|(k, v)| (*k, v.as_str())));
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", token.expose_secret()))
            .form(&form)
            .send()
            .await
            .inspect_err(|_| crate::telemetry::upstream_request("withings", "error"))
            .map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = crate::http::read_body(response, self.max_body, "withings").await.map_err(|e| match e {
            crate::http::BodyError::TooLarge { limit } => WithingsError::TooLarge { action, limit },
            crate::http::BodyError::Transport(message) => WithingsError::Transport { action, message },
        })?;
        if !(200..300).contains(&status) {
            crate::telemetry::upstream_request("withings", &status.to_string());
            return Err(WithingsError::Http { action, status });
        }
        parse_envelope(action, &bytes)
    }
}

/// The body of a Withings envelope as `T` (status 0), or the typed error its status
/// says. Pure, so it is fuzzed with any bytes.
pub(crate) fn parse_envelope<T: DeserializeOwned>(action: &'static str, bytes: &[u8]) -> Result<T, WithingsError> {
    let decode = |e: serde_json::Error| WithingsError::Decode { action, message: json_position(&e) };
    let head: Envelope<serde::de::IgnoredAny> = serde_json::from_slice(bytes).map_err(decode)?;
    // Withings answers HTTP 200 with its own status in the body: count that one.
    crate::telemetry::upstream_request("withings", &format!("200/{}", head.status));
    match head.status {
        0 => {
            let env: Envelope<T> = crate::normalize::parse_page(bytes).map_err(decode)?;
            env.body.ok_or(WithingsError::Decode { action, message: "status 0 without a body".into() })
        }
        601 => {
            let wait = serde_json::from_slice::<Envelope<Throttle>>(bytes)
                .ok()
                .and_then(|e| e.body)
                .and_then(|b| b.wait_seconds)
                .map(Duration::from_secs);
            Err(WithingsError::Throttled { action, wait })
        }
        status => Err(WithingsError::Status { action, status }),
    }
}
