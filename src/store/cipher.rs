//! Encryption at rest for tokens and provider user ids (XChaCha20-Poly1305).
//!
//! Each ciphertext is bound (as associated data) to its account and field, so a row
//! copied onto another account or column fails to decrypt instead of being misused.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};

use super::StoreError;

const NONCE_LEN: usize = 24;

/// The store's AEAD key. `Debug` never shows it.
#[derive(Clone)]
pub struct TokenCipher {
    aead: XChaCha20Poly1305,
    /// Keys [`TokenCipher::lookup_key`]: derived from the store key, never the key itself.
    lookup: [u8; 32],
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher(<redacted>)")
    }
}

impl TokenCipher {
    pub fn new(key: [u8; 32]) -> Self {
        use sha2::Digest;
        let lookup = sha2::Sha256::new().chain_update(b"wearbridge/lookup-key/v1").chain_update(key).finalize();
        Self { aead: XChaCha20Poly1305::new(&Key::from(key)), lookup: lookup.into() }
    }

    /// A keyed hash (HMAC-SHA256, hex) of a provider's user id: equal ids give equal keys,
    /// so the store can find an upstream account enrolled twice without keeping the id
    /// in the clear (the id itself is sealed per account).
    pub fn lookup_key(&self, provider: &str, user_id: &str) -> Result<String, StoreError> {
        use hmac::{KeyInit as _, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.lookup)
            .map_err(|e| StoreError::Crypto(format!("lookup key: {e}")))?;
        for part in [provider.as_bytes(), user_id.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    fn aad(account_id: i64, field: &str) -> Vec<u8> {
        format!("wearbridge/v1/{account_id}/{field}").into_bytes()
    }

    /// `nonce || ciphertext` of `plain`, bound to `(account_id, field)`.
    pub fn seal(&self, account_id: i64, field: &str, plain: &str) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| StoreError::Crypto(format!("no random source: {e}")))?;
        let aad = Self::aad(account_id, field);
        let sealed = self
            .aead
            .encrypt(&XNonce::from(nonce), Payload { msg: plain.as_bytes(), aad: &aad })
            .map_err(|_| StoreError::Crypto(format!("cannot encrypt {field}")))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn seal_secret(&self, account_id: i64, field: &str, secret: &SecretString) -> Result<Vec<u8>, StoreError> {
        self.seal(account_id, field, secret.expose_secret())
    }

    /// Decrypts what [`seal`](Self::seal) produced; a wrong key or a moved row is an error
    /// that names the field, never the content.
    pub fn open(&self, account_id: i64, field: &str, sealed: &[u8]) -> Result<String, StoreError> {
        let wrong = || {
            StoreError::Crypto(format!(
                "cannot decrypt {field} of account {account_id}: wrong store.key_file or damaged row"
            ))
        };
        if sealed.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| wrong())?;
        let aad = Self::aad(account_id, field);
        let plain = self.aead.decrypt(&nonce, Payload { msg: body, aad: &aad }).map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let c = TokenCipher::new([7; 32]);
        let sealed = c.seal(1, "refresh_token", "rt-secret").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"rt-secret"));
        assert_eq!(c.open(1, "refresh_token", &sealed).unwrap(), "rt-secret");
        assert!(c.open(2, "refresh_token", &sealed).is_err());
        assert!(c.open(1, "access_token", &sealed).is_err());
        assert!(TokenCipher::new([8; 32]).open(1, "refresh_token", &sealed).is_err());
        assert_ne!(sealed, c.seal(1, "refresh_token", "rt-secret").unwrap(), "fresh nonce each time");
    }
}
