//! The CLI's commands: the binary edge, where errors become messages and exit codes.

pub mod check_config;
pub mod connect;
pub mod describe;
pub mod probe;
pub mod push;
pub mod run;
pub mod scales;
pub mod schemas;
#[cfg(feature = "demo")]
pub mod simulate;
pub mod users;

use crate::config::{ConfigError, LoadOptions, Loaded, load};

/// Global options every command shares.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    pub config: Option<std::path::PathBuf>,
    pub set: Vec<String>,
    /// `--now`: run as if it were this instant (the clock runs on from it).
    pub now: Option<chrono::DateTime<chrono::Utc>>,
}

impl Globals {
    /// The clock every part of this command reads: the system's, or one anchored at
    /// `--now`.
    pub fn clock(&self) -> crate::clock::Clock {
        crate::clock::Clock::from_option(self.now)
    }

    pub fn load(&self) -> Result<Loaded, ConfigError> {
        load(&LoadOptions::from_process(self.config.clone(), self.set.clone()))
    }
}
