//! wearbridge: wearable health data → pseudonymised, schema-checked Streamr messages.

pub mod config;
pub mod keyfile;
pub mod store;
