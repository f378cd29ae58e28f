//! Keyed derivations: subject pseudonyms, message ids and date shifts.
//!
//! Every derivation is HMAC-SHA256 under the secret key with a distinct domain label and
//! length-prefixed fields, so outputs of one kind can never collide with another and no
//! field boundary is ambiguous. A plain or salted hash of a guessable id could be
//! reversed by brute force (ENISA 2019); a keyed hash cannot without the key.

use chrono::{DateTime, Utc};
use hmac::Mac;

use crate::{Provider, PseudonymKey};

fn keyed(key: &PseudonymKey, domain: &str, fields: &[&[u8]]) -> [u8; 32] {
    let mut mac = key.mac();
    for part in std::iter::once(domain.as_bytes()).chain(fields.iter().copied()) {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// subject = HMAC(key, provider ‖ account id), 128 bits in lowercase hex.
pub(crate) fn subject(key: &PseudonymKey, provider: Provider, account_id: &str) -> String {
    let digest = keyed(key, "wearbridge/subject/v1", &[provider.as_str().as_bytes(), account_id.as_bytes()]);
    hex(&digest[..16])
}

/// A person's subject across their providers = HMAC(key, person basis), 128 bits in
/// lowercase hex. The basis is random per person (kept by the store), so the subject
/// reveals nothing of any provider's id.
pub(crate) fn person_subject(key: &PseudonymKey, basis: &str) -> String {
    let digest = keyed(key, "wearbridge/person/v1", &[basis.as_bytes()]);
    hex(&digest[..16])
}

/// A deterministic message id shaped as an RFC 9562 version-8 UUID.
pub(crate) fn message_id(
    key: &PseudonymKey,
    provider: Provider,
    account_id: &str,
    data_type: &str,
    source_key: &str,
    time: DateTime<Utc>,
) -> String {
    let time = time.timestamp_millis().to_be_bytes();
    let digest = keyed(
        key,
        "wearbridge/message-id/v1",
        &[provider.as_str().as_bytes(), account_id.as_bytes(), data_type.as_bytes(), source_key.as_bytes(), &time],
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A per-subject value in `[0, span)`, stable under one key.
pub(crate) fn subject_offset(key: &PseudonymKey, subject: &str, span: u64) -> u64 {
    if span <= 1 {
        return 0; // the only value in [0, 1): no derivation needed
    }
    let digest = keyed(key, "wearbridge/date-shift/v1", &[subject.as_bytes()]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % span
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}
