//! The shared HTTP client for upstream calls (retries: [`crate::retry`]), and reading an
//! answer's body with a cap, so a hostile or broken upstream cannot fill the memory.

use std::time::Duration;

/// Makes ring the process's TLS provider (rustls), once; every TLS user (this client,
/// the node's `wss://`, PostgreSQL over TLS) then agrees on it. Harmless to call again.
pub fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the client every upstream call uses: bounded timeouts, a clear user agent.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    tls();
    reqwest::Client::builder()
        .user_agent(concat!("wearbridge/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .build()
}

/// The default cap on one upstream answer (`sync.max_response_bytes`): 32 MiB, far above
/// any page wearbridge asks for (10,000 heart-rate points are about 3 MiB).
pub const DEFAULT_MAX_BODY: u64 = 32 << 20;

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {limit} bytes (sync.max_response_bytes); not read")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Transport(String),
}

/// Reads `response`'s body, refusing (without reading on) one larger than `limit`
/// bytes: by its `Content-Length` when it declares one, else as the chunks arrive. A
/// refusal is counted as an upstream answer of `provider` with status `too_large`.
pub async fn read_body(
    mut response: reqwest::Response,
    limit: u64,
    provider: &'static str,
) -> Result<Vec<u8>, BodyError> {
    let too_large = || {
        crate::telemetry::upstream_request(provider, "too_large");
        BodyError::TooLarge { limit }
    };
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| BodyError::Transport(e.without_url().to_string()))? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
