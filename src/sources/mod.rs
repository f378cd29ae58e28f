//! Upstream sources: each one turns an account's provider data into provider JSON types,
//! page by page, with tokens and retries handled here rather than in the pipeline.

pub mod fitbit;
pub mod quota;
pub mod withings;

/// Where a JSON body failed to parse, without quoting any of its values (which may be
/// personal data or tokens).
pub(crate) fn json_position(e: &serde_json::Error) -> String {
    format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column())
}
