//! Time coarsening: published instants are UTC, truncated to a granularity.

use chrono::{DateTime, TimeDelta, Utc};

/// Truncates `at` down to a multiple of `granularity` since the Unix epoch.
/// A zero or negative granularity leaves the time unchanged (to the second). `None` when
/// the truncated time is outside what chrono represents (the edge of the calendar).
pub(crate) fn coarsen(at: DateTime<Utc>, granularity: TimeDelta) -> Option<DateTime<Utc>> {
    let step = granularity.num_seconds().max(1);
    let secs = at.timestamp();
    let truncated = secs.checked_sub(secs.rem_euclid(step))?;
    DateTime::from_timestamp(truncated, 0)
}
