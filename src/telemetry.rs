//! Logging to stderr (stdout carries only payloads and command output), as text or JSON.

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides the level chosen by
/// `verbosity` (0 = `default_level`, 1 = debug, 2+ = trace).
pub fn init(format: LogFormat, verbosity: u8, default_level: &str) {
    let level = match verbosity {
        0 => default_level,
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,wearbridge={level},anonymizer={level}")));
    // Colours only for a terminal: a file, a pipe or a log collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
}

/// Installs the Prometheus recorder that `/metrics` renders. Series recorded before (or
/// without) it are no-ops, so the library works without a server.
pub fn install_metrics() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().map_err(|e| e.to_string())
}

/// One upstream request answered (`status`: HTTP status, Withings `http/envelope`, or
/// `error` when no answer came).
pub fn upstream_request(provider: &'static str, status: &str) {
    metrics::counter!("wearbridge_upstream_requests_total", "provider" => provider, "status" => status.to_owned())
        .increment(1);
}

/// One token refresh attempt (`result`: ok, invalid_grant, error).
pub fn token_refresh(provider: &'static str, result: &'static str) {
    metrics::counter!("wearbridge_token_refreshes_total", "provider" => provider, "result" => result).increment(1);
}

/// The newest reading committed per dataset (cursor name) by this process, in Unix
/// milliseconds: what the freshness gauge is computed from at scrape time.
static NEWEST_DATA: std::sync::Mutex<std::collections::BTreeMap<&'static str, i64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Notes that readings up to `at` of `dataset` were committed for publication.
pub fn newest_data(dataset: &'static str, at: chrono::DateTime<chrono::Utc>) {
    if let Ok(mut newest) = NEWEST_DATA.lock() {
        let entry = newest.entry(dataset).or_insert(i64::MIN);
        *entry = (*entry).max(at.timestamp_millis());
    }
}

/// Sets `wearbridge_dataset_freshness_seconds{dataset}`: now minus the newest reading of
/// each dataset this process committed (the gauge is absent until it committed one).
pub fn export_freshness(now: chrono::DateTime<chrono::Utc>) {
    let Ok(newest) = NEWEST_DATA.lock() else { return };
    for (dataset, at) in newest.iter() {
        let age = (now.timestamp_millis() - at).max(0) as f64 / 1000.0;
        metrics::gauge!("wearbridge_dataset_freshness_seconds", "dataset" => *dataset).set(age);
    }
}
