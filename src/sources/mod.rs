//! Upstream sources: each one turns an account's provider data into provider JSON types,
//! page by page, with tokens and retries handled here rather than in the pipeline.

pub mod fitbit;
pub mod quota;
pub mod withings;

use crate::auth::AuthError;
use crate::retry::{Retryable, Verdict};

/// Why a dataset could not be read for one account, whatever the source: `E` is the
/// source's own API error, which says whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum SourceError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Api(E),
    #[error("pagination did not end after {0} pages")]
    Pagination(usize),
}

impl<E: std::error::Error + Retryable + 'static> Retryable for SourceError<E> {
    fn verdict(&self) -> Verdict {
        match self {
            SourceError::Api(e) => e.verdict(),
            SourceError::Auth(_) | SourceError::Pagination(_) => Verdict::GiveUp,
        }
    }
}

/// Where a JSON body failed to parse, without quoting any of its values (which may be
/// personal data or tokens).
pub(crate) fn json_position(e: &serde_json::Error) -> String {
    format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column())
}
