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

/// One element of an upstream list, parsed on its own: a malformed element (a value of
/// the wrong type, `"NaN"`, an integer beyond 64 bits) becomes `Bad` and is skipped and
/// counted, never fatal to its page.
///
/// The element's text is cut out first (`RawValue`: one copy of its bytes) and then parsed
/// into `T`; an untagged enum would buffer every element into a tree of allocations before
/// trying `T`, which cost more than the rest of the per-message path. Pages are read from
/// their JSON text (`serde_json::from_slice`), as every client here does.
#[derive(Debug, Clone)]
pub enum Lenient<T> {
    Good(T),
    Bad,
}

impl<'de, T: serde::de::DeserializeOwned> serde::Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <Box<serde_json::value::RawValue>>::deserialize(deserializer)?;
        Ok(serde_json::from_str(raw.get()).map_or(Lenient::Bad, Lenient::Good))
    }
}

impl<T> Lenient<T> {
    /// Normalises a good element with `f`; a bad one is a skipped point.
    pub fn then<R>(&self, f: impl FnOnce(&T) -> Result<R, Skipped>) -> Result<R, Skipped> {
        match self {
            Lenient::Good(t) => f(t),
            Lenient::Bad => Err(Skipped::bad("a malformed data point")),
        }
    }

    /// The element, when it parsed.
    pub fn good(&self) -> Option<&T> {
        match self {
            Lenient::Good(t) => Some(t),
            Lenient::Bad => None,
        }
    }
}
