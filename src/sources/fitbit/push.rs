//! Google Health API notifications: the body names `healthUserId`, `dataType`,
//! `operation` (UPSERT or DELETE) and the changed `intervals`, and carries no values.
//! Live payloads vary (one object or an array, camelCase or kebab-case types), so the
//! parser is lenient in shape and strict in meaning: a notification whose user or data
//! type cannot be made out is malformed. The signature (`X-HEALTHAPI-SIGNATURE`) is an
//! ECDSA P-256 signature of the raw body, checked when the operator configured Google's
//! public key.

use base64::Engine as _;
use serde_json::Value;

use crate::config::Dataset;
use crate::sources::push::{Notice, PushError, instant};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-healthapi-signature";

/// The dataset a Google Health data type belongs to, in any of the spellings seen
/// (`heart-rate`, `heartRate`, `HEART_RATE`, `users/…/dataTypes/heart-rate`).
pub fn dataset_of(data_type: &str) -> Option<Dataset> {
    let last = data_type.rsplit('/').next().unwrap_or(data_type);
    let mut kebab = String::with_capacity(last.len() + 4);
    for (i, c) in last.trim().chars().enumerate() {
        match c {
            '_' | ' ' => kebab.push('-'),
            c if c.is_ascii_uppercase() => {
                // camelCase → kebab (an all-caps name becomes lowercase words below).
                if i > 0 && !last.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !kebab.ends_with('-') {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            c => kebab.push(c),
        }
    }
    Some(match kebab.as_str() {
        "heart-rate" | "daily-resting-heart-rate" | "resting-heart-rate" | "heart-rate-variability" => {
            Dataset::HeartRate
        }
        "steps" | "distance" | "active-minutes" | "total-calories" | "floors" | "altitude" | "exercise" => {
            Dataset::Activity
        }
        "sleep" => Dataset::Sleep,
        "weight" | "body-fat" | "height" => Dataset::Body,
        _ => return None,
    })
}

/// Parses a notification body: one notification object, an array of them, or an object
/// holding them under `notifications`.
pub fn parse(body: &[u8]) -> Result<Vec<Notice>, PushError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| PushError::Malformed(format!("not JSON ({})", crate::sources::json_position(&e))))?;
    let items: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(o) => match o.get("notifications").or_else(|| o.get("data")) {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => vec![&value],
        },
        _ => return Err(PushError::Malformed("neither an object nor an array".into())),
    };
    if items.is_empty() {
        return Err(PushError::Malformed("no notification in the body".into()));
    }
    items.into_iter().map(one).collect()
}

/// A member by any of its spellings.
fn field<'v>(item: &'v Value, names: &[&str]) -> Option<&'v Value> {
    let object = item.as_object()?;
    names
        .iter()
        .find_map(|n| object.get(*n))
        .or_else(|| object.iter().find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n))).map(|(_, v)| v))
}

fn one(item: &Value) -> Result<Notice, PushError> {
    if !item.is_object() {
        return Err(PushError::Malformed("a notification is not an object".into()));
    }
    let user = field(item, &["healthUserId", "health_user_id", "userId", "user"])
        .and_then(|v| match v {
            Value::String(s) => Some(s.trim().trim_start_matches("users/").to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .filter(|u| !u.is_empty() && u.len() <= 256)
        .ok_or_else(|| PushError::Malformed("no healthUserId".into()))?;
    let types: Vec<&str> = match field(item, &["dataType", "data_type", "dataTypes", "type"]) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut datasets: Vec<Dataset> = types.iter().filter_map(|t| dataset_of(t)).collect();
    datasets.sort();
    datasets.dedup();
    if datasets.is_empty() {
        return Err(PushError::Malformed("no data type wearbridge reads".into()));
    }
    let delete = field(item, &["operation", "op"])
        .and_then(Value::as_str)
        .is_some_and(|op| op.trim().eq_ignore_ascii_case("delete"));
    // `intervals: [{startTime, endTime}]`, or one `interval`.
    let intervals: Vec<&Value> = match field(item, &["intervals", "interval"]) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    };
    let starts = intervals.iter().filter_map(|i| field(i, &["startTime", "start_time", "start"]).and_then(instant));
    let ends = intervals.iter().filter_map(|i| field(i, &["endTime", "end_time", "end"]).and_then(instant));
    Ok(Notice { user_id: user, datasets, from: starts.min(), to: ends.max(), delete })
}

/// The Google Health data types wearbridge reads: what its subscriber asks to be
/// notified about.
pub const DATA_TYPES: [&str; 9] = [
    "heart-rate",
    "daily-resting-heart-rate",
    "steps",
    "distance",
    "active-minutes",
    "total-calories",
    "sleep",
    "weight",
    "body-fat",
];

/// What [`ensure_subscriber`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberOutcome {
    /// A subscriber for the endpoint existed; its secret was set to the current one.
    Exists(String),
    /// Created and verified (by name).
    Created(String),
    /// Google accepted the request and verifies the endpoint in the background.
    Pending(String),
}

/// Makes sure the project has a subscriber sending notifications of [`DATA_TYPES`] to
/// `endpoint` with `authorization` (policy `AUTOMATIC`: every user who consented to the
/// application, no per-user subscriptions). `admin_token` is a Google Cloud access token
/// with the `cloud-platform` scope (e.g. `gcloud auth print-access-token`). Errors carry
/// Google's status name and message, never the token or the secret.
pub async fn ensure_subscriber(
    http: &reqwest::Client,
    api_base: &str,
    project: &str,
    admin_token: &str,
    endpoint: &str,
    authorization: &str,
) -> Result<SubscriberOutcome, String> {
    let base = format!("{}/v4/projects/{project}/subscribers", api_base.trim_end_matches('/'));
    let describe = |e: reqwest::Error| format!("cannot reach the Google Health API: {}", e.without_url());
    let listed =
        http.get(&base).query(&[("pageSize", "1000")]).bearer_auth(admin_token).send().await.map_err(describe)?;
    let body = operation(listed, "listing the project's subscribers", endpoint).await?;
    if let Some(existing) =
        body["subscribers"].as_array().into_iter().flatten().find(|s| s["endpointUri"].as_str() == Some(endpoint))
    {
        // The secret cannot be read back: set it again, so a rotated
        // `push.google_authorization` takes effect (Google verifies the endpoint anew).
        let name = existing["name"].as_str().unwrap_or_default().to_owned();
        let url = format!("{}/v4/{name}", api_base.trim_end_matches('/'));
        let patched = http
            .patch(&url)
            .query(&[("updateMask", "endpointAuthorization")])
            .bearer_auth(admin_token)
            .json(&serde_json::json!({"endpointAuthorization": {"secret": authorization}}))
            .send()
            .await
            .map_err(describe)?;
        operation(patched, "updating the subscriber's secret", endpoint).await?;
        return Ok(SubscriberOutcome::Exists(name));
    }
    let request = serde_json::json!({
        "endpointUri": endpoint,
        "endpointAuthorization": {"secret": authorization},
        "subscriberConfigs": [{"dataTypes": DATA_TYPES, "subscriptionCreatePolicy": "AUTOMATIC"}],
    });
    let created = http
        .post(&base)
        .query(&[("subscriberId", "wearbridge")])
        .bearer_auth(admin_token)
        .json(&request)
        .send()
        .await
        .map_err(describe)?;
    let operation = operation(created, "creating the subscriber", endpoint).await?;
    let name = operation["response"]["name"]
        .as_str()
        .map_or_else(|| format!("projects/{project}/subscribers/wearbridge"), str::to_owned);
    Ok(if operation["done"] == true { SubscriberOutcome::Created(name) } else { SubscriberOutcome::Pending(name) })
}

/// The long-running operation a subscriber call answers, or why it failed (Google's
/// status name, or its verification message; never the token or the secret).
async fn operation(response: reqwest::Response, what: &str, endpoint: &str) -> Result<Value, String> {
    let status = response.status();
    let operation: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let status_name = operation["error"]["status"].as_str().map(crate::sources::code_name).unwrap_or_default();
        return Err(format!("{what} failed: HTTP {} {status_name}", status.as_u16()));
    }
    if let Some(error) = operation.get("error").filter(|e| !e.is_null()) {
        let message: String = error["message"].as_str().unwrap_or_default().chars().take(300).collect();
        return Err(format!("{what}: Google could not verify {endpoint}: {message}"));
    }
    Ok(operation)
}

/// Google's public key for notification signatures.
#[derive(Debug, Clone)]
pub struct SignatureKey {
    /// The uncompressed P-256 point (65 bytes).
    point: Vec<u8>,
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1), before
/// the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl SignatureKey {
    /// A PEM `PUBLIC KEY` (SubjectPublicKeyInfo) of an ECDSA P-256 key.
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let body: String = text
            .lines()
            .map(str::trim)
            .skip_while(|l| !l.starts_with("-----BEGIN PUBLIC KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        if body.is_empty() {
            return Err("expected a PEM \"PUBLIC KEY\" block".into());
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| "the PEM block is not base64".to_owned())?;
        Self::from_spki_der(&der)
    }

    /// A DER SubjectPublicKeyInfo of an ECDSA P-256 key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 0x04 => Ok(Self { point: point.to_vec() }),
            _ => Err("not an uncompressed ECDSA P-256 public key".into()),
        }
    }

    /// The PEM text of an uncompressed P-256 point (the simulator publishes its key so).
    pub fn pem_of_point(point: &[u8]) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(point);
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    }

    /// Whether `signature` (base64, standard or URL-safe; DER or the 64-byte r‖s form)
    /// signs `body` (ECDSA P-256 with SHA-256).
    pub fn verifies(&self, body: &[u8], signature: &str) -> bool {
        use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
        let text = signature.trim();
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let Some(bytes) = engines.iter().find_map(|e| e.decode(text.as_bytes()).ok()) else { return false };
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point).verify(body, &bytes).is_ok()
            || (bytes.len() == 64
                && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point).verify(body, &bytes).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_types_in_every_spelling() {
        for t in ["heart-rate", "heartRate", "HEART_RATE", "users/me/dataTypes/heart-rate", "dailyRestingHeartRate"] {
            assert_eq!(dataset_of(t), Some(Dataset::HeartRate), "{t}");
        }
        assert_eq!(dataset_of("bodyFat"), Some(Dataset::Body));
        assert_eq!(dataset_of("TOTAL_CALORIES"), Some(Dataset::Activity));
        assert_eq!(dataset_of("SLEEP"), Some(Dataset::Sleep));
        assert_eq!(dataset_of("oxygen-saturation"), None);
    }

    #[test]
    fn notifications_as_object_array_or_wrapped() {
        let one = br#"{"healthUserId":"u1","dataType":"weight","operation":"UPSERT",
            "intervals":[{"startTime":"2026-11-30T07:00:00Z","endTime":"2026-11-30T07:05:00Z"}]}"#;
        let parsed = parse(one).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            (parsed[0].user_id.as_str(), parsed[0].datasets.as_slice(), parsed[0].delete),
            ("u1", &[Dataset::Body][..], false)
        );
        assert_eq!(parsed[0].from.map(|t| t.to_rfc3339()), Some("2026-11-30T07:00:00+00:00".into()));
        let many = br#"[{"healthUserId":"u1","dataType":"HEART_RATE","operation":"delete"},
            {"healthuserid":"users/u2","datatype":"sleep","interval":{"startTime":"2026-11-29T22:00:00Z"}}]"#;
        let parsed = parse(many).unwrap();
        assert!(parsed[0].delete && parsed[0].datasets == [Dataset::HeartRate]);
        assert_eq!(parsed[1].user_id, "u2");
        let wrapped = br#"{"notifications":[{"healthUserId":"u3","dataType":"steps"}]}"#;
        assert_eq!(parse(wrapped).unwrap()[0].datasets, [Dataset::Activity]);
    }

    #[test]
    fn what_cannot_be_made_out_is_malformed() {
        for bad in
            [&b""[..], b"null", b"[]", b"{}", br#"{"dataType":"weight"}"#, br#"{"healthUserId":"u","dataType":"x"}"#]
        {
            assert!(matches!(parse(bad), Err(PushError::Malformed(_))), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn signatures_verify_only_for_their_body_and_key() {
        use ring::rand::SystemRandom;
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let key = SignatureKey::from_pem(&SignatureKey::pem_of_point(pair.public_key().as_ref())).unwrap();
        let body = br#"{"healthUserId":"u1","dataType":"weight"}"#;
        let signature = base64::engine::general_purpose::STANDARD.encode(pair.sign(&rng, body).unwrap());
        assert!(key.verifies(body, &signature));
        assert!(!key.verifies(br#"{"healthUserId":"u2","dataType":"weight"}"#, &signature));
        assert!(!key.verifies(body, "not base64 at all!"));
        assert!(!key.verifies(body, ""));
        assert!(SignatureKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
        assert!(SignatureKey::from_pem("garbage").is_err());
    }
}
