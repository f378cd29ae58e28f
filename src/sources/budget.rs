//! A provider's application-wide request budget: at most `per_minute` requests in any
//! 60 seconds by the application [`Clock`], with room set aside for planned syncs.
//!
//! Withings allows 120 requests a minute for the whole application and answers 601 past
//! that. A rate limiter that allows a full minute's burst and then refills (GCRA, as
//! `governor` does) can send nearly twice the quota within one sliding minute; this
//! counts what was actually sent in each of the last 61 seconds, so no sliding minute
//! ever holds more than `per_minute`. The worker reserves a sync's expected requests
//! before it claims an account ([`Budget::try_reserve`]), so accounts wait for a later
//! slot in the store rather than in a sync slot, where they would hold back the
//! accounts of other providers.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::clock::Clock;

/// Seconds of history kept: a request sent in second `s` counts until second `s + 60`
/// has passed, so the count covers every sliding minute that ends now.
const SPAN: i64 = 61;

/// See the module documentation.
#[derive(Debug)]
pub struct Budget {
    per_minute: u32,
    clock: Clock,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    /// Requests sent in each second, at index `second mod SPAN`.
    sent: [u32; SPAN as usize],
    /// The latest second `sent` describes.
    at: i64,
    reserved: HashMap<i64, u32>,
    reserved_total: u32,
}

impl Window {
    fn roll(&mut self, now: i64) {
        if now <= self.at {
            return;
        }
        for second in (self.at + 1)..=now.min(self.at + SPAN) {
            self.sent[second.rem_euclid(SPAN) as usize] = 0;
        }
        self.at = now;
    }

    fn used(&self) -> u32 {
        self.sent.iter().sum()
    }

    fn count(&mut self) {
        self.sent[self.at.rem_euclid(SPAN) as usize] += 1;
    }

    /// The second in which the oldest counted request stops counting.
    fn next_free(&self) -> i64 {
        ((self.at - SPAN + 1)..=self.at)
            .find(|second| self.sent[second.rem_euclid(SPAN) as usize] > 0)
            .map_or(self.at + 1, |oldest| oldest + SPAN)
    }
}

impl Budget {
    /// At most `per_minute` requests (at least 1) in any minute by `clock`.
    pub fn per_minute(per_minute: u32, clock: Clock) -> Self {
        let at = clock.now().timestamp();
        let window = Window { sent: [0; SPAN as usize], at, reserved: HashMap::new(), reserved_total: 0 };
        Self { per_minute: per_minute.max(1), clock, window: Mutex::new(window) }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.roll(self.clock.now().timestamp());
        window
    }

    /// The requests allowed in any minute.
    pub fn limit(&self) -> u32 {
        self.per_minute
    }

    /// The clock the budget's minutes are counted on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Requests that may still be sent or reserved in the current minute.
    pub fn room(&self) -> u32 {
        let window = self.window();
        self.per_minute.saturating_sub(window.used() + window.reserved_total)
    }

    /// Sets `cost` requests aside for `account`'s coming sync, when there is room.
    pub fn try_reserve(&self, account: i64, cost: u32) -> bool {
        let mut window = self.window();
        if window.used() + window.reserved_total + cost > self.per_minute {
            return false;
        }
        *window.reserved.entry(account).or_default() += cost;
        window.reserved_total += cost;
        true
    }

    /// Gives back what `account` reserved and did not use.
    pub fn release(&self, account: i64) {
        let mut window = self.window();
        if let Some(left) = window.reserved.remove(&account) {
            window.reserved_total -= left;
        }
    }

    /// Waits until one more request may be sent (from `account`'s reservation if it has
    /// one left, else from the unreserved room) and counts it. The wait is at most a
    /// minute per round and ends with the future when it is dropped.
    pub async fn acquire(&self, account: Option<i64>) {
        loop {
            let wake = {
                let mut window = self.window();
                let reservation = account.and_then(|id| window.reserved.get_mut(&id)).filter(|left| **left > 0);
                if let Some(left) = reservation {
                    *left -= 1;
                    window.reserved_total -= 1;
                    window.count();
                    return;
                }
                if window.used() + window.reserved_total < self.per_minute {
                    window.count();
                    return;
                }
                window.next_free()
            };
            metrics::counter!("wearbridge_upstream_budget_waits_total").increment(1);
            let wake = DateTime::<Utc>::from_timestamp(wake, 0).unwrap_or_else(|| self.clock.now());
            self.clock.sleep_until(wake).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    fn pinned() -> Clock {
        Clock::pinned(Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap())
    }

    async fn send(budget: &Budget, account: Option<i64>) -> bool {
        tokio::time::timeout(std::time::Duration::from_millis(50), budget.acquire(account)).await.is_ok()
    }

    #[tokio::test]
    async fn no_sliding_minute_holds_more_than_the_quota() {
        let clock = pinned();
        let budget = Budget::per_minute(10, clock.clone());
        let mut sent: Vec<DateTime<Utc>> = Vec::new();
        // Try a request every 2 s for 5 minutes; count what each sliding minute holds.
        for _ in 0..150 {
            for _ in 0..3 {
                if send(&budget, None).await {
                    sent.push(clock.now());
                }
            }
            clock.advance(TimeDelta::seconds(2));
        }
        for (i, t) in sent.iter().enumerate() {
            let in_minute = sent[i..].iter().take_while(|u| **u < *t + TimeDelta::seconds(60)).count();
            assert!(in_minute <= 10, "{in_minute} requests in the minute from {t}");
        }
        // And the quota is used: about 10 a minute over 5 minutes.
        assert!(sent.len() >= 45, "{}", sent.len());
    }

    #[tokio::test]
    async fn reservations_are_kept_for_their_account() {
        let clock = pinned();
        let budget = Budget::per_minute(10, clock.clone());
        assert!(budget.try_reserve(1, 6));
        assert!(!budget.try_reserve(2, 6), "only 4 left");
        assert_eq!(budget.room(), 4);
        for _ in 0..4 {
            assert!(send(&budget, None).await);
        }
        assert!(!send(&budget, None).await, "the rest is reserved");
        for _ in 0..6 {
            assert!(send(&budget, Some(1)).await, "account 1 draws on its reservation");
        }
        assert!(!send(&budget, Some(1)).await, "and then waits like everyone");
        assert!(!budget.try_reserve(3, 1));
        // A minute later the window has room again; a released reservation is room too.
        clock.advance(TimeDelta::seconds(61));
        assert_eq!(budget.room(), 10);
        assert!(budget.try_reserve(4, 3));
        budget.release(4);
        assert_eq!(budget.room(), 10);
    }

    #[tokio::test]
    async fn a_waiting_request_goes_when_the_oldest_leaves_the_minute() {
        let clock = pinned();
        let budget = std::sync::Arc::new(Budget::per_minute(2, clock.clone()));
        assert!(send(&budget, None).await);
        clock.advance(TimeDelta::seconds(10));
        assert!(send(&budget, None).await);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.acquire(None).await }
        });
        clock.advance(TimeDelta::seconds(50));
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(!waiting.is_finished(), "60 s after the first is still its minute");
        clock.advance(TimeDelta::seconds(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
    }
}
