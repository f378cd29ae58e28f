//! Wiring: settings → store, token manager, source, anonymizer, pipeline. Shared by
//! `run`, `users` and `demo` so each command builds the same objects the same way.

use std::sync::Arc;

use anonymizer::{Anonymizer, PseudonymKey};

use crate::clock::Clock;
use crate::config::{ConfigError, Loaded, Settings};
use crate::http;
use crate::keyfile::{self, KeyFileError};
use crate::pipeline::{BadStreamId, Pipeline, Routes};
use crate::retry::Retry;
use crate::schemas::{SchemaError, Schemas};
use crate::sources::{Sources, registry};
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

/// Whether there is a store to read: a PostgreSQL URL, or an SQLite file that exists
/// with its key file. Read-only commands check this first, so they never create a store
/// or a key where there was none.
pub fn store_exists(settings: &Settings) -> bool {
    let url = &settings.store.url;
    let sqlite = url.strip_prefix("sqlite://").or_else(|| (!url.contains("://")).then_some(url.as_str()));
    let file = sqlite.map(|p| p.split('?').next().unwrap_or(p)).filter(|p| !p.is_empty() && *p != ":memory:");
    file.is_none_or(|p| std::path::Path::new(p).exists()) && settings.store.key_file.exists()
}

/// The pseudonym key from `anonymizer.key_file` and `anonymizer.epoch`.
pub fn pseudonym_key(loaded: &Loaded) -> Result<PseudonymKey, StartupError> {
    let settings = &loaded.settings;
    let key = keyfile::load_or_create(&settings.anonymizer.key_file, "anonymizer.key_file")?;
    PseudonymKey::new(settings.anonymizer.epoch.clone(), key)
        .map_err(|e| StartupError::Config(loaded.invalid("anonymizer.epoch", e.to_string())))
}

/// Builds the pipeline with every registered source.
pub fn pipeline(
    loaded: &Loaded,
    store: Arc<SqlStore>,
    key: PseudonymKey,
    retry: Retry,
    clock: Clock,
) -> Result<Pipeline, StartupError> {
    let settings = &loaded.settings;
    let sources = Sources::build(settings, &http::client()?, store.clone(), retry, clock.clone());
    let routes = Routes::new(&settings.streamr.streams)?;
    Ok(Pipeline {
        store,
        sources,
        anonymizer: Anonymizer::new(key, settings.anonymizer.policy()),
        schemas: Schemas::load()?,
        routes,
        sync: settings.sync.clone(),
        series: settings.anonymizer.series.clone(),
        link_providers: settings.anonymizer.link_providers,
        clock,
        push_public_url: settings.push.enabled.then(|| settings.server.public_url.clone()),
        push_checked_since: None,
        due_now: Default::default(),
    })
}

/// The URL `provider`'s notifications go to: `<server.public_url>/webhooks/<provider>`, and
/// for per-account subscriptions (Withings) a secret segment after it (see
/// [`SqlStore::push_token`]).
pub fn push_callback(
    public_url: &str,
    store: &SqlStore,
    provider: anonymizer::Provider,
) -> Result<String, crate::store::StoreError> {
    let base = format!("{}/webhooks/{provider}", public_url.trim_end_matches('/'));
    Ok(match provider == crate::sources::fitbit::PROVIDER {
        // Google's subscriber is per project and authenticates with its secret header.
        true => base,
        false => format!("{base}/{}", store.push_token(provider)?),
    })
}

/// Checks what `run` needs beyond a well-formed configuration: at least one source with
/// its client credentials (needed to refresh tokens), and a stream.
pub fn require_for_run(loaded: &Loaded) -> Result<(), ConfigError> {
    let s = &loaded.settings;
    let http = http::client().map_err(|e| loaded.invalid("store.url", format!("cannot build the HTTP client: {e}")))?;
    let mut configured = 0;
    for r in registry::SOURCES {
        match r.standalone_oauth(s, &http).credentials() {
            (false, false) => {}
            (true, true) => configured += 1,
            (false, true) => {
                return Err(loaded.invalid(&format!("{}.client_id", r.section), "required to refresh tokens"));
            }
            (true, false) => {
                return Err(loaded.invalid(
                    &format!("{}.client_secret", r.section),
                    "required to refresh tokens (or set it as a _file)",
                ));
            }
        }
    }
    // Scales posting to the capture listener need no provider.
    if configured == 0 && s.capture.listen.is_none() {
        let first = registry::SOURCES.first().map_or("fitbit", |r| r.section);
        let all: Vec<String> = registry::SOURCES.iter().map(|r| format!("{}.client_id", r.section)).collect();
        return Err(loaded.invalid(
            &format!("{first}.client_id"),
            format!("no provider is configured: set the client_id and client_secret of one of {}", all.join(", ")),
        ));
    }
    if s.streamr.streams.is_empty() {
        return Err(loaded.invalid(
            "streamr.streams",
            "no stream configured: set streamr.streams.default (or one per message type)",
        ));
    }
    if s.push.enabled {
        // The signing key is read at start; a bad one stops start-up, not a notification.
        crate::server::Push::new(&s.push).map_err(|message| loaded.invalid("push.google_public_key_file", message))?;
        if !s.server.public_url.starts_with("https://") {
            tracing::warn!(
                public_url = %s.server.public_url,
                "push is on and server.public_url is not https: Google and Withings deliver notifications only to public HTTPS endpoints"
            );
        }
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
