//! Upstream quotas: a per-account and a per-application limiter (governor), awaited
//! before every API call so wearbridge stays under the provider's published limits
//! instead of discovering them through 429s.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Both limiters of one provider.
pub struct Quotas {
    application: DefaultDirectRateLimiter,
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
    /// `per_account` and `application` requests per minute (bursts up to the same count).
    pub fn per_minute(per_account: u32, application: u32) -> Self {
        Self {
            application: RateLimiter::direct(per_minute(application)),
            per_account: RateLimiter::keyed(per_minute(per_account)),
        }
    }

    /// Waits until both limiters allow one more request for `account_id`.
    pub async fn acquire(&self, account_id: i64) {
        self.per_account.until_key_ready(&account_id).await;
        self.application.until_ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_account_does_not_block_another() {
        let q = Quotas::per_minute(2, 1000);
        q.acquire(1).await;
        q.acquire(1).await;
        // Account 1 is out of budget for a minute; account 2 is not.
        let other = tokio::time::timeout(std::time::Duration::from_millis(200), q.acquire(2)).await;
        assert!(other.is_ok());
        let same = tokio::time::timeout(std::time::Duration::from_millis(200), q.acquire(1)).await;
        assert!(same.is_err(), "the third request of account 1 waits");
    }
}
