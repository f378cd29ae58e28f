//! One retry executor for everything that waits and tries again: upstream API calls,
//! token refreshes and publishes.
//!
//! Each error type says what a failure calls for ([`Retryable::verdict`]: try again after
//! the back-off, try again after the pause the server asked for, or give up); [`Retry`]
//! does the counting, the capping and the sleeping, in the manner of Vector's
//! `RetryLogic`. Every pause is capped here ([`MAX_RETRY_AFTER`], [`MAX_THROTTLE`],
//! [`Backoff::max`]) and every pause ends early when the process shuts down: the one
//! [`CancellationToken`] that the worker, the server and the publisher also stop on.

use std::fmt::Display;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

/// The longest pause one call waits when a server asks for one (`Retry-After`).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The longest pause an application-wide throttle may impose (Withings' 601
/// `wait_seconds`); every account waits it out.
pub const MAX_THROTTLE: Duration = Duration::from_secs(600);

/// Exponential back-off with full jitter, for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Attempts in all (the first one included).
    pub attempts: u32,
    pub base: Duration,
    /// The longest back-off pause.
    pub max: Duration,
    /// The longest pause one call waits when a server asks for one (`Retry-After`, a
    /// token endpoint's `wait_seconds`), however long it asks for.
    pub max_server_pause: Duration,
    /// The longest application-wide throttle (Withings' 601 pauses every account).
    pub max_throttle: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(250),
            max: Duration::from_secs(30),
            max_server_pause: MAX_RETRY_AFTER,
            max_throttle: MAX_THROTTLE,
        }
    }
}

impl Backoff {
    /// The pause before retry number `retry` (0-based): random in `[d/2, d]` where
    /// `d = min(max, base * 2^retry)`.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << retry.min(16)).min(self.max);
        let mut byte = [0u8; 1];
        let frac = if getrandom::fill(&mut byte).is_ok() { f64::from(byte[0]) / 255.0 } else { 1.0 };
        exp.mul_f64(0.5 + frac / 2.0)
    }
}

/// What a failure calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transient: try again after the back-off.
    Retry,
    /// Transient, and the server said how long to wait (capped by [`MAX_RETRY_AFTER`]).
    RetryAfter(Duration),
    /// Retrying cannot help.
    GiveUp,
}

/// An error that knows whether trying again can help.
pub trait Retryable {
    fn verdict(&self) -> Verdict;
}

/// The retry executor: a back-off policy and the process's shutdown token.
#[derive(Debug, Clone, Default)]
pub struct Retry {
    backoff: Backoff,
    shutdown: CancellationToken,
}

impl Retry {
    pub fn new(backoff: Backoff, shutdown: CancellationToken) -> Self {
        Self { backoff, shutdown }
    }

    /// The back-off policy (its `attempts` also bound the publisher's resend rounds).
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The token every wait stops on.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Whether the process is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Sleeps `pause`, or less when the process shuts down first; `false` then.
    pub async fn sleep(&self, pause: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(pause) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }

    /// Runs `op` until it succeeds, its error gives up, the attempts are spent, or the
    /// process shuts down; the last error is returned in the three latter cases.
    /// `what` names the operation in the log.
    pub async fn run<T, E>(&self, what: &'static str, mut op: impl AsyncFnMut() -> Result<T, E>) -> Result<T, E>
    where
        E: Retryable + Display,
    {
        let mut retry = 0;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let pause = match error.verdict() {
                Verdict::GiveUp => return Err(error),
                Verdict::Retry => self.backoff.delay(retry),
                Verdict::RetryAfter(asked) => asked.min(self.backoff.max_server_pause),
            };
            if retry + 1 >= self.backoff.attempts {
                return Err(error);
            }
            tracing::warn!(%error, retry, pause_ms = pause.as_millis() as u64, "{what} failed; retrying");
            if !self.sleep(pause).await {
                tracing::info!(%error, "{what}: shutting down, not retrying");
                return Err(error);
            }
            retry += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fails(Verdict);

    impl Display for Fails {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "fails ({:?})", self.0)
        }
    }

    impl Retryable for Fails {
        fn verdict(&self) -> Verdict {
            self.0
        }
    }

    fn fast() -> Retry {
        Retry::new(
            Backoff {
                attempts: 3,
                base: Duration::from_millis(1),
                max: Duration::from_millis(2),
                max_server_pause: Duration::from_millis(5),
                ..Backoff::default()
            },
            Default::default(),
        )
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_attempts() {
        let mut calls = 0;
        let result: Result<(), Fails> = fast()
            .run("test", async || {
                calls += 1;
                Err(Fails(Verdict::Retry))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls, 3);

        let mut calls = 0;
        let result = fast()
            .run("test", async || {
                calls += 1;
                if calls < 2 { Err(Fails(Verdict::RetryAfter(Duration::from_millis(1)))) } else { Ok(calls) }
            })
            .await;
        assert_eq!(result.ok(), Some(2));
    }

    /// Issue 15 case 1: a server asking for a pause of decades is waited the policy's
    /// cap, then the call gives up like any other.
    #[tokio::test(start_paused = true)]
    async fn a_server_pause_is_capped() {
        let retry = Retry::new(Backoff::default(), Default::default());
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        let result = retry
            .run("test", async || -> Result<(), Fails> {
                calls += 1;
                Err(Fails(Verdict::RetryAfter(Duration::from_secs(1_000_000_000))))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls, 4);
        assert_eq!(started.elapsed(), MAX_RETRY_AFTER * 3, "three capped pauses between four attempts");
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let mut calls = 0;
        let _ = fast()
            .run("test", async || -> Result<(), Fails> {
                calls += 1;
                Err(Fails(Verdict::GiveUp))
            })
            .await;
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn shutdown_ends_a_long_pause_at_once() {
        let shutdown = CancellationToken::new();
        let retry = Retry::new(Backoff { attempts: 5, ..Backoff::default() }, shutdown.clone());
        let mut calls = 0;
        let run = retry.run("test", async || -> Result<(), Fails> {
            calls += 1;
            Err(Fails(Verdict::RetryAfter(Duration::from_secs(3600))))
        });
        let started = tokio::time::Instant::now();
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            shutdown.cancel();
        };
        let (result, ()) = tokio::join!(run, cancel);
        assert!(result.is_err());
        assert_eq!(calls, 1, "no attempt after the shutdown");
        assert!(started.elapsed() < Duration::from_secs(10), "the two-minute pause was cut short");
    }
}
