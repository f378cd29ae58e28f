//! Provider JSON → canonical [`anonymizer::Record`]s: typed, UTC, still identifying.
//!
//! A point that cannot be normalised (missing member, absurd value) is skipped and
//! reported, never guessed at; the rest of the page goes on.

pub mod civil;
pub mod fitbit;

/// A data point that was skipped, with a reason fit for logs (no values quoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub reason: &'static str,
}
