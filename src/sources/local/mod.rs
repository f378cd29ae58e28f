//! Local capture: Wi-Fi scales that post to wearbridge directly instead of to their
//! vendor's cloud, because their host name points here (`capture.listen`, its own
//! listener; see `server::capture`). This folder holds the protocols, parsed and answered
//! as `shared/reference/local-scales.md` gives them — the Fitbit Aria's binary upload
//! (protocol v3, [`aria`]) and the Withings WBS01's form conversation ([`wbs01`]) — and
//! their readings as records ([`normalize`]).
//!
//! On the source seam it is the source that is pushed to: a person whose scale slot is
//! assigned (`wearbridge scales assign`) has an account of provider `local`, which owns
//! the captured messages and cursors and publishes under the person's subject. Polling
//! it reads nothing, and it has no OAuth: scales are enrolled, not consented through a
//! provider.

pub mod aria;
pub mod normalize;
pub mod wbs01;

use std::sync::Arc;

use anonymizer::Provider;
use futures::FutureExt;
use futures::future::{BoxFuture, LocalBoxFuture};
use secrecy::SecretString;

use super::budget::Budget;
use super::registry::Registration;
use super::{AccountPass, Batch, Source, SourceError};
use crate::auth::{AuthorizeUrl, Exchanged, OAuth, RefreshError, Revocation, TokenResponse};
use crate::config::Dataset;
use crate::onboarding::OnboardError;
use crate::store::Account;

/// The provider name of captured-scale accounts.
pub const PROVIDER: Provider = Provider::new("local");

/// The stand-in refresh token of a `local` account (it never calls anything).
pub const NO_TOKEN: &str = "local-capture";

/// The local source in the registry (captured, not consented).
pub const REGISTRATION: Registration = Registration {
    provider: PROVIDER,
    label: "Wi-Fi scale (local capture)",
    section: "capture",
    application_per_minute: |_| 1_000_000,
    oauth: |_, _, _| Arc::new(NoOAuth),
    source: |_, _, _, _, budget| Arc::new(LocalSource { budget }),
};

/// Polling a captured source reads nothing: its readings arrive by upload.
pub struct LocalSource {
    budget: Arc<Budget>,
}

impl Source for LocalSource {
    fn provider(&self) -> Provider {
        PROVIDER
    }

    fn user_id<'a>(&'a self, account: &'a Account) -> LocalBoxFuture<'a, Result<String, SourceError>> {
        // Within `local`, a person is their own upstream user.
        let person = account.person.clone();
        async move { Ok(person) }.boxed_local()
    }

    fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    fn requests_per_sync(&self) -> u32 {
        1
    }

    fn read<'a, 'p: 'a>(
        &'a self,
        _pass: &'a mut AccountPass<'p>,
        _dataset: Dataset,
    ) -> LocalBoxFuture<'a, Result<Vec<Batch>, SourceError>> {
        async { Ok(Vec::new()) }.boxed_local()
    }
}

/// Scales are enrolled with `wearbridge scales`, never through a provider's consent.
struct NoOAuth;

fn not_oauth() -> OnboardError {
    OnboardError::NotConfigured("capture")
}

impl OAuth for NoOAuth {
    fn credentials(&self) -> (bool, bool) {
        (false, false)
    }

    fn auth_url(&self) -> &str {
        ""
    }

    fn authorize(&self, _: &str, _: &str, _: &[Dataset]) -> Result<AuthorizeUrl, OnboardError> {
        Err(not_oauth())
    }

    fn exchange<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Option<&'a SecretString>,
    ) -> BoxFuture<'a, Result<Exchanged, OnboardError>> {
        futures::future::ready(Err(not_oauth())).boxed()
    }

    fn missing_scopes(&self, _: &str, _: &[Dataset]) -> Vec<String> {
        Vec::new()
    }

    fn refresh<'a>(&'a self, _: i64, _: &'a SecretString) -> BoxFuture<'a, Result<TokenResponse, RefreshError>> {
        futures::future::ready(Err(RefreshError::InvalidGrant)).boxed()
    }

    fn revoke<'a>(&'a self, _: &'a SecretString) -> BoxFuture<'a, Result<Revocation, OnboardError>> {
        futures::future::ready(Ok(Revocation::NothingToRevoke)).boxed()
    }
}
