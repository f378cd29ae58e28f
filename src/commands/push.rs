//! `wearbridge push setup`: what push notifications need once, beside the daemon (which
//! keeps each Withings account subscribed by itself: at its first sync, once after each
//! start, and weekly): the Google Health API subscriber of the project, and every
//! Withings account marked to be checked at its next sync. The Withings calls are left to
//! the daemon: it holds the account's lease and token lock (Withings rotates refresh
//! tokens, so two processes refreshing one account would break it) and the request budget.

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
        let endpoint = format!(
            "{}/webhooks/{}",
            settings.server.public_url.trim_end_matches('/'),
            crate::sources::fitbit::PROVIDER
        );
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
                println!("Google Health: {name} already sends notifications to {endpoint} (its secret set again)")
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
    let store = app::open_store(settings, &globals.clock()).await?;
    let mut marked = 0u32;
    for account in store.accounts().await?.into_iter().filter(|a| a.status == AccountStatus::Active) {
        if account.provider == crate::sources::withings::PROVIDER {
            store.set_push_checked(account.id, None).await?;
            marked += 1;
        }
    }
    println!(
        "Withings: {marked} accounts are subscribed (or their subscriptions checked) by the daemon at their next sync"
    );
    Ok(())
}
