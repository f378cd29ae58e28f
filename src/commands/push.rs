//! `wearbridge push setup`: what push notifications need once, beside the daemon (which
//! keeps each Withings account subscribed by itself at its first sync and weekly after):
//! the Google Health API subscriber of the project, and every Withings account subscribed
//! now rather than at its next sync.

use std::sync::Arc;

use super::Globals;
use super::users::{TokenSource, read_secret};
use crate::app;
use crate::sources::fitbit::push::{SubscriberOutcome, ensure_subscriber};
use crate::store::{AccountStatus, Store};

/// What `push setup` is asked to do for Google.
pub struct Google<'a> {
    /// The Google Cloud project id.
    pub project: &'a str,
    /// A Google Cloud access token (scope `cloud-platform`): file or stdin, never argv.
    pub admin_token: TokenSource<'a>,
}

pub async fn setup(globals: &Globals, google: Option<Google<'_>>) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    let settings = &loaded.settings;
    if !settings.push.enabled {
        anyhow::bail!(
            "push.enabled is false: turn push on in the configuration first (see the README, \"Push notifications\")"
        );
    }
    let http = crate::http::client()?;
    if let Some(google) = google {
        let authorization = settings
            .push
            .google_authorization
            .as_ref()
            .ok_or_else(|| loaded.invalid("push.google_authorization", "not set"))?;
        let token = read_secret(google.admin_token, "the Google Cloud access token")?;
        let endpoint = app::push_callback(settings).replace("{provider}", crate::sources::fitbit::PROVIDER.as_str());
        use secrecy::ExposeSecret;
        let outcome = ensure_subscriber(
            &http,
            &settings.fitbit.api_base_url,
            google.project,
            token.expose_secret(),
            &endpoint,
            authorization.expose_secret(),
        )
        .await
        .map_err(anyhow::Error::msg)?;
        match outcome {
            SubscriberOutcome::Exists(name) => {
                println!("Google Health: {name} already sends notifications to {endpoint}")
            }
            SubscriberOutcome::Created(name) => {
                println!("Google Health: created {name}; notifications go to {endpoint}")
            }
            SubscriberOutcome::Pending(name) => println!(
                "Google Health: {name} requested; Google verifies {endpoint} in the background (run this again to check)"
            ),
        }
    }
    if !app::store_exists(settings) {
        println!("nobody is enrolled yet: each Withings account is subscribed when it is enrolled and first synced");
        return Ok(());
    }
    let clock = globals.clock();
    let store = Arc::new(app::open_store(settings, &clock).await?);
    let retry = crate::retry::Retry::new(crate::retry::Backoff::default(), crate::retry::CancellationToken::new());
    let sources = crate::sources::Sources::build(settings, &http, store.clone(), retry, clock.clone());
    let (mut done, mut failed) = (0u32, 0u32);
    for account in store.accounts().await?.into_iter().filter(|a| a.status == AccountStatus::Active) {
        let Some(source) = sources.get(account.provider) else { continue };
        if account.provider != crate::sources::withings::PROVIDER {
            continue;
        }
        let callback = app::push_callback(settings).replace("{provider}", account.provider.as_str());
        match source.subscribe(&account, &callback).await {
            Ok(()) => {
                store.set_push_checked(account.id, Some(clock.now().timestamp_millis())).await?;
                done += 1;
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e}", account.name);
            }
        }
    }
    println!("Withings: {done} accounts subscribed, {failed} failed (the daemon tries those again at their next sync)");
    if failed > 0 {
        anyhow::bail!("{failed} Withings accounts could not be subscribed");
    }
    Ok(())
}
