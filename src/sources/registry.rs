//! The one place that lists the sources this build has. Everything else finds a source by
//! its provider name, so adding one is a folder plus one line in [`SOURCES`] (and its
//! settings section; see ARCHITECTURE.md "Adding a source").

use std::collections::HashMap;
use std::sync::Arc;

use anonymizer::Provider;

use super::budget::Budget;
use super::{Source, fitbit, local, withings};
use crate::auth::{OAuth, TokenManager};
use crate::clock::Clock;
use crate::config::Settings;
use crate::retry::Retry;
use crate::store::SqlStore;

/// How a source plugs in: its name and how to build its parts from the settings.
pub struct Registration {
    pub provider: Provider,
    /// The name people see ("Fitbit").
    pub label: &'static str,
    /// Its settings section (`[fitbit]`): where `client_id` and `client_secret` are set.
    pub section: &'static str,
    /// The application-wide requests per minute its settings allow.
    pub application_per_minute: fn(&Settings) -> u32,
    /// Its OAuth endpoints, within the application's request budget where the provider
    /// counts token requests against it.
    pub oauth: fn(&Settings, &reqwest::Client, Arc<Budget>) -> Arc<dyn OAuth>,
    /// The source itself, drawing tokens from the shared token manager.
    pub source: BuildSource,
}

/// Builds a source from the settings, the HTTP client, the shared token manager, the
/// retry policy and the provider's application request budget.
pub type BuildSource = fn(&Settings, &reqwest::Client, Arc<TokenManager>, Retry, Arc<Budget>) -> Arc<dyn Source>;

impl Registration {
    /// Its OAuth endpoints outside a worker (onboarding, the consent pages, checks): with
    /// a budget of their own, since they make a request or two at a person's pace.
    pub fn standalone_oauth(&self, settings: &Settings, http: &reqwest::Client) -> Arc<dyn OAuth> {
        let budget = Budget::per_minute((self.application_per_minute)(settings), Clock::system());
        (self.oauth)(settings, http, Arc::new(budget))
    }
}

/// Every source people enrol in by consent (OAuth), in the order the consent page offers
/// them.
pub const SOURCES: &[Registration] = &[fitbit::REGISTRATION, withings::REGISTRATION];

/// Sources that are pushed to, not consented: enrolled with `wearbridge scales`.
pub const CAPTURED: &[Registration] = &[local::REGISTRATION];

/// Every registration, consented and captured.
fn all() -> impl Iterator<Item = &'static Registration> {
    SOURCES.iter().chain(CAPTURED)
}

/// The registration of the consented provider called `name` (what `connect`, `users add`
/// and the consent page accept).
pub fn find(name: &str) -> Option<&'static Registration> {
    SOURCES.iter().find(|r| r.provider.as_str() == name)
}

/// The provider called `name`, if this build has a source for it (consented or captured).
pub fn provider(name: &str) -> Option<Provider> {
    all().find(|r| r.provider.as_str() == name).map(|r| r.provider)
}

/// The consented provider called `name`.
pub fn consented(name: &str) -> Option<Provider> {
    find(name).map(|r| r.provider)
}

/// Every provider name, for help texts and errors.
pub fn names() -> Vec<&'static str> {
    SOURCES.iter().map(|r| r.provider.as_str()).collect()
}

/// The sources of one process, with the token manager they share.
pub struct Sources {
    by_provider: HashMap<Provider, Arc<dyn Source>>,
    tokens: Arc<TokenManager>,
}

impl Sources {
    /// Builds every registered source from the settings.
    pub fn build(
        settings: &Settings,
        http: &reqwest::Client,
        store: Arc<SqlStore>,
        retry: Retry,
        clock: Clock,
    ) -> Self {
        let parts: Vec<(&Registration, Arc<Budget>)> = all()
            .map(|r| (r, Arc::new(Budget::per_minute((r.application_per_minute)(settings), clock.clone()))))
            .collect();
        let oauth = parts.iter().map(|(r, budget)| (r.provider, (r.oauth)(settings, http, budget.clone()))).collect();
        let tokens = Arc::new(TokenManager::new(store, oauth, retry.clone(), clock));
        let by_provider = parts
            .into_iter()
            .map(|(r, budget)| (r.provider, (r.source)(settings, http, tokens.clone(), retry.clone(), budget)))
            .collect();
        Self { by_provider, tokens }
    }

    /// The source for `provider`.
    pub fn get(&self, provider: Provider) -> Option<&dyn Source> {
        self.by_provider.get(&provider).map(|s| s.as_ref())
    }

    /// Every source.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Source> {
        self.by_provider.values().map(|s| s.as_ref())
    }

    /// The token manager every source draws on.
    pub fn tokens(&self) -> &Arc<TokenManager> {
        &self.tokens
    }
}

/// The OAuth endpoints of `provider`, built from the settings (for onboarding).
pub fn oauth(settings: &Settings, http: &reqwest::Client, provider: Provider) -> Option<Arc<dyn OAuth>> {
    all().find(|r| r.provider == provider).map(|r| r.standalone_oauth(settings, http))
}
