//! Wiring: settings → store, token manager, source, anonymizer, pipeline. Shared by
//! `run`, `users` and `demo` so each command builds the same objects the same way.

use std::sync::Arc;

use anonymizer::{Anonymizer, PseudonymKey};
use secrecy::SecretString;

use crate::auth::{GoogleOAuth, TokenManager, WithingsOAuth};
use crate::clock::Clock;
use crate::config::{ConfigError, Loaded, Settings};
use crate::http;
use crate::keyfile::{self, KeyFileError};
use crate::pipeline::{BadStreamId, Pipeline, Routes};
use crate::retry::Retry;
use crate::schemas::{SchemaError, Schemas};
use crate::sources::fitbit::{FitbitSource, GoogleHealthClient};
use crate::sources::quota::Quotas;
use crate::sources::withings::{WithingsClient, WithingsSource};
use crate::store::{SqlStore, StoreError, TokenCipher};

/// Start-up failures, each naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("cannot open the store (store.url): {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Route(#[from] BadStreamId),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Opens the store named by `store.url` with the key from `store.key_file`; it stamps
/// times by `clock`.
pub async fn open_store(settings: &Settings, clock: &Clock) -> Result<SqlStore, StartupError> {
    let key = keyfile::load_or_create(&settings.store.key_file, "store.key_file")?;
    Ok(SqlStore::open(&settings.store.url, TokenCipher::new(key)).await?.with_clock(clock.clone()))
}

/// The pseudonym key from `anonymizer.key_file` and `anonymizer.epoch`.
pub fn pseudonym_key(loaded: &Loaded) -> Result<PseudonymKey, StartupError> {
    let settings = &loaded.settings;
    let key = keyfile::load_or_create(&settings.anonymizer.key_file, "anonymizer.key_file")?;
    PseudonymKey::new(settings.anonymizer.epoch.clone(), key)
        .map_err(|e| StartupError::Config(loaded.invalid("anonymizer.epoch", e.to_string())))
}

/// Builds the pipeline. Fitbit client credentials are required to refresh tokens.
pub fn pipeline(
    loaded: &Loaded,
    store: Arc<SqlStore>,
    key: PseudonymKey,
    retry: Retry,
    clock: Clock,
) -> Result<Pipeline, StartupError> {
    let settings = &loaded.settings;
    let http = http::client()?;
    let client_id = settings.fitbit.client_id.clone().unwrap_or_default();
    let client_secret = settings.fitbit.client_secret.clone().unwrap_or_else(|| SecretString::from(String::new()));
    let oauth = GoogleOAuth::new(http.clone(), settings.fitbit.token_url.clone(), client_id, client_secret);
    let withings_oauth = WithingsOAuth::new(
        http.clone(),
        &settings.withings.api_base_url,
        settings.withings.client_id.clone().unwrap_or_default(),
        settings.withings.client_secret.clone().unwrap_or_else(|| SecretString::from(String::new())),
    );
    let tokens = Arc::new(TokenManager::new(store.clone(), oauth, withings_oauth, retry.clone(), clock.clone()));
    let quotas = Quotas::per_minute(settings.fitbit.requests_per_minute, settings.fitbit.project_requests_per_minute);
    let client = GoogleHealthClient::new(http.clone(), &settings.fitbit.api_base_url);
    let fitbit = FitbitSource::new(client, tokens.clone(), quotas, retry.clone());
    let withings = WithingsSource::new(
        WithingsClient::new(http.clone(), &settings.withings.api_base_url),
        tokens,
        settings.withings.requests_per_minute,
        retry,
    );
    let routes = Routes::new(&settings.streamr.streams)?;
    Ok(Pipeline {
        store,
        fitbit,
        withings,
        anonymizer: Anonymizer::new(key, settings.anonymizer.policy()),
        schemas: Schemas::load()?,
        routes,
        sync: settings.sync.clone(),
        clock,
    })
}

/// Checks what `run` needs beyond a well-formed configuration.
pub fn require_for_run(loaded: &Loaded) -> Result<(), ConfigError> {
    let s = &loaded.settings;
    let fitbit = s.fitbit.client_id.is_some() || s.fitbit.client_secret.is_some();
    let withings = s.withings.client_id.is_some() || s.withings.client_secret.is_some();
    if !fitbit && !withings {
        return Err(loaded.invalid(
            "fitbit.client_id",
            "no provider is configured: set fitbit.client_id and fitbit.client_secret, or the withings ones",
        ));
    }
    for (on, id_key, id, secret_key, secret) in [
        (
            fitbit,
            "fitbit.client_id",
            s.fitbit.client_id.is_some(),
            "fitbit.client_secret",
            s.fitbit.client_secret.is_some(),
        ),
        (
            withings,
            "withings.client_id",
            s.withings.client_id.is_some(),
            "withings.client_secret",
            s.withings.client_secret.is_some(),
        ),
    ] {
        if on && !id {
            return Err(loaded.invalid(id_key, "required to refresh tokens"));
        }
        if on && !secret {
            return Err(loaded.invalid(secret_key, "required to refresh tokens (or set it as a _file)"));
        }
    }
    if s.streamr.streams.is_empty() {
        return Err(loaded.invalid(
            "streamr.streams",
            "no stream configured: set streamr.streams.default (or one per message type)",
        ));
    }
    Ok(())
}

/// Checks what publishing needs: a URL that fits the transport and, for a node, an API
/// key.
pub fn require_for_publishing(loaded: &Loaded) -> Result<(), ConfigError> {
    use crate::config::Transport;
    let s = &loaded.settings.streamr;
    let (schemes, example): (&[&str], &str) = match s.transport {
        Transport::Websocket => (&["ws", "wss"], "ws://127.0.0.1:7170"),
        Transport::Http => (&["http", "https"], "http://127.0.0.1:7171"),
        Transport::File => (&["file"], "file:///var/lib/wearbridge/archive"),
    };
    let scheme = url::Url::parse(&s.url).map(|u| u.scheme().to_owned()).unwrap_or_default();
    if !schemes.contains(&scheme.as_str()) {
        return Err(loaded.invalid(
            "streamr.url",
            format!("streamr.transport = {:?} needs a URL such as {example}, got {:?}", s.transport, s.url),
        ));
    }
    if s.transport != Transport::File && s.api_key.is_none() {
        return Err(loaded
            .invalid("streamr.api_key", "the node's API key is required to publish (or set streamr.api_key_file)"));
    }
    Ok(())
}

/// The outbox publisher for `[streamr]`.
pub fn publisher(
    loaded: &Loaded,
    store: Arc<SqlStore>,
    retry: Retry,
    clock: Clock,
) -> Result<crate::publisher::Publisher, StartupError> {
    use crate::config::Transport;
    use crate::sinks::{Sink, file::FileSink, streamr_http::StreamrHttpSink, streamr_ws::StreamrWsSink};
    let s = &loaded.settings.streamr;
    let sink = match s.transport {
        Transport::Http => Sink::Http(StreamrHttpSink::new(http::client()?, &s.url, s.api_key.clone())),
        Transport::Websocket => Sink::Websocket(StreamrWsSink::new(s, clock.clone())),
        Transport::File => Sink::File(FileSink::new(&s.url, s.file_max_bytes, clock.clone())),
    };
    let limits = crate::publisher::Limits {
        per_second: s.messages_per_second,
        per_stream: s.stream_messages_per_second,
        burst: s.burst,
    };
    Ok(crate::publisher::Publisher::new(store, sink, limits, retry, clock))
}

/// A worker id unique across hosts and restarts: host name, process id and a random
/// suffix. It names lease holders in the store; it is not secret.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    format!("{host}-{}-{}", std::process::id(), hex::encode(random))
}
