//! The one source of "now".
//!
//! Everything that reads the time of day — sync windows, civil days, token expiry,
//! schedules, leases, the published-id memory, the simulator's readings — asks a
//! [`Clock`] handed down from the command that built it, never the system directly. In
//! production that is the system clock; `--now` anchors it to an instant (reproducible
//! demos, replays), and tests pin it, so nothing depends on the hour a test runs at.
//!
//! Waits and timeouts use tokio's monotonic timers, not this clock: they measure
//! durations, not the time of day.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

/// A shared handle on "now". Clones share their state: moving a pinned clock moves it
/// for every holder (the pipeline and the simulator in one test, say).
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<Mutex<Mode>>);

#[derive(Debug, Clone, Copy, Default)]
enum Mode {
    /// The system's real-time clock.
    #[default]
    System,
    /// Stands still at this instant until moved.
    Pinned(DateTime<Utc>),
    /// Reads `at` at the monotonic instant `since`, and advances with real time from there.
    Anchored { at: DateTime<Utc>, since: std::time::Instant },
}

impl Clock {
    /// The system clock (production).
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads `at` until [`Clock::set`] or [`Clock::advance`] moves it (tests).
    pub fn pinned(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(Mode::Pinned(at))))
    }

    /// A clock that reads `at` now and then runs at real speed (`--now` for long-running
    /// commands: schedules and token lifetimes still elapse).
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(Mode::Anchored { at, since: std::time::Instant::now() })))
    }

    /// `--now` for a command: the system clock when absent.
    pub fn from_option(at: Option<DateTime<Utc>>) -> Self {
        at.map_or_else(Self::system, Self::starting_at)
    }

    /// The current instant by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        match *self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            Mode::System => Utc::now(),
            Mode::Pinned(at) => at,
            Mode::Anchored { at, since } => at + TimeDelta::from_std(since.elapsed()).unwrap_or(TimeDelta::zero()),
        }
    }

    /// Pins the clock at `at` (whatever it was before) for every holder.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Mode::Pinned(at);
    }

    /// Pins the clock `by` later than it reads now.
    pub fn advance(&self, by: TimeDelta) {
        self.set(self.now() + by);
    }

    /// Whether this is the system clock (not pinned or anchored).
    pub fn is_system(&self) -> bool {
        matches!(*self.0.lock().unwrap_or_else(PoisonError::into_inner), Mode::System)
    }
}

/// Parses a `--now` value: RFC 3339 with an offset (`2028-02-29T12:00:00Z`).
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected an RFC 3339 instant such as 2028-02-29T12:00:00Z, got {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn pinned_clocks_stand_still_and_move_for_every_holder() {
        let at = Utc.with_ymd_and_hms(2028, 2, 29, 23, 59, 0).unwrap();
        let clock = Clock::pinned(at);
        let other = clock.clone();
        assert_eq!(clock.now(), at);
        other.advance(TimeDelta::minutes(6));
        assert_eq!(clock.now(), Utc.with_ymd_and_hms(2028, 3, 1, 0, 5, 0).unwrap());
        assert!(!clock.is_system());
    }

    #[test]
    fn anchored_clocks_run_from_their_instant() {
        let at = Utc.with_ymd_and_hms(2027, 3, 28, 1, 0, 0).unwrap();
        let clock = Clock::starting_at(at);
        let read = clock.now();
        assert!(read >= at && read < at + TimeDelta::minutes(1), "{read}");
        assert!(Clock::system().is_system());
    }

    #[test]
    fn instants_parse_with_an_offset_only() {
        assert_eq!(
            parse_instant("2026-11-01T05:39:00+01:00"),
            Ok(Utc.with_ymd_and_hms(2026, 11, 1, 4, 39, 0).unwrap())
        );
        assert!(parse_instant("2026-11-01 05:39").is_err());
        assert!(parse_instant("yesterday").is_err());
    }
}
