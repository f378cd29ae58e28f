//! Upstream quotas: a per-account limiter (governor) and the application's request
//! [`Budget`], awaited before every API call so wearbridge stays under the provider's
//! published limits instead of discovering them through 429s and 601s.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::budget::Budget;

/// Both limits of one provider.
pub struct Quotas {
    application: Arc<Budget>,
    per_account: DefaultKeyedRateLimiter<i64>,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Quotas")
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl Quotas {
    /// `per_account` requests per minute (bursts up to the same count) within the
    /// application's `budget`.
    pub fn new(per_account: u32, application: Arc<Budget>) -> Self {
        Self { application, per_account: RateLimiter::keyed(per_minute(per_account)) }
    }

    /// Waits until both limits allow one more request for `account_id`.
    pub async fn acquire(&self, account_id: i64) {
        self.per_account.until_key_ready(&account_id).await;
        self.application.acquire(Some(account_id)).await;
    }

    /// The application's budget (the worker plans claims with it).
    pub fn budget(&self) -> &Arc<Budget> {
        &self.application
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_account_does_not_block_another() {
        let q = Quotas::new(2, Arc::new(Budget::per_minute(1000, crate::clock::Clock::system())));
        q.acquire(1).await;
        q.acquire(1).await;
        // Account 1 is out of budget for a minute; account 2 is not.
        let other = tokio::time::timeout(std::time::Duration::from_millis(200), q.acquire(2)).await;
        assert!(other.is_ok());
        let same = tokio::time::timeout(std::time::Duration::from_millis(200), q.acquire(1)).await;
        assert!(same.is_err(), "the third request of account 1 waits");
    }
}
