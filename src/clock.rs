//! The one source of "now".
//!
//! Everything that reads the time of day — sync windows, civil days, token expiry,
//! schedules, leases, the published-id memory, the simulator's readings — asks a
//! [`Clock`] handed down from the command that built it, never the system directly. In
//! production that is the system clock; `--now` anchors it to an instant (reproducible
//! demos, replays), and tests pin it, so nothing depends on the hour a test runs at.
//!
//! Waits and timeouts use tokio's monotonic timers, not this clock: they measure
//! durations, not the time of day. The one exception is [`Clock::sleep_until`], for
//! waits that are about the time of day (an upstream quota's minute): on a pinned clock
//! it ends when a test moves the clock past it.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

/// A shared handle on "now". Clones share their state: moving a pinned clock moves it
/// for every holder (the pipeline and the simulator in one test, say).
#[derive(Debug, Clone, Default)]
pub struct Clock(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    mode: Mutex<Mode>,
    /// Woken whenever the clock is set or advanced.
    moved: tokio::sync::Notify,
    /// The instants [`Clock::sleep_until`] callers wait for on a pinned clock (with how
    /// many wait for each): a test that steps through a day moves the clock to the first.
    sleepers: Mutex<std::collections::BTreeMap<DateTime<Utc>, usize>>,
}

/// Takes a sleeper's instant off the list when its wait ends or is dropped.
struct Sleeper<'a>(&'a Shared, DateTime<Utc>);

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        let mut sleepers = self.0.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = sleepers.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                sleepers.remove(&self.1);
            }
        }
    }
}

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
        Self::with(Mode::Pinned(at))
    }

    /// A clock that reads `at` now and then runs at real speed (`--now` for long-running
    /// commands: schedules and token lifetimes still elapse).
    pub fn starting_at(at: DateTime<Utc>) -> Self {
        Self::with(Mode::Anchored { at, since: std::time::Instant::now() })
    }

    fn with(mode: Mode) -> Self {
        Self(Arc::new(Shared { mode: Mutex::new(mode), ..Shared::default() }))
    }

    fn mode(&self) -> Mode {
        *self.0.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `--now` for a command: the system clock when absent.
    pub fn from_option(at: Option<DateTime<Utc>>) -> Self {
        at.map_or_else(Self::system, Self::starting_at)
    }

    /// The current instant by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        match self.mode() {
            Mode::System => Utc::now(),
            Mode::Pinned(at) => at,
            Mode::Anchored { at, since } => at + TimeDelta::from_std(since.elapsed()).unwrap_or(TimeDelta::zero()),
        }
    }

    /// Pins the clock at `at` (whatever it was before) for every holder.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.mode.lock().unwrap_or_else(PoisonError::into_inner) = Mode::Pinned(at);
        self.0.moved.notify_waiters();
    }

    /// Pins the clock `by` later than it reads now.
    pub fn advance(&self, by: TimeDelta) {
        self.set(self.now() + by);
    }

    /// Whether this is the system clock (not pinned or anchored).
    pub fn is_system(&self) -> bool {
        matches!(self.mode(), Mode::System)
    }

    /// The earliest instant a [`Clock::sleep_until`] waits for on this pinned clock.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.0.sleepers.lock().unwrap_or_else(PoisonError::into_inner).keys().next().copied()
    }

    /// Runs `work` on this pinned clock as if time passed: whenever a part of it waits
    /// for an instant ([`Clock::sleep_until`], an upstream quota's next minute), the
    /// clock is moved there. For simulated days in tests and benchmarks; on a running
    /// clock it just runs `work`.
    pub async fn drive<T>(&self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {
                    if let (Mode::Pinned(_), Some(wake)) = (self.mode(), self.next_wake()) {
                        self.set(wake);
                    }
                }
            }
        }
    }

    /// Resolves the next time the clock is set or advanced (never, for the system clock):
    /// lets a loop that waits for the time of day wake when a test moves a pinned clock.
    pub async fn moved(&self) {
        self.0.moved.notified().await;
    }

    /// Waits until this clock reads `at` or later: a timer on a running clock; on a
    /// pinned one, until it is moved there (cancel by dropping the future).
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        loop {
            let moved = self.0.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let now = self.now();
            if now >= at {
                return;
            }
            match self.mode() {
                Mode::Pinned(_) => {
                    *self.0.sleepers.lock().unwrap_or_else(PoisonError::into_inner).entry(at).or_default() += 1;
                    let _sleeper = Sleeper(&self.0, at);
                    moved.await;
                }
                Mode::System | Mode::Anchored { .. } => {
                    tokio::time::sleep((at - now).to_std().unwrap_or_default()).await;
                }
            }
        }
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

    #[tokio::test]
    async fn sleeping_on_a_pinned_clock_ends_when_it_is_moved_past() {
        let at = Utc.with_ymd_and_hms(2028, 2, 29, 12, 0, 0).unwrap();
        let clock = Clock::pinned(at);
        let sleeper = clock.clone();
        let wake = tokio::spawn(async move { sleeper.sleep_until(at + TimeDelta::seconds(60)).await });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(clock.next_wake(), Some(at + TimeDelta::seconds(60)));
        clock.advance(TimeDelta::seconds(30));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!wake.is_finished(), "30 s is not yet 60 s");
        clock.advance(TimeDelta::seconds(30));
        tokio::time::timeout(std::time::Duration::from_secs(5), wake).await.unwrap().unwrap();
        assert_eq!(clock.next_wake(), None);
        // A running clock sleeps for real (briefly here).
        let running = Clock::starting_at(at);
        tokio::time::timeout(std::time::Duration::from_secs(5), running.sleep_until(at + TimeDelta::milliseconds(20)))
            .await
            .unwrap();
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
