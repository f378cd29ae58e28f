//! Deterministic synthetic people: the same seed always yields the same people, ids,
//! tokens and readings.

use chrono_tz::Tz;

/// A simulated person with a Fitbit (Google Health) account.
#[derive(Debug, Clone)]
pub struct Person {
    pub index: usize,
    /// A suggested local account name (`person-0`, ...).
    pub name: String,
    /// Google Health `healthUserId` (personal data upstream; must never be published).
    pub health_user_id: String,
    /// The 6-character legacy Fitbit id.
    pub legacy_user_id: String,
    pub time_zone: Tz,
    /// The Google refresh token this person's consent produced.
    pub refresh_token: String,
    /// The Withings user id (personal data upstream; must never be published).
    pub withings_user_id: u64,
    /// The Withings refresh token of this person's first consent.
    pub withings_refresh_token: String,
    pub device_name: &'static str,
    pub device_form_factor: &'static str,
    /// Resting heart rate around which samples vary.
    pub resting_bpm: u32,
    /// Canary mode: every identifying or free-text value carries a marker (`CANARY`, or
    /// the digit runs `424242424242`/`1337133713` in numeric ids, long enough that
    /// no hash or random hex string carries them by chance) so tests can prove none leaks.
    pub canary: bool,
}

/// The numeric prefix of canary Withings user ids.
pub const CANARY_USER_ID_BASE: u64 = 4_242_424_242_420_000;
/// The numeric prefix of canary group and session ids.
pub const CANARY_ID_BASE: u64 = 1_337_133_713_000_000_000;

impl Person {
    /// The person's upstream accounts: provider and the refresh token of their consent.
    pub fn accounts(&self) -> [(anonymizer::Provider, &str); 2] {
        [
            (crate::sources::fitbit::PROVIDER, self.refresh_token.as_str()),
            (crate::sources::withings::PROVIDER, self.withings_refresh_token.as_str()),
        ]
    }

    /// Marks every identifying value of this person (see [`Person::canary`]).
    pub fn into_canary(mut self) -> Self {
        self.health_user_id = format!("CANARYhu{}x{}", self.index, &self.health_user_id[..8]);
        self.legacy_user_id = format!("CANARYlg{}", self.index);
        self.device_name = "CANARY-device-name";
        self.withings_user_id = CANARY_USER_ID_BASE + self.index as u64;
        self.canary = true;
        self
    }

    /// `text`, or a marker naming it in canary mode.
    pub(crate) fn mark(&self, what: &str, text: String) -> String {
        if self.canary { format!("CANARY-{what}-{}", self.index) } else { text }
    }
}

const ZONES: &[Tz] = &[
    chrono_tz::America::New_York,
    chrono_tz::Europe::Berlin,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Australia::Sydney,
    chrono_tz::America::Los_Angeles,
    chrono_tz::UTC,
];

const DEVICES: &[(&str, &str)] =
    &[("Charge 6", "FITNESS_BAND"), ("Pixel Watch 3", "WATCH"), ("Sense 2", "WATCH"), ("Inspire 3", "FITNESS_BAND")];

/// SplitMix64: a tiny, well-mixed, seedable hash for reproducible synthetic data.
pub(crate) fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes several values into one.
pub(crate) fn mix_all(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED_u64, |acc, p| mix(acc ^ mix(*p)))
}

fn alnum(seed: u64, len: usize, upper: bool) -> String {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let set = if upper { UPPER } else { LOWER };
    (0..len).map(|i| set[(mix_all(&[seed, i as u64]) % set.len() as u64) as usize] as char).collect()
}

/// `count` people derived from `seed`.
pub fn generate_people(seed: u64, count: usize) -> Vec<Person> {
    (0..count)
        .map(|index| {
            let base = mix_all(&[seed, index as u64]);
            let (device_name, device_form_factor) = DEVICES[(mix(base ^ 3) % DEVICES.len() as u64) as usize];
            Person {
                index,
                name: format!("person-{index}"),
                health_user_id: alnum(base ^ 1, 21, false),
                legacy_user_id: alnum(base ^ 2, 6, true),
                time_zone: ZONES[index % ZONES.len()],
                refresh_token: format!("1//sim-{}", alnum(base ^ 4, 40, false)),
                withings_user_id: 10_000_000 + mix(base ^ 6) % 89_999_999,
                withings_refresh_token: alnum(base ^ 7, 40, false),
                device_name,
                device_form_factor,
                resting_bpm: 52 + (mix(base ^ 5) % 20) as u32,
                canary: false,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_are_deterministic_and_distinct() {
        let a = generate_people(7, 4);
        let b = generate_people(7, 4);
        assert_eq!(a[2].health_user_id, b[2].health_user_id);
        assert_ne!(a[0].health_user_id, a[1].health_user_id);
        assert_ne!(generate_people(8, 1)[0].health_user_id, a[0].health_user_id);
        assert_eq!(a[0].legacy_user_id.len(), 6);
    }
}
