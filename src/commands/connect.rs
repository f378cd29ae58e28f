//! `wearbridge connect <fitbit|withings> <name>`: enrol a person by consent, with no
//! token copied by hand. The provider redirects to `oauth.redirect_uri`, a loopback
//! address this command listens on for one callback; `--manual` instead reads the
//! address the browser ended up at from stdin (headless hosts).

use std::collections::HashMap;
use std::io::BufRead;
use std::time::Duration;

use anonymizer::Provider;
use axum::extract::{Query, State};
use axum::response::Html;
use secrecy::ExposeSecret;
use tokio::sync::mpsc;

use super::Globals;
use crate::app;
use crate::onboarding;

pub async fn main(
    globals: &Globals,
    provider: Provider,
    name: &str,
    manual: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    let settings = &loaded.settings;
    let store = app::open_store(settings, &globals.clock()).await?;
    onboarding::check_name_free(&store, name, provider).await?;
    let key = app::pseudonym_key(&loaded)?;
    let redirect = url::Url::parse(&settings.oauth.redirect_uri)
        .map_err(|e| loaded.invalid("oauth.redirect_uri", e.to_string()))?;
    let authorization = onboarding::authorize(settings, provider, redirect.as_str())?;
    let callback = if manual {
        eprintln!("Open this address in a browser, approve, then paste the address the browser ends up at:");
        println!("{}", authorization.url);
        read_pasted()?
    } else {
        let (host, port) = match (redirect.scheme(), redirect.host_str(), redirect.port()) {
            ("http", Some(h @ ("127.0.0.1" | "localhost" | "[::1]")), Some(p)) => (h.to_owned(), p),
            _ => {
                return Err(loaded
                    .invalid(
                        "oauth.redirect_uri",
                        "must be a loopback http URL with a port, such as http://127.0.0.1:8765/oauth/callback (or use --manual)",
                    )
                    .into());
            }
        };
        // Axum refuses (panics on) route paths with `:`/`*` segments or braces.
        let path = redirect.path();
        if path.split('/').any(|seg| seg.starts_with([':', '*']) || seg.contains(['{', '}'])) {
            return Err(loaded
                .invalid("oauth.redirect_uri", "the path may not contain ':', '*', '{' or '}' segments")
                .into());
        }
        let bind = if host == "localhost" { "127.0.0.1".to_owned() } else { host.trim_matches(['[', ']']).to_owned() };
        let listener = tokio::net::TcpListener::bind((bind.as_str(), port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {host}:{port} (oauth.redirect_uri): {e}"))?;
        eprintln!("Open this address in a browser to connect {name} ({provider}); waiting for the redirect:");
        println!("{}", authorization.url);
        open_browser(&authorization.url);
        wait_for_callback(listener, redirect.path(), timeout).await?
    };
    let enrolled =
        onboarding::complete(&store, settings, &key, &authorization, name, &callback, &globals.clock()).await?;
    println!(
        "connected {provider} account {} ({}); published as subject {}",
        enrolled.account.name,
        enrolled.account.status.as_str(),
        enrolled.subject
    );
    if !enrolled.missing_scopes.is_empty() {
        eprintln!(
            "warning: not granted: {}; the datasets that need them will be skipped",
            enrolled.missing_scopes.join(", ")
        );
    }
    // The leave secret is for the web page's link; the CLI withdraws with `users remove`.
    let _ = enrolled.leave_secret.expose_secret();
    Ok(())
}

fn read_pasted() -> anyhow::Result<HashMap<String, String>> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let pasted = url::Url::parse(line.trim())
        .map_err(|_| anyhow::anyhow!("that is not the address the browser was sent to (expected http://…?code=…)"))?;
    Ok(pasted.query_pairs().into_owned().collect())
}

/// Opens the system browser when there is a display; harmless when there is none.
fn open_browser(url: &str) {
    let has_display = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if std::env::var_os("CI").is_some() || !(has_display || cfg!(target_os = "macos")) {
        return;
    }
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Serves the redirect path until one callback arrives (or `timeout` passes).
async fn wait_for_callback(
    listener: tokio::net::TcpListener,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<HashMap<String, String>> {
    let (tx, mut rx) = mpsc::channel::<HashMap<String, String>>(1);
    let app = axum::Router::new()
        .route(
            path,
            axum::routing::get(
                |State(tx): State<mpsc::Sender<HashMap<String, String>>>,
                 Query(q): Query<HashMap<String, String>>| async move {
                    let denied = q.contains_key("error");
                    let _ = tx.send(q).await;
                    Html(if denied {
                        "<!doctype html><title>wearbridge</title><p>Access was not granted. You can close this window."
                    } else {
                        "<!doctype html><title>wearbridge</title><p>Received. You can close this window and return to the terminal."
                    })
                },
            ),
        )
        .with_state(tx);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let received = tokio::time::timeout(timeout, rx.recv()).await;
    server.abort();
    match received {
        Ok(Some(q)) => Ok(q),
        Ok(None) => anyhow::bail!("the callback listener stopped unexpectedly"),
        Err(_) => anyhow::bail!(
            "no redirect arrived within {} s; nothing was stored (run connect again, or use --manual on a headless host)",
            timeout.as_secs()
        ),
    }
}
