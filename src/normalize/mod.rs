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
/// Pages are read with [`parse_page`]: strictly first (each element parsed in place, the
/// cheap path every well-formed page takes), and only when that fails element by element
/// (each element's text cut out as a `RawValue` and parsed into `T` on its own, so one bad
/// element costs only itself). An untagged enum would buffer every element into a tree of
/// allocations before trying `T`, which cost more than the rest of the per-message path.
#[derive(Debug, Clone)]
pub enum Lenient<T> {
    Good(T),
    Bad,
}

thread_local! {
    /// Whether [`Lenient`] elements are being parsed one by one (the retry of a page that
    /// failed its strict parse). Set only by [`parse_page`], for the length of one parse.
    static ELEMENT_BY_ELEMENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl<'de, T: serde::de::DeserializeOwned> serde::Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if !ELEMENT_BY_ELEMENT.with(std::cell::Cell::get) {
            return T::deserialize(deserializer).map(Lenient::Good);
        }
        let raw = <Box<serde_json::value::RawValue>>::deserialize(deserializer)?;
        Ok(serde_json::from_str(raw.get()).map_or(Lenient::Bad, Lenient::Good))
    }
}

/// An upstream page as `T`, whose lists hold [`Lenient`] elements: parsed strictly first
/// and, when that fails, again element by element, so a malformed element is `Bad` and the
/// rest of its page is kept. A page that is not JSON of `T`'s shape at all is an error.
///
/// Parsing is synchronous, so the mode lives in a thread-local for exactly this call (reset
/// by a guard, also on unwind).
pub fn parse_page<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    if let Ok(page) = serde_json::from_slice(bytes) {
        return Ok(page);
    }
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ELEMENT_BY_ELEMENT.with(|m| m.set(self.0));
        }
    }
    let _reset = Reset(ELEMENT_BY_ELEMENT.with(|m| m.replace(true)));
    serde_json::from_slice(bytes)
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

#[cfg(test)]
mod tests {
    use super::{Lenient, parse_page};

    #[derive(Debug, serde::Deserialize)]
    struct Page {
        points: Vec<Lenient<u8>>,
        #[serde(default)]
        next: Option<String>,
    }

    fn kinds(page: &Page) -> Vec<Option<u8>> {
        page.points.iter().map(|p| p.good().copied()).collect()
    }

    #[test]
    fn a_well_formed_page_parses_whole() {
        let page: Page = parse_page(br#"{"points":[1,2,3],"next":"t"}"#).unwrap();
        assert_eq!(kinds(&page), [Some(1), Some(2), Some(3)]);
        assert_eq!(page.next.as_deref(), Some("t"));
    }

    #[test]
    fn a_bad_element_costs_only_itself_and_the_mode_is_reset() {
        let page: Page = parse_page(br#"{"points":[1,"NaN",300,{"a":[1]},4],"next":"t"}"#).unwrap();
        assert_eq!(kinds(&page), [Some(1), None, None, None, Some(4)]);
        assert_eq!(page.next.as_deref(), Some("t"));
        // After the element-by-element retry, plain parsing is strict again.
        assert!(serde_json::from_str::<Page>(r#"{"points":[1,"NaN"]}"#).is_err());
    }

    #[test]
    fn a_page_of_the_wrong_shape_or_not_json_is_an_error() {
        assert!(parse_page::<Page>(br#"{"points":{"a":1}}"#).is_err());
        assert!(parse_page::<Page>(br#"{"points":[1,2"#).is_err());
        assert!(parse_page::<Page>(b"\xff\xfe").is_err());
    }
}
