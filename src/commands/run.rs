//! `wearbridge run [--once] [--dry-run]`: sync passes, once or every `sync.interval`.

use std::sync::Arc;

use super::Globals;
use crate::app;
use crate::http::Backoff;
use crate::pipeline::Output;
use crate::sinks::stdout::StdoutSink;
use crate::store::Store;

pub async fn main(globals: &Globals, once: bool, dry_run: bool) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    app::require_for_run(&loaded)?;
    if !dry_run {
        app::require_for_publishing(&loaded)?;
    }
    let store = Arc::new(app::open_store(&loaded.settings).await?);
    let key = app::pseudonym_key(&loaded)?;
    let pipeline = app::pipeline(&loaded, store.clone(), key, Backoff::default())?;
    let (output, publisher) = if dry_run {
        (Output::DryRun(Arc::new(StdoutSink::stdout())), None)
    } else {
        (Output::Outbox, Some(app::publisher(&loaded, store.clone(), Backoff::default())?))
    };
    if let Some(publisher) = &publisher {
        let streams: std::collections::BTreeSet<&str> =
            loaded.settings.streamr.streams.values().map(String::as_str).collect();
        publisher.check(streams).await?;
    }
    loop {
        let summary = pipeline.run_pass(&output).await?;
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
        if let Some(publisher) = &publisher {
            let drained = publisher.drain().await?;
            let waiting = store.outbox_len().await?;
            tracing::info!(
                published = drained.published,
                quarantined = drained.quarantined,
                resent = drained.resent,
                waiting,
                node_unavailable = drained.stopped_early,
                "outbox drained"
            );
        }
        if once {
            return Ok(());
        }
        // A pass in flight always completes; the signal is only awaited between passes.
        tokio::select! {
            _ = tokio::time::sleep(loaded.settings.sync.interval) => {}
            signal = shutdown_signal() => {
                tracing::info!(signal, "stopping");
                return Ok(());
            }
        }
    }
}

/// Resolves on SIGINT or (on Unix) SIGTERM, naming the signal.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
