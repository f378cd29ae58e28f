//! Upstream quotas: a per-account limiter (governor) and the application's request
//! [`Budget`], awaited before every API call so wearbridge stays under the provider's
//! published limits instead of discovering them through 429s and 601s.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::budget::Budget;
use crate::clock::Clock;

/// Both limits of one provider.
pub struct Quotas {
    application: Arc<Budget>,
    per_account: RateLimiter<i64, DefaultKeyedStateStore<i64>, Clock, NoOpMiddleware<std::time::Duration>>,
}

/// Governor's view of the application clock: time since the Unix epoch.
impl governor::clock::Clock for Clock {
    type Instant = std::time::Duration;

    fn now(&self) -> Self::Instant {
        let nanos = Clock::now(self).timestamp_nanos_opt().unwrap_or_default();
        std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or_default())
    }
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
        let clock = application.clock().clone();
        Self { application, per_account: RateLimiter::dashmap_with_clock(per_minute(per_account), clock) }
    }

    /// Waits until both limits allow one more request for `account_id`. Both run on
    /// the application's clock, so a test that pins it decides when a minute has passed.
    pub async fn acquire(&self, account_id: i64) {
        let clock = self.application.clock();
        while let Err(not_until) = self.per_account.check_key(&account_id) {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(clock));
            let wait = chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::seconds(1));
            clock.sleep_until(clock.now() + wait).await;
        }
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
