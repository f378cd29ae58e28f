//! `wearbridge run [--once] [--dry-run]`: sync passes, once or every `sync.interval`.
//!
//! `run --once` exits 0 when every account synced and no message waits in the outbox
//! afterwards (messages the node refused for good, or that failed their schema, are
//! quarantined and counted in the log, not waited for), [`UNDELIVERED_EXIT`] when
//! messages remain in the outbox, [`FAILED_ACCOUNTS_EXIT`] when one or more accounts
//! failed to sync (accounts waiting for new consent are logged, not failures), 2 on a
//! configuration error and 1 on any other error, so cron jobs and Kubernetes CronJobs
//! see a failure. When messages wait and accounts failed, 3 wins.

use std::sync::Arc;

use super::Globals;
use crate::app;
use crate::pipeline::Output;
use crate::retry::{Backoff, CancellationToken, Retry};
use crate::server::ServerState;
use crate::sinks::stdout::StdoutSink;
use crate::store::Store;
use crate::worker::Worker;

/// The exit status of `run --once` when messages remain in the outbox.
pub const UNDELIVERED_EXIT: u8 = 3;

/// The exit status of `run --once` when one or more accounts failed to sync.
pub const FAILED_ACCOUNTS_EXIT: u8 = 4;

/// `run --once`: accounts failed to sync in the pass.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {accounts} accounts failed to sync (see the log for each)")]
pub struct FailedAccounts {
    pub failed: u64,
    pub accounts: u64,
}

fn failures(summary: &crate::pipeline::PassSummary) -> anyhow::Result<()> {
    if summary.failed > 0 {
        return Err(FailedAccounts { failed: summary.failed, accounts: summary.accounts }.into());
    }
    Ok(())
}

/// `run --once` left messages in the outbox.
#[derive(Debug, thiserror::Error)]
#[error("{waiting} messages wait in the outbox: {reason}")]
pub struct Undelivered {
    pub waiting: u64,
    pub reason: String,
}

pub async fn main(globals: &Globals, once: bool, dry_run: bool) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    app::require_for_run(&loaded)?;
    if !dry_run {
        app::require_for_publishing(&loaded)?;
    }
    let clock = globals.clock();
    if !clock.is_system() {
        tracing::warn!(now = %clock.now(), "--now: the clock is anchored at this instant, not the system's");
    }
    let store = Arc::new(app::open_store(&loaded.settings, &clock).await?);
    let key = app::pseudonym_key(&loaded)?;
    // One token stops everything on SIGTERM: claiming, the server, drains, every back-off.
    let shutdown = CancellationToken::new();
    let retry = Retry::new(Backoff::default(), shutdown.clone());
    let mut pipeline = app::pipeline(&loaded, store.clone(), key, retry.clone(), clock.clone())?;
    if once {
        // No server runs to receive notifications (nor a provider's probe of it).
        pipeline.push_public_url = None;
    } else {
        // The daemon lists and repairs every account's subscriptions once after it starts.
        pipeline.push_checked_since = Some(clock.now().timestamp_millis());
    }
    if dry_run {
        return dry_run_passes(&loaded, &pipeline, once).await;
    }
    let worker_id = app::worker_id();
    let publisher = Arc::new(
        app::publisher(&loaded, store.clone(), retry, clock.clone())?
            .with_lease(&worker_id, loaded.settings.sync.lease),
    );
    let streams: std::collections::BTreeSet<&str> =
        loaded.settings.streamr.streams.values().map(String::as_str).collect();
    publisher.check(streams).await?;
    if loaded.settings.streamr.transport == crate::config::Transport::Websocket
        && loaded.settings.streamr.confirm == crate::config::Confirm::None
    {
        tracing::warn!(
            "streamr.confirm = \"none\": a message the node fails to publish (unknown stream, no permission) is lost without a trace; undeliverable messages cannot be detected"
        );
    }
    if once {
        let summary = pipeline.run_pass_reporting(&Output::Outbox, true).await?;
        log_pass(&summary);
        let drained = publisher.drain_reporting(true).await?;
        let waiting = store.outbox_len().await?;
        tracing::info!(
            published = drained.published,
            quarantined = drained.quarantined,
            resent = drained.resent,
            waiting,
            "outbox drained"
        );
        if drained.published == 0 && waiting == 0 {
            // Say why, rather than leave a bare published=0.
            tracing::info!(
                messages = summary.messages,
                "nothing was published: nothing new was read (every reading was published before, ids being deterministic, or none arrived since the last pass)"
            );
        }
        if waiting > 0 {
            let reason = drained.reason.unwrap_or_else(|| "another worker holds them, or the drain was stopped".into());
            return Err(Undelivered { waiting, reason }.into());
        }
        return failures(&summary);
    }

    // The daemon: HTTP server, worker loop, and a clean stop on a signal.
    let signal = shutdown_signal();
    let metrics = crate::telemetry::install_metrics()
        .inspect_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
        .ok();
    let enrolment = if loaded.settings.server.consent_pages {
        Some(crate::server::Enrolment::new(loaded.settings.clone(), app::pseudonym_key(&loaded)?, clock.clone()))
    } else {
        None
    };
    let state = ServerState {
        store: store.clone(),
        publisher: Some(publisher.clone()),
        metrics,
        enrolment,
        clock: clock.clone(),
        datasets: loaded.settings.sync.datasets.iter().map(|d| d.as_str()).collect(),
        push: match loaded.settings.push.enabled {
            true => Some(
                crate::server::Push::new(&loaded.settings.push)
                    .map_err(|message| loaded.invalid("push.google_public_key_file", message))?
                    .waking(pipeline.due_now.clone()),
            ),
            false => None,
        },
    };
    let server = crate::server::serve(loaded.settings.server.listen, state, shutdown.clone()).await?;
    let pipeline = Arc::new(pipeline);
    let capture = match loaded.settings.capture.listen {
        Some(listen) => {
            let capture = crate::server::capture::Capture::new(store.clone(), pipeline.clone(), clock.clone());
            Some(crate::server::capture::serve(listen, capture, shutdown.clone()).await?)
        }
        None => None,
    };
    let worker = Worker {
        id: worker_id.clone(),
        pipeline,
        publisher: Some(publisher.clone()),
        output: Output::Outbox,
        sync: loaded.settings.sync.clone(),
    };
    tracing::info!(worker = %worker_id, "worker started");
    let mut run = Box::pin(worker.run(shutdown.clone()));
    let result = tokio::select! {
        result = &mut run => result,
        signal = signal => {
            let grace = loaded.settings.sync.shutdown_grace;
            tracing::info!(signal, grace_s = grace.as_secs_f64(), "stopping: no new work is claimed; in-flight work may finish");
            shutdown.cancel();
            match tokio::time::timeout(grace, &mut run).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(
                        "in-flight work did not finish within sync.shutdown_grace: uncommitted reads are done again by the next claim, and messages sent but not yet acknowledged are sent again (same ids)"
                    );
                    Ok(())
                }
            }
        }
    };
    shutdown.cancel();
    // Work cut off by the grace period goes now: left pending, unpolled, it could hold
    // (or be queued for) the store's writer that the release below needs.
    drop(run);
    // Whatever this worker still holds is free for the others at once.
    if let Err(e) = store.release_worker(&worker_id).await {
        tracing::warn!(error = %e, "could not release this worker's leases; they expire after sync.lease");
    }
    let _ = server.await;
    if let Some(capture) = capture {
        let _ = capture.await;
    }
    result?;
    tracing::info!("stopped");
    Ok(())
}

fn log_pass(summary: &crate::pipeline::PassSummary) {
    tracing::info!(
        accounts = summary.accounts,
        synced = summary.synced,
        failed = summary.failed,
        needs_reconsent = summary.needs_reconsent,
        messages = summary.messages,
        skipped = summary.skipped_points,
        invalid = summary.invalid,
        "pass complete"
    );
}

/// Dry runs print and persist nothing but rotated tokens, so they run whole passes
/// rather than claiming scheduled work.
async fn dry_run_passes(
    loaded: &crate::config::Loaded,
    pipeline: &crate::pipeline::Pipeline,
    once: bool,
) -> anyhow::Result<()> {
    let output = Output::DryRun(Arc::new(StdoutSink::stdout()));
    loop {
        let summary = pipeline.run_pass_reporting(&output, once).await?;
        log_pass(&summary);
        if once {
            return failures(&summary);
        }
        tokio::select! {
            _ = tokio::time::sleep(loaded.settings.sync.shortest_interval()) => {}
            signal = shutdown_signal() => {
                tracing::info!(signal, "stopping");
                return Ok(());
            }
        }
    }
}

/// Resolves on SIGINT or (on Unix) SIGTERM, naming the signal. The SIGTERM handler is
/// installed when this is called, not when first awaited, so a signal that arrives
/// while the worker starts up is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
