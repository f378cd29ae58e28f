//! A Wi-Fi scale emulator: what a Fitbit Aria (protocol v3) sends to
//! `www.fitbit.com/scale/upload`, well formed (a newest reading and up to 16 cached ones,
//! oldest first) and broken (a bad CRC, a truncated body, an oversize one, an unknown
//! MAC), for the capture listener's tests.

use crate::sources::local::aria;

/// One emulated Aria.
#[derive(Debug, Clone)]
pub struct AriaScale {
    pub mac: [u8; 6],
    /// The scale's clock (Unix seconds) when it uploads.
    pub clock: u32,
}

/// A broken upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    BadCrc,
    Truncated,
    Oversize,
    UnknownMac,
}

impl AriaScale {
    /// A reading of `user` (0: a guest) weighing `grams`, `minutes_ago` by the scale's clock.
    pub fn reading(&self, user: u32, grams: u32, minutes_ago: u32) -> aria::Reading {
        aria::Reading {
            impedance: 450 + grams % 100,
            weight_grams: grams,
            time: self.clock.saturating_sub(60 * minutes_ago),
            user,
            fat1: 0,
            covariance: 0,
            fat2: 0,
        }
    }

    /// The upload body carrying `readings` (the newest first, then the cache oldest first).
    pub fn upload(&self, readings: Vec<aria::Reading>) -> Vec<u8> {
        aria::encode(&aria::Upload {
            battery_percent: 76,
            mac: self.mac,
            auth: [0x5a; 16],
            firmware: 39,
            scale_time: self.clock,
            readings,
        })
    }

    /// A full cache: the newest reading of `user` and 16 cached ones over the past days.
    pub fn full_cache(&self, user: u32, grams: u32) -> Vec<u8> {
        let mut readings = vec![self.reading(user, grams, 1)];
        readings.extend((1..=16u32).rev().map(|day| self.reading(user, grams + day * 10, day * 1440)));
        self.upload(readings)
    }

    /// A broken upload of one reading of `user`.
    pub fn broken(&self, kind: Broken, user: u32) -> Vec<u8> {
        let good = self.upload(vec![self.reading(user, 70_000, 1)]);
        match kind {
            Broken::BadCrc => {
                let mut body = good;
                let n = body.len();
                body[n - 1] ^= 0xff;
                body
            }
            Broken::Truncated => good[..good.len() - 9].to_vec(),
            // Beyond what the capture listener reads (64 KiB).
            Broken::Oversize => vec![0x03; 100_000],
            Broken::UnknownMac => {
                let other = AriaScale { mac: [0x00, 0x1d, 0xc9, 0xee, 0xee, 0xee], clock: self.clock };
                other.upload(vec![other.reading(user, 70_000, 1)])
            }
        }
    }
}
