//! `wearbridge users add|list|remove`: enrol and withdraw accounts.

use std::io::Read;
use std::path::Path;

use anonymizer::Provider;
use secrecy::SecretString;

use super::Globals;
use crate::app;
use crate::store::Store;

/// Where the refresh token comes from: never the command line.
pub enum TokenSource<'a> {
    File(&'a Path),
    Stdin,
}

/// Longer than any provider's refresh token (Google's are ~100 characters, Withings' 40).
const MAX_TOKEN_BYTES: u64 = 4096;

fn read_token(source: TokenSource<'_>) -> anyhow::Result<SecretString> {
    read_secret(source, "the refresh token")
}

/// Reads one whitespace-free secret (a token) from a file or stdin, never argv; `what`
/// names it in errors.
pub(crate) fn read_secret(source: TokenSource<'_>, what: &str) -> anyhow::Result<SecretString> {
    let mut text = String::new();
    // One byte over the limit tells a too-long token from one that fits.
    let read = match source {
        TokenSource::File(path) => std::fs::File::open(path)
            .and_then(|f| f.take(MAX_TOKEN_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| anyhow::anyhow!("cannot read {what} from {}: {e}", path.display()))?,
        TokenSource::Stdin => std::io::stdin().lock().take(MAX_TOKEN_BYTES + 1).read_to_string(&mut text)?,
    };
    if read as u64 > MAX_TOKEN_BYTES {
        anyhow::bail!("{what} is longer than {MAX_TOKEN_BYTES} bytes; is this the right file?");
    }
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        anyhow::bail!("{what} is empty or contains whitespace");
    }
    Ok(SecretString::from(token.to_owned()))
}

pub async fn add(globals: &Globals, provider: Provider, name: &str, source: TokenSource<'_>) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    let token = read_token(source)?;
    let store = app::open_store(&loaded.settings, &globals.clock()).await?;
    let account = store.add_account(name, provider, &token).await?;
    println!("added {}'s {} account ({})", account.person, account.provider, account.status.as_str());
    Ok(())
}

/// People and their accounts (removed ones included, marked so).
pub async fn list(globals: &Globals) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    if !app::store_exists(&loaded.settings) {
        // Read-only: no store or key is created to say that nobody is enrolled.
        println!("nobody is enrolled yet (no store at {})", loaded.settings.store.url);
        return Ok(());
    }
    let store = app::open_store(&loaded.settings, &globals.clock()).await?;
    let mut accounts = store.accounts().await?;
    accounts.sort_by(|a, b| (&a.person, a.provider).cmp(&(&b.person, b.provider)));
    println!("{:<24} {:<9} {:<16} CREATED", "PERSON", "PROVIDER", "STATUS");
    for a in accounts {
        println!(
            "{:<24} {:<9} {:<16} {}",
            a.person,
            a.provider.as_str(),
            a.status.as_str(),
            a.created_at.format("%Y-%m-%d %H:%M")
        );
    }
    Ok(())
}

/// Withdraws a person's accounts (or only the one with `provider`): revokes where the
/// provider allows, deletes tokens, cursors and unpublished messages.
pub async fn remove(globals: &Globals, person: &str, provider: Option<Provider>) -> anyhow::Result<()> {
    let loaded = globals.load()?;
    let store = std::sync::Arc::new(app::open_store(&loaded.settings, &globals.clock()).await?);
    let accounts: Vec<_> = store
        .accounts()
        .await?
        .into_iter()
        .filter(|a| a.person == person && a.status != crate::store::AccountStatus::Removed)
        .filter(|a| provider.is_none_or(|p| a.provider == p))
        .collect();
    if accounts.is_empty() {
        let what = provider.map_or_else(|| person.to_owned(), |p| format!("{person} ({p})"));
        return Err(crate::store::StoreError::NoSuchAccount(what).into());
    }
    for account in accounts {
        println!("{}", crate::onboarding::withdraw(&store, &loaded.settings, &account).await?);
    }
    Ok(())
}
