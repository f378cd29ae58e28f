//! Progress of long work (a pass over many accounts, a backfill) for the person at the
//! command line: a bar with counts and an ETA on a terminal, a log line every few seconds
//! otherwise (journald, CI, containers), so long work is never silent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the log-line form reports.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One piece of long work with a known total.
pub struct Progress {
    what: &'static str,
    total: u64,
    bar: Option<ProgressBar>,
    log: Mutex<(Instant, u64)>,
}

impl Progress {
    /// A bar on stderr when stderr is a terminal, else log lines.
    pub fn new(what: &'static str, total: u64) -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, about {eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(what);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { what, total, bar, log: Mutex::new((Instant::now(), 0)) }
    }

    /// One more unit done.
    pub fn inc(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            return;
        }
        let Ok(mut log) = self.log.lock() else { return };
        log.1 += 1;
        if log.0.elapsed() >= LOG_EVERY {
            log.0 = Instant::now();
            tracing::info!(what = self.what, done = log.1, total = self.total, "progress");
        }
    }

    /// The work is over: the bar is cleared (the summary line follows).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
