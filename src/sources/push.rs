//! What a provider's change notification says, once parsed: whose data (the provider's
//! user id), which datasets, which interval, and whether it was a deletion. Nothing in
//! it is trusted beyond "look here": the data is always read from the API with the
//! account's own token, and the interval only widens that read (within limits).

use chrono::{DateTime, Utc};

use crate::config::Dataset;

/// One parsed notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The provider's user id (personal data: never logged).
    pub user_id: String,
    pub datasets: Vec<Dataset>,
    /// The changed interval, as far as the notification says.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Upstream deleted data (recorded and counted; published messages stay published).
    pub delete: bool,
}

/// Why a notification was not accepted; the text never quotes the request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    #[error("malformed notification: {0}")]
    Malformed(String),
    #[error("the notification carries no Authorization header")]
    Unauthenticated,
    #[error("the notification's Authorization header is wrong")]
    Forbidden,
    #[error("the notification's signature does not verify")]
    BadSignature,
}

impl PushError {
    /// The metric label of a refused notification.
    pub fn result(&self) -> &'static str {
        match self {
            PushError::Malformed(_) => "malformed",
            PushError::Unauthenticated | PushError::Forbidden | PushError::BadSignature => "forged",
        }
    }
}

/// An instant as notifications write it: RFC 3339, or Unix seconds (as a number or
/// a string); anything else is no instant.
pub fn instant(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    match value {
        serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| s.trim().parse::<i64>().ok().and_then(|n| DateTime::from_timestamp(n, 0))),
        serde_json::Value::Number(n) => n.as_i64().and_then(|n| DateTime::from_timestamp(n, 0)),
        _ => None,
    }
}

/// Constant-time equality of a presented secret and the expected one.
pub fn secret_matches(expected: &[u8], given: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Equal-length digests, compared without an early exit.
    let (a, b) = (Sha256::digest(expected), Sha256::digest(given));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_the_shapes_notifications_use() {
        let t = DateTime::from_timestamp(1_764_500_000, 0).unwrap();
        assert_eq!(instant(&serde_json::json!(1_764_500_000)), Some(t));
        assert_eq!(instant(&serde_json::json!("1764500000")), Some(t));
        assert_eq!(instant(&serde_json::json!(t.to_rfc3339())), Some(t));
        assert_eq!(instant(&serde_json::json!("yesterday")), None);
        assert_eq!(instant(&serde_json::json!({"seconds": 1})), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(secret_matches(b"Bearer abc", b"Bearer abc"));
        assert!(!secret_matches(b"Bearer abc", b"Bearer ab"));
        assert!(!secret_matches(b"Bearer abc", b""));
    }
}
