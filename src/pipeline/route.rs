//! Routing: which Streamr stream each message type goes to (`[streamr.streams]`).

use std::collections::BTreeMap;

/// A message type with no stream configured.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no stream for message type {message_type}: set streamr.streams.{message_type} or streamr.streams.default")]
pub struct Unrouted {
    pub message_type: String,
}

/// A stream id that Streamr would not accept.
#[derive(Debug, Clone, thiserror::Error)]
#[error("streamr.streams.{key} = {value:?} is not a stream id: expected 0x<40 hex>/path or name.eth/path")]
pub struct BadStreamId {
    pub key: String,
    pub value: String,
}

/// Message type (or `default`) → stream id. Keys are matched with `_` and `-` alike.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    streams: BTreeMap<String, String>,
}

fn normalise(key: &str) -> String {
    key.trim().to_ascii_lowercase().replace('_', "-")
}

/// `0x<40 hex>/path` or `<name>.eth/path` (the domain is case-insensitive).
pub fn is_stream_id(id: &str) -> bool {
    let Some((domain, path)) = id.split_once('/') else {
        return false;
    };
    if path.is_empty() || path.chars().any(|c| c.is_whitespace()) {
        return false;
    }
    let hex_address = domain.len() == 42
        && (domain.starts_with("0x") || domain.starts_with("0X"))
        && domain[2..].chars().all(|c| c.is_ascii_hexdigit());
    let ens = domain.len() > 4
        && domain.to_ascii_lowercase().ends_with(".eth")
        && domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    hex_address || ens
}

impl Routes {
    /// Checks every configured stream id.
    pub fn new(config: &BTreeMap<String, String>) -> Result<Self, BadStreamId> {
        let mut streams = BTreeMap::new();
        for (key, value) in config {
            if !is_stream_id(value) {
                return Err(BadStreamId { key: key.clone(), value: value.clone() });
            }
            streams.insert(normalise(key), value.clone());
        }
        Ok(Self { streams })
    }

    /// The stream for `message_type`, else the default stream.
    pub fn stream_for(&self, message_type: &str) -> Result<&str, Unrouted> {
        self.streams
            .get(&normalise(message_type))
            .or_else(|| self.streams.get("default"))
            .map(String::as_str)
            .ok_or_else(|| Unrouted { message_type: message_type.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids() {
        assert!(is_stream_id("0x1234567890abcdef1234567890abcdef12345678/health/heart-rate"));
        assert!(is_stream_id("coop.eth/heart-rate"));
        assert!(!is_stream_id("heart-rate"));
        assert!(!is_stream_id("0x12/x"));
        assert!(!is_stream_id("coop.eth/"));
    }

    #[test]
    fn routes_fall_back_to_default() {
        let mut m = BTreeMap::new();
        m.insert("heart_rate".to_string(), "coop.eth/hr".to_string());
        m.insert("default".to_string(), "coop.eth/all".to_string());
        let r = Routes::new(&m).unwrap();
        assert_eq!(r.stream_for("heart-rate").unwrap(), "coop.eth/hr");
        assert_eq!(r.stream_for("sleep-episode").unwrap(), "coop.eth/all");
        assert!(Routes::new(&BTreeMap::new()).unwrap().stream_for("heart-rate").is_err());
        m.insert("bad".into(), "nope".into());
        assert!(Routes::new(&m).unwrap_err().to_string().contains("streamr.streams.bad"));
    }
}
