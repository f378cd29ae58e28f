//! The shared HTTP client and retry policy for upstream calls.

use std::time::Duration;

/// Builds the client every upstream call uses: bounded timeouts, a clear user agent.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("wearbridge/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
}

/// Exponential back-off with full jitter, for transient upstream failures.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts in all (the first one included).
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { attempts: 4, base: Duration::from_millis(250), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The pause before retry number `retry` (0-based): random in `[d/2, d]` where
    /// `d = min(max, base * 2^retry)`.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << retry.min(16)).min(self.max);
        let mut byte = [0u8; 1];
        let frac = if getrandom::fill(&mut byte).is_ok() { f64::from(byte[0]) / 255.0 } else { 1.0 };
        exp.mul_f64(0.5 + frac / 2.0)
    }
}
