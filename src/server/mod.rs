//! The worker's HTTP server on `server.listen`: `/healthz` (the process answers),
//! `/readyz` (the store answers and takes a write, and the sink was reachable at the
//! last drain),
//! `/metrics` (Prometheus text), the consent pages (`consent.rs`) and, with `[push]` on,
//! the providers' notification endpoints (`webhooks.rs`).
//!
//! Gauges that describe the store (outbox depth and age, accounts by status) are read
//! from it at scrape time, so every replica reports the shared truth.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub mod capture;
mod consent;
mod webhooks;

pub use consent::Enrolment;
pub use webhooks::Push;

use crate::clock::Clock;
use crate::publisher::Publisher;
use crate::store::{AccountStatus, SqlStore, Store};

/// What the endpoints read.
pub struct ServerState {
    pub store: Arc<SqlStore>,
    pub publisher: Option<Arc<Publisher>>,
    pub metrics: Option<PrometheusHandle>,
    /// The consent pages (`/connect`, `/leave`); `None` turns them off.
    pub enrolment: Option<Enrolment>,
    /// For the age of the oldest outbox message and the schedule lag.
    pub clock: Clock,
    /// The datasets the worker syncs (`sync.datasets`), for the schedule lag.
    pub datasets: Vec<&'static str>,
    /// The notification endpoints (`[push]`); `None` turns them off (404).
    pub push: Option<Push>,
}

/// The store must answer within this for the worker to be ready.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds `listen` (an error names `server.listen`) and serves until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    state: ServerState,
    shutdown: crate::retry::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, std::io::Error> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen} (server.listen): {e}")))?;
    tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz, /metrics and /connect");
    let state = Arc::new(state);
    let pages = Router::new()
        .route("/connect", get(consent::connect))
        .route("/connect/start", axum::routing::post(consent::start))
        .route("/connect/callback", get(consent::callback))
        .route("/leave", get(consent::leave_form).post(consent::leave))
        .route("/privacy", get(consent::privacy))
        .layer(axum::middleware::from_fn_with_state(state.clone(), consent::security_headers));
    let hooks = Router::new()
        .route("/webhooks/fitbit", axum::routing::post(webhooks::google))
        .route("/webhooks/withings/{token}", axum::routing::post(webhooks::withings).head(webhooks::withings_probe))
        .layer(axum::extract::DefaultBodyLimit::max(webhooks::MAX_BODY));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render))
        .merge(pages)
        .merge(hooks)
        .with_state(state);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }))
}

async fn ready(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    match tokio::time::timeout(STORE_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            return (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n".to_owned());
        }
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "store did not answer in time\n".to_owned()),
    }
    // Reads alone can succeed while every commit fails (a full disk, a lock held by
    // another process, a read-only replica).
    match tokio::time::timeout(STORE_TIMEOUT, state.store.probe_write()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store refuses writes");
            return (StatusCode::SERVICE_UNAVAILABLE, "store refuses writes\n".to_owned());
        }
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "store did not take a write in time\n".to_owned()),
    }
    if state.publisher.as_ref().is_some_and(|p| !p.sink_reachable()) {
        return (StatusCode::SERVICE_UNAVAILABLE, "the sink was unreachable at the last drain\n".to_owned());
    }
    (StatusCode::OK, "ready\n".to_owned())
}

async fn render(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled in this process\n".to_owned());
    };
    // Store-wide gauges; a store that does not answer leaves the last values.
    if let Ok(Ok(depth)) = tokio::time::timeout(STORE_TIMEOUT, state.store.outbox_len()).await {
        metrics::gauge!("wearbridge_outbox_depth").set(depth as f64);
    }
    if let Ok(Ok(quarantined)) = tokio::time::timeout(STORE_TIMEOUT, state.store.quarantined_len()).await {
        metrics::gauge!("wearbridge_outbox_quarantined").set(quarantined as f64);
    }
    if let Ok(Ok(oldest)) = tokio::time::timeout(STORE_TIMEOUT, state.store.outbox_oldest()).await {
        let age = oldest.map_or(0.0, |t| (state.clock.now() - t).num_milliseconds().max(0) as f64 / 1000.0);
        metrics::gauge!("wearbridge_outbox_oldest_age_seconds").set(age);
    }
    if let Ok(Ok(due)) = tokio::time::timeout(STORE_TIMEOUT, state.store.oldest_due(&state.datasets)).await {
        let lag = due.map_or(0.0, |t| (state.clock.now() - t).num_milliseconds().max(0) as f64 / 1000.0);
        metrics::gauge!("wearbridge_schedule_lag_seconds").set(lag);
    }
    crate::telemetry::export_freshness(state.clock.now());
    if let Ok(Ok(accounts)) = tokio::time::timeout(STORE_TIMEOUT, state.store.accounts()).await {
        for status in [AccountStatus::Active, AccountStatus::NeedsReconsent, AccountStatus::Removed] {
            let n = accounts.iter().filter(|a| a.status == status).count();
            metrics::gauge!("wearbridge_accounts", "status" => status.as_str()).set(n as f64);
        }
    }
    (StatusCode::OK, handle.render())
}
