//! The pseudonym key: a secret 32-byte HMAC key plus the public id of its epoch.

/// A keyed-hash secret and the epoch it belongs to. Rotating the key means a new epoch
/// and new pseudonyms; the epoch id is published so buyers can tell series apart.
#[derive(Clone)]
pub struct PseudonymKey {
    epoch: String,
    /// HMAC-SHA256 already keyed: each derivation clones it instead of hashing the key's
    /// pads again (two of the four compressions of a short message).
    mac: HmacSha256,
}

pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Why a key or epoch is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key epoch must be 1 to 32 characters of letters, digits, '-' or '_'")]
    BadEpoch,
    #[error("the key is not a valid HMAC-SHA256 key")]
    BadKey,
}

impl PseudonymKey {
    pub fn new(epoch: impl Into<String>, key: [u8; 32]) -> Result<Self, KeyError> {
        let epoch = epoch.into();
        let ok = !epoch.is_empty()
            && epoch.len() <= 32
            && epoch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(KeyError::BadEpoch);
        }
        use hmac::KeyInit;
        // A 32-byte key is always a valid HMAC key.
        let mac = HmacSha256::new_from_slice(&key).map_err(|_| KeyError::BadKey)?;
        Ok(Self { epoch, mac })
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// A fresh keyed HMAC to derive one value with.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PseudonymKey").field("epoch", &self.epoch).field("key", &"<redacted>").finish()
    }
}
