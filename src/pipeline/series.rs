//! High-frequency samples (heart rate) as series: one record per subject and closed
//! window, holding the window's samples; the anonymizer turns it into per-step
//! aggregates (`heart-rate-series`).
//!
//! A window `[start, start + window)` is published once it has ended and the sync
//! look-back has passed, so late uploads land before it goes out. The batch's cursor then
//! moves to the end of the last closed window; the next pass reads from the start of the
//! window holding `cursor - lookback`, so every window it looks at is read whole. A window
//! whose samples changed after it was published (a digest of its samples says so) is
//! published again, whole, with `revision + 1`; an unchanged one is not published again.

use std::collections::BTreeMap;

use anonymizer::{Observation, Record};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use sha2::{Digest, Sha256};

use crate::sources::window_start;
use crate::store::SeriesWindow;

/// The records of a batch, with its sample records folded into closed windows.
pub(super) struct Folded {
    /// Series records of closed windows that are new or changed, and every other record.
    pub records: Vec<Record>,
    /// What to record for each series record published.
    pub windows: Vec<SeriesWindow>,
    /// The end of the last closed window (the batch's new cursor).
    pub cursor: String,
}

/// One window's key in the store: `heart-rate-series/<start>`.
fn key(start: DateTime<Utc>) -> String {
    format!("heart-rate-series/{}", start.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn digest(samples: &[(DateTime<Utc>, f64)]) -> String {
    let mut hash = Sha256::new();
    for (at, value) in samples {
        hash.update(at.timestamp_millis().to_be_bytes());
        hash.update(value.to_bits().to_be_bytes());
    }
    hex::encode(&hash.finalize()[..16])
}

/// The end of the last window that is closed at `now`.
pub(super) fn closed_end(now: DateTime<Utc>, window: TimeDelta, lookback: TimeDelta) -> DateTime<Utc> {
    window_start(now.checked_sub_signed(lookback).unwrap_or(now), window)
}

/// One window's samples, with the first record (for its provider and account).
type Window = (Record, Vec<(DateTime<Utc>, f64)>);

/// Samples of the windows that end by `closed_end`, grouped by window start.
fn group(
    records: Vec<Record>,
    window: TimeDelta,
    closed_end: DateTime<Utc>,
) -> (BTreeMap<DateTime<Utc>, Window>, Vec<Record>) {
    let mut windows: BTreeMap<DateTime<Utc>, Window> = BTreeMap::new();
    let mut others = Vec::new();
    for record in records {
        let Observation::HeartRate { beats_per_minute, at, .. } = record.observation else {
            others.push(record);
            continue;
        };
        let start = window_start(at, window);
        if start + window > closed_end {
            continue; // still open: read again next pass
        }
        windows.entry(start).or_insert_with(|| (record.clone(), Vec::new())).1.push((at, beats_per_minute));
    }
    (windows, others)
}

/// Folds `records` into series records for the closed windows, against what `published`
/// says was published before (by key).
pub(super) fn fold(
    records: Vec<Record>,
    window: TimeDelta,
    closed_end: DateTime<Utc>,
    published: &[SeriesWindow],
) -> Folded {
    let (windows, mut out) = group(records, window, closed_end);
    let mut recorded = Vec::new();
    for (start, (first, mut samples)) in windows {
        samples.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let key = key(start);
        let digest = digest(&samples);
        let before = published.iter().find(|w| w.key == key);
        if before.is_some_and(|w| w.digest == digest) {
            continue; // published, unchanged
        }
        let revision = before.map_or(0, |w| w.revision.saturating_add(1));
        out.push(Record {
            provider: first.provider,
            account_id: first.account_id,
            source_key: format!("{key}/r{revision}"),
            observation: Observation::HeartRateSeries { start, end: start + window, samples, revision },
        });
        recorded.push(SeriesWindow { key, revision, digest });
    }
    Folded { records: out, windows: recorded, cursor: closed_end.to_rfc3339_opts(SecondsFormat::Secs, true) }
}

/// The keys of the closed windows `records` touch (to look up what was published).
pub(super) fn keys(records: &[Record], window: TimeDelta, closed_end: DateTime<Utc>) -> Vec<String> {
    let mut keys: Vec<String> = records
        .iter()
        .filter_map(|r| match r.observation {
            Observation::HeartRate { at, .. } => Some(window_start(at, window)),
            _ => None,
        })
        .filter(|start| *start + window <= closed_end)
        .map(key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}
