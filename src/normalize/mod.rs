//! What every source's normalisation shares (each source turns its provider's JSON into
//! canonical [`anonymizer::Record`]s in its own `normalize.rs`): typed, UTC, still
//! identifying.
//!
//! A point that cannot be normalised (missing member, absurd value) is skipped and
//! reported, never guessed at; the rest of the page goes on.

pub mod civil;

/// A data point that was skipped, with a reason fit for logs (no values quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub reason: &'static str,
    /// Skipped on purpose (an ambiguous owner, a goal), not because the data was bad.
    pub by_policy: bool,
}

impl Skipped {
    /// Bad or unusable upstream data: logged as a warning.
    pub fn bad(reason: &'static str) -> Self {
        Self { reason, by_policy: false }
    }

    /// Deliberately not published: logged at debug level.
    pub fn by_policy(reason: &'static str) -> Self {
        Self { reason, by_policy: true }
    }
}
