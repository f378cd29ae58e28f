//! Upstream sources. Each one lives in its own folder (`sources/<name>/`: OAuth, API
//! types, client, normalisation, sync plan) and is registered in [`registry`]; the
//! pipeline, the worker, onboarding, the consent pages and the CLI work on the [`Source`]
//! and [`crate::auth::OAuth`] traits and never name a provider.
//!
//! A source turns one account's provider data into canonical records, batch by batch,
//! with tokens, quotas and retries handled inside it; what reaches the pipeline is one
//! [`SourceError`] whose variant says what to do next.

pub mod budget;
pub mod fitbit;
pub mod local;
mod pass;
pub mod push;
pub mod quota;
pub mod registry;
pub mod withings;

pub use pass::{AccountPass, window_start};
pub use registry::{Registration, Sources};

use std::time::Duration;

use anonymizer::{Provider, Record};
use futures::future::LocalBoxFuture;

use crate::auth::AuthError;
use crate::config::Dataset;
use crate::normalize::Skipped;
use crate::retry::{Retryable, Verdict};
use crate::store::Account;

/// An error from below a source, kept for its message and chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a dataset could not be read for one account, whatever the source. The variant
/// says what the pipeline does.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The person did not grant what this dataset needs: skip the dataset, keep the rest.
    #[error("the person did not grant the scope this dataset needs ({scope})")]
    ScopeMissing { scope: String },
    /// The provider refuses the account's grant: the account waits for new consent.
    #[error("the provider revoked or expired the grant; the person must consent again")]
    NeedsReconsent,
    /// Worth trying again later (no sooner than `retry_after` when the provider said).
    #[error("{error}")]
    Transient { retry_after: Option<Duration>, error: BoxError },
    /// Trying again as is cannot help (a refused request, a configuration error).
    #[error("{0}")]
    Fatal(BoxError),
}

impl SourceError {
    pub fn transient(error: impl Into<BoxError>) -> Self {
        Self::Transient { retry_after: None, error: error.into() }
    }

    pub fn fatal(error: impl Into<BoxError>) -> Self {
        Self::Fatal(error.into())
    }
}

impl Retryable for SourceError {
    fn verdict(&self) -> Verdict {
        match self {
            SourceError::Transient { retry_after: Some(wait), .. } => Verdict::RetryAfter(*wait),
            SourceError::Transient { retry_after: None, .. } => Verdict::Retry,
            SourceError::ScopeMissing { .. } | SourceError::NeedsReconsent | SourceError::Fatal(_) => Verdict::GiveUp,
        }
    }
}

impl SourceError {
    /// No access token could be had (the token endpoint failed, no tokens stored): every
    /// other dataset of the account would fail the same way.
    pub fn is_token_failure(&self) -> bool {
        match self {
            SourceError::Transient { error, .. } | SourceError::Fatal(error) => error.is::<AuthError>(),
            _ => false,
        }
    }
}

impl From<AuthError> for SourceError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::NeedsReconsent => SourceError::NeedsReconsent,
            AuthError::Refresh(ref r) if r.is_transient() => SourceError::transient(e),
            AuthError::Store(_) => SourceError::transient(e),
            e => SourceError::fatal(e),
        }
    }
}

/// Records read for one cursor: they enter the outbox together with the cursor.
pub struct Batch {
    /// The cursor's name in the store (`heart_rate`, `heart_rate.resting`, ...).
    pub cursor_key: &'static str,
    pub cursor: String,
    pub records: Vec<Result<Record, Skipped>>,
    /// Samples of this message type that may be published as series (`heart-rate`):
    /// the pipeline then publishes closed windows only and moves the cursor to the end of
    /// the last one.
    pub series: Option<&'static str>,
}

/// One upstream source of wearable data.
///
/// Its futures are not `Send`: rustc cannot yet prove `Send` for a boxed future that
/// holds an async closure (the retry executor's) across an await with higher-ranked
/// lifetimes. Passes run on the worker's own task, never spawned, so nothing needs it.
pub trait Source: Send + Sync {
    /// The provider name its accounts are stored under and its records carry.
    fn provider(&self) -> Provider;

    /// The provider's user id of an account that has none stored yet (enrolled with a
    /// bare refresh token).
    fn user_id<'a>(&'a self, account: &'a Account) -> LocalBoxFuture<'a, Result<String, SourceError>>;

    /// The application's request budget with this provider (see [`budget::Budget`]).
    fn budget(&self) -> &std::sync::Arc<budget::Budget>;

    /// The most requests one account's sync is expected to make (every dataset and a
    /// token refresh): what the worker reserves in [`Source::budget`] before claiming
    /// an account of this provider.
    fn requests_per_sync(&self) -> u32;

    /// Keeps the account subscribed to the provider's change notifications at
    /// `callback` (listing what exists, adding what is missing). Providers whose
    /// notifications are set up once per project, not per account, have nothing to do.
    fn subscribe<'a>(
        &'a self,
        _account: &'a Account,
        _callback: &'a str,
    ) -> LocalBoxFuture<'a, Result<(), SourceError>> {
        futures::FutureExt::boxed_local(async { Ok(()) })
    }

    /// Ends the account's notification subscriptions at `callback` (when it leaves).
    fn unsubscribe<'a>(
        &'a self,
        _account: &'a Account,
        _callback: &'a str,
    ) -> LocalBoxFuture<'a, Result<(), SourceError>> {
        futures::FutureExt::boxed_local(async { Ok(()) })
    }

    /// Reads one dataset of one account into batches, each with the cursor it advances.
    /// A dataset the source does not offer yields no batch.
    fn read<'a, 'p: 'a>(
        &'a self,
        pass: &'a mut AccountPass<'p>,
        dataset: Dataset,
    ) -> LocalBoxFuture<'a, Result<Vec<Batch>, SourceError>>;
}

/// An upstream call's outcome inside a source's retry loop: `Err` is classified and may
/// be retried, `Ok(Err(..))` ends the loop at once (an authorisation failure, already
/// retried by the token manager).
pub(crate) type Attempt<T> = Result<Result<T, SourceError>, SourceError>;

/// Where a JSON body failed to parse, without quoting any of its values (which may be
/// personal data or tokens).
pub(crate) fn json_position(e: &serde_json::Error) -> String {
    format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column())
}

/// An upstream's error code or status name (`INTERNAL`, `invalid_grant`) as it may be
/// logged: a short token of letters, digits, `_`, `-` and `.`. Anything else — free text
/// that may name the person, carry an e-mail or echo a token — becomes `(withheld)`.
pub(crate) fn code_name(text: &str) -> String {
    let text = text.trim();
    let plain = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        text.to_owned()
    } else if text.is_empty() {
        "-".to_owned()
    } else {
        "(withheld)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_codes_are_kept() {
        assert_eq!(super::code_name("INTERNAL"), "INTERNAL");
        assert_eq!(super::code_name("invalid_grant"), "invalid_grant");
        assert_eq!(super::code_name("user Jane Doe jane@example.com failed"), "(withheld)");
        assert_eq!(super::code_name(""), "-");
        assert_eq!(super::code_name(&"A".repeat(65)), "(withheld)");
    }
}
