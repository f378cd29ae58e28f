//! The CLI's commands: the binary edge, where errors become messages and exit codes.

pub mod check_config;
pub mod connect;
pub mod probe;
pub mod run;
pub mod schemas;
pub mod simulate;
pub mod users;

use crate::config::{ConfigError, LoadOptions, Loaded, load};

/// Global options every command shares.
#[derive(Debug, Clone, Default)]
pub struct Globals {
    pub config: Option<std::path::PathBuf>,
    pub set: Vec<String>,
}

impl Globals {
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        load(&LoadOptions::from_process(self.config.clone(), self.set.clone()))
    }
}
