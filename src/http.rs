//! The shared HTTP client for upstream calls (retries: [`crate::retry`]).

use std::time::Duration;

/// Builds the client every upstream call uses: bounded timeouts, a clear user agent.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("wearbridge/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
}
