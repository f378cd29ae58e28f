//! The Fitbit Aria's upload protocol, version 3 (`shared/reference/local-scales.md` §1):
//! a little-endian binary body posted to `www.fitbit.com/scale/upload`, answered with a
//! binary body that sets the scale's clock and tells it its users. Both directions end in
//! a CRC-16/XMODEM over every byte before it, little-endian.
//!
//! Parsing never panics and never trusts a length: every read is bounds-checked, the
//! measurement count must match the body's size exactly, and the CRC must hold.

/// The request header before the measurement records.
const HEADER: usize = 46;
/// One measurement record.
const RECORD: usize = 32;
/// The most readings one upload can carry: the newest and 16 cached ones (a little more
/// is accepted; anything far beyond is not a scale).
pub const MAX_READINGS: u32 = 64;
/// The largest upload body read.
pub const MAX_BODY: usize = HEADER + RECORD * MAX_READINGS as usize + 2;

/// CRC-16/XMODEM: polynomial 0x1021, initial 0, no reflection, no final xor.
pub fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// One reading as the scale reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Raw impedance (never published: no schema carries it).
    pub impedance: u32,
    pub weight_grams: u32,
    /// Unix seconds by the scale's clock.
    pub time: u32,
    /// The user id the server gave this person; 0 is a guest.
    pub user: u32,
    /// Raw fat values; their scaling is unconfirmed (local-scales.md), so they are kept
    /// but not published.
    pub fat1: u32,
    pub covariance: u32,
    pub fat2: u32,
}

/// A parsed upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub battery_percent: u32,
    /// The MAC address: the scale's identity (and serial number). Never published.
    pub mac: [u8; 6],
    /// The opaque auth code the scale sends; a credential, never stored or published.
    pub auth: [u8; 16],
    pub firmware: u32,
    /// The scale's clock when it sent the upload (Unix seconds).
    pub scale_time: u32,
    /// Newest first, then up to 16 cached ones oldest first.
    pub readings: Vec<Reading>,
}

/// Why an upload is refused; no variant carries the body's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AriaError {
    #[error("the upload is shorter than its header ({0} bytes)")]
    Truncated(usize),
    #[error("protocol version {0} is not 3")]
    Version(u32),
    #[error("the upload claims {claimed} readings but holds {held} bytes after the header")]
    Count { claimed: u32, held: usize },
    #[error("the upload's CRC is {found:#06x}, its bytes give {computed:#06x}")]
    Crc { found: u16, computed: u16 },
    #[error("the upload is larger than {MAX_BODY} bytes")]
    TooLarge,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The MAC address as the scale's `serialNumber` writes it: 12 upper-case hex digits.
pub fn serial(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02X}")).collect()
}

/// Parses a version-3 upload body.
pub fn parse(body: &[u8]) -> Result<Upload, AriaError> {
    if body.len() > MAX_BODY {
        return Err(AriaError::TooLarge);
    }
    if body.len() < HEADER + 2 {
        return Err(AriaError::Truncated(body.len()));
    }
    let header = |at| u32_at(body, at).ok_or(AriaError::Truncated(body.len()));
    let version = header(0)?;
    if version != 3 {
        return Err(AriaError::Version(version));
    }
    let count = header(42)?;
    let held = body.len() - HEADER - 2;
    if count > MAX_READINGS || held != count as usize * RECORD {
        return Err(AriaError::Count { claimed: count, held });
    }
    let (content, tail) = body.split_at(body.len() - 2);
    let found = u16::from_le_bytes([tail[0], tail[1]]);
    let computed = crc16_xmodem(content);
    if found != computed {
        return Err(AriaError::Crc { found, computed });
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&body[8..14]);
    let mut auth = [0u8; 16];
    auth.copy_from_slice(&body[14..30]);
    let readings = (0..count as usize)
        .map(|i| {
            let at = HEADER + i * RECORD;
            let field = |off: usize| u32_at(body, at + off).unwrap_or(0);
            Reading {
                impedance: field(4),
                weight_grams: field(8),
                time: field(12),
                user: field(16),
                fat1: field(20),
                covariance: field(24),
                fat2: field(28),
            }
        })
        .collect();
    Ok(Upload { battery_percent: header(4)?, mac, auth, firmware: header(30)?, scale_time: header(38)?, readings })
}

/// Builds an upload body (the simulator's scale, and tests).
pub fn encode(upload: &Upload) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + RECORD * upload.readings.len() + 2);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&upload.battery_percent.to_le_bytes());
    out.extend_from_slice(&upload.mac);
    out.extend_from_slice(&upload.auth);
    out.extend_from_slice(&upload.firmware.to_le_bytes());
    out.extend_from_slice(&33u32.to_le_bytes());
    out.extend_from_slice(&upload.scale_time.to_le_bytes());
    out.extend_from_slice(&(upload.readings.len() as u32).to_le_bytes());
    for r in &upload.readings {
        for v in [2, r.impedance, r.weight_grams, r.time, r.user, r.fat1, r.covariance, r.fat2] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let crc = crc16_xmodem(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A user the scale should know (one record of the response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleUser {
    pub id: u32,
    /// Shown on the display: up to 20 ASCII characters, upper-cased, space-padded.
    pub name: String,
    /// The window the scale picks this user by (grams).
    pub min_grams: u32,
    pub max_grams: u32,
}

/// The response to an upload: the server's clock, kilograms, "configured", the users,
/// no firmware update, the CRC and the length word (local-scales.md §1, helvetic's
/// layout: 0x19 + 0x4D per user bytes before the length word).
pub fn response(server_time: u32, users: &[ScaleUser]) -> Vec<u8> {
    let mut out = Vec::with_capacity(0x19 + 0x4D * users.len() + 2);
    out.extend_from_slice(&server_time.to_le_bytes());
    out.push(2); // kilograms
    out.push(0x32); // configured
    out.push(0x01);
    out.extend_from_slice(&(users.len() as u32).to_le_bytes());
    for user in users {
        out.extend_from_slice(&user.id.to_le_bytes());
        out.extend_from_slice(&[0u8; 16]);
        let mut name = [b' '; 20];
        for (slot, c) in name.iter_mut().zip(user.name.chars().filter(char::is_ascii).map(|c| c.to_ascii_uppercase())) {
            *slot = c as u8;
        }
        out.extend_from_slice(&name);
        out.extend_from_slice(&user.min_grams.to_le_bytes());
        out.extend_from_slice(&user.max_grams.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // age: not told
        out.push(0x34); // gender: unknown
        out.extend_from_slice(&0u32.to_le_bytes()); // height: not told
        out.extend_from_slice(&[0u8; 20]); // last weight, fat, covariance, weight, time
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&3u32.to_le_bytes()); // no firmware update
    out.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc16_xmodem(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let length = u16::try_from(out.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out
}

/// A parsed response (tests, and the simulator's scale checking what it got).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub server_time: u32,
    pub users: Vec<ScaleUser>,
}

/// Parses a response, checking the CRC and the length word.
pub fn parse_response(body: &[u8]) -> Result<Response, AriaError> {
    if body.len() < 0x19 + 2 {
        return Err(AriaError::Truncated(body.len()));
    }
    let (content, length) = body.split_at(body.len() - 2);
    let declared = usize::from(u16::from_le_bytes([length[0], length[1]]));
    if declared != content.len() {
        return Err(AriaError::Count { claimed: declared as u32, held: content.len() });
    }
    let (signed, crc) = content.split_at(content.len() - 2);
    let found = u16::from_le_bytes([crc[0], crc[1]]);
    let computed = crc16_xmodem(signed);
    if found != computed {
        return Err(AriaError::Crc { found, computed });
    }
    let n = u32_at(signed, 7).ok_or(AriaError::Truncated(body.len()))?;
    if signed.len() != 11 + 77 * n as usize + 12 {
        return Err(AriaError::Count { claimed: n, held: signed.len() });
    }
    let users = (0..n as usize)
        .map(|i| {
            let at = 11 + 77 * i;
            let name = String::from_utf8_lossy(&signed[at + 20..at + 40]).trim_end().to_owned();
            ScaleUser {
                id: u32_at(signed, at).unwrap_or(0),
                name,
                min_grams: u32_at(signed, at + 40).unwrap_or(0),
                max_grams: u32_at(signed, at + 44).unwrap_or(0),
            }
        })
        .collect();
    Ok(Response { server_time: u32_at(signed, 0).unwrap_or(0), users })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_xmodem() {
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(crc16_xmodem(b""), 0);
    }

    fn upload(readings: Vec<Reading>) -> Upload {
        Upload {
            battery_percent: 87,
            mac: [0x00, 0x1D, 0xC9, 0x12, 0x34, 0x56],
            auth: [7; 16],
            firmware: 39,
            scale_time: 1_764_500_000,
            readings,
        }
    }

    fn reading(user: u32, grams: u32) -> Reading {
        Reading { impedance: 500, weight_grams: grams, time: 1_764_499_000, user, fat1: 0, covariance: 0, fat2: 0 }
    }

    #[test]
    fn uploads_round_trip_and_hold_the_layout() {
        let u = upload(vec![reading(1, 72_500), reading(0, 80_000)]);
        let body = encode(&u);
        assert_eq!(body.len(), 46 + 64 + 2);
        assert_eq!(&body[0..4], &3u32.to_le_bytes());
        assert_eq!(&body[34..38], &33u32.to_le_bytes());
        assert_eq!(&body[46 + 8..46 + 12], &72_500u32.to_le_bytes(), "weight at record +8");
        assert_eq!(parse(&body).unwrap(), u);
        assert_eq!(serial(&u.mac), "001DC9123456");
        // A settings fetch: no readings.
        assert!(parse(&encode(&upload(Vec::new()))).unwrap().readings.is_empty());
    }

    #[test]
    fn broken_uploads_are_refused() {
        let body = encode(&upload(vec![reading(1, 72_500)]));
        let mut bad_crc = body.clone();
        bad_crc[50] ^= 1;
        assert!(matches!(parse(&bad_crc), Err(AriaError::Crc { .. })));
        assert!(matches!(parse(&body[..body.len() - 5]), Err(AriaError::Count { .. })));
        assert!(matches!(parse(&body[..20]), Err(AriaError::Truncated(20))));
        let mut v2 = body.clone();
        v2[0] = 2;
        assert!(matches!(parse(&v2), Err(AriaError::Version(2))));
        let mut lying = body.clone();
        lying[42] = 200;
        assert!(matches!(parse(&lying), Err(AriaError::Count { .. })));
        assert!(matches!(parse(&vec![0; MAX_BODY + 1]), Err(AriaError::TooLarge)));
    }

    #[test]
    fn responses_hold_the_length_word_and_crc() {
        let one =
            response(1_764_500_000, &[ScaleUser { id: 1, name: "ann".into(), min_grams: 68_000, max_grams: 76_000 }]);
        assert_eq!(u16::from_le_bytes([one[one.len() - 2], one[one.len() - 1]]), 0x66, "one user: 0x66");
        let user = ScaleUser { id: 1, name: "a".into(), min_grams: 1, max_grams: 2 };
        let two = response(1, &[user.clone(), user]);
        assert_eq!(u16::from_le_bytes([two[two.len() - 2], two[two.len() - 1]]), 0xB3, "two users: 0xB3");
        let parsed = parse_response(&one).unwrap();
        assert_eq!(
            (parsed.server_time, parsed.users[0].name.as_str(), parsed.users[0].max_grams),
            (1_764_500_000, "ANN", 76_000)
        );
        assert_eq!(&one[4..7], &[2, 0x32, 0x01]);
        let mut bad = one.clone();
        bad[3] ^= 1;
        assert!(matches!(parse_response(&bad), Err(AriaError::Crc { .. })));
        assert!(parse_response(&response(5, &[])).unwrap().users.is_empty());
    }
}
