//! Withings' application-wide rate limit: 120 requests a minute for the whole
//! application (every user, token requests included). Past it, the answer is HTTP 200
//! with status 601 and the seconds to wait, as the real API sends it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};

use crate::simulator::SimState;

/// Requests the application made in the last minute, by the simulator's clock.
#[derive(Debug, Default)]
pub(crate) struct AppQuota {
    sent: Mutex<VecDeque<DateTime<Utc>>>,
}

impl AppQuota {
    /// Counts a request at `now`, or says how many seconds to wait when `per_minute`
    /// were already made in the minute before it.
    fn admit(&self, now: DateTime<Utc>, per_minute: u32) -> Result<(), u64> {
        let Ok(mut sent) = self.sent.lock() else { return Ok(()) };
        while sent.front().is_some_and(|t| *t <= now - TimeDelta::seconds(60)) {
            sent.pop_front();
        }
        if sent.len() >= per_minute as usize {
            let oldest = sent.front().copied().unwrap_or(now);
            let wait = (oldest + TimeDelta::seconds(60) - now).num_milliseconds().max(1);
            return Err((wait as u64).div_ceil(1000));
        }
        sent.push_back(now);
        Ok(())
    }
}

/// The middleware in front of every Withings endpoint.
pub(crate) async fn enforce(State(state): State<Arc<SimState>>, request: Request, next: Next) -> Response {
    // The consent pages are a browser's, on another host (account.withings.com).
    let api = !request.uri().path().contains("/oauth2_user/");
    if let Some(per_minute) = state.withings_per_minute.filter(|_| api)
        && let Err(wait) = state.withings_quota.admit(state.clock.now(), per_minute)
    {
        state.count("withings.throttled");
        return super::throttled(Some(wait));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_121st_request_of_a_minute_waits_for_the_first_to_leave_it() {
        let quota = AppQuota::default();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        for i in 0..120 {
            assert_eq!(quota.admit(t0 + TimeDelta::milliseconds(i * 100), 120), Ok(()));
        }
        assert_eq!(quota.admit(t0 + TimeDelta::seconds(30), 120), Err(30));
        assert_eq!(quota.admit(t0 + TimeDelta::milliseconds(59_999), 120), Err(1));
        assert_eq!(quota.admit(t0 + TimeDelta::seconds(60), 120), Ok(()), "the first left the minute");
        assert_eq!(quota.admit(t0 + TimeDelta::seconds(60), 120), Err(1), "the second has not");
    }
}
